-- Trust and safety: moderators, bans and timeouts, a report queue that acts, an audit
-- log nobody can edit, suspended broadcasters, withheld VODs and NSFW opt-in (issue 14).
-- Applied by Alembic revision 0006. Never edit once shipped: add a new numbered file.
--
-- Roles, as Postgres decides them (the API checks the same, first, for clear errors):
--   platform moderator  a row in platform_moderators: granted by an operator
--                       (`lumalive grant-moderator`), or by a verified access token
--                       whose app_metadata.role is "moderator" (source 'token', kept
--                       in step with the token by `sync_token_moderator`)
--   stream moderator    a row in stream_moderators, appointed by the stream's owner
--   may_moderate_stream the stream's owner or one of its stream moderators
--
--   action                         who                                  where enforced
--   appoint / remove moderator     owner                                stream_moderators RLS
--   ban, time out, lift            owner, stream moderators (not of the stream_bans RLS (may_ban)
--                                  owner; of a moderator only the owner)
--   delete any message             owner, stream mods, platform mods    chat_moderate
--   report queue, resolve          platform moderators                  report_queue, resolve_report
--   read the audit log             platform moderators; an owner the    moderation_audit RLS
--                                  rows about their streams
--
-- A ban (until IS NULL) bars its user from joining the stream, chatting and reacting;
-- a timeout (until in the future) from chatting and reacting until then. Restrictive
-- policies on the viewer, chat and reaction inserts say so, whatever else allows them.
--
-- NSFW: a stream is NSFW when declared (is_nsfw) or when video moderation flagged one
-- of its segments. Listings leave such streams out unless the caller opted in
-- (user_settings.show_nsfw) or owns them (`nsfw_listable`); joining one needs the same
-- (`nsfw_allowed`). Anonymous callers have no settings: never.
--
-- A stream ended for `policy_violation` keeps its VOD (renditions, segments) for its
-- owner and platform moderators; nobody else reads those rows.
--
-- The audit log (moderation_audit) is written only by the triggers below, as the
-- schema owner; nobody may UPDATE, DELETE or TRUNCATE it (privileges, and a trigger
-- that refuses even the owner). It has no foreign keys, so deleting what a row names
-- never touches the row.


------------------------------------------------------------------------------
-- 1. Tables.

CREATE TABLE platform_moderators (
    user_id     uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    source      varchar(10) NOT NULL DEFAULT 'operator' CHECK (source IN ('operator', 'token')),
    granted_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stream_moderators (
    stream_id     uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    appointed_by  uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX stream_moderators_user_idx ON stream_moderators (user_id);

CREATE TABLE stream_bans (
    stream_id   uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    banned_by   uuid REFERENCES users(id) ON DELETE SET NULL,
    reason      text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    until       timestamptz,                -- NULL: banned; else timed out until then
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX stream_bans_user_idx ON stream_bans (user_id);

CREATE TABLE suspended_users (
    user_id       uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    reason        text NOT NULL DEFAULT '',
    suspended_by  uuid REFERENCES users(id) ON DELETE SET NULL,
    report_id     uuid,                      -- the report it resolved, if any
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_settings (
    user_id            uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    show_nsfw          boolean NOT NULL DEFAULT false,
    nsfw_confirmed_at  timestamptz,          -- when the user last turned show_nsfw on
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE moderation_audit (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id        uuid,                    -- the acting user; NULL: an operator session
    action          varchar(40) NOT NULL,
    stream_id       uuid,
    target_user_id  uuid,
    report_id       uuid,
    message_id      uuid,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moderation_audit_stream_idx ON moderation_audit (stream_id, id);
CREATE INDEX moderation_audit_created_idx ON moderation_audit (created_at DESC, id DESC);

-- Reports become a queue: open until a platform moderator resolves them.
ALTER TABLE stream_reports
    ADD COLUMN status varchar(10) NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    ADD COLUMN resolution varchar(10) CHECK (resolution IN ('dismiss', 'warn', 'end_stream',
                                                            'suspend')),
    ADD COLUMN resolved_by uuid REFERENCES users(id) ON DELETE SET NULL,
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolution_note text NOT NULL DEFAULT '' CHECK (length(resolution_note) <= 2000),
    ADD CHECK ((status = 'open') = (resolution IS NULL));
CREATE INDEX stream_reports_queue_idx ON stream_reports (status, created_at DESC, id DESC);

CREATE INDEX segment_moderation_flagged_idx ON segment_moderation (stream_id) WHERE flagged;


------------------------------------------------------------------------------
-- 2. Who the acting user is to a stream. SECURITY DEFINER where they must read rows
-- the caller may not; each answers only about the acting user.

CREATE FUNCTION is_platform_moderator() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
    SELECT app_user_id() IS NOT NULL
       AND EXISTS (SELECT 1 FROM platform_moderators WHERE user_id = app_user_id())
$$;

CREATE FUNCTION may_moderate_stream(sid uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
    SELECT app_user_id() IS NOT NULL AND EXISTS (
        SELECT 1 FROM live_streams s
         WHERE s.id = sid
           AND (s.user_id = app_user_id() OR EXISTS (
                SELECT 1 FROM stream_moderators m
                 WHERE m.stream_id = sid AND m.user_id = app_user_id())))
$$;

-- May the acting user ban or time out `target` on the stream? Not themselves, never
-- the owner, and a stream moderator only by the owner.
CREATE FUNCTION may_ban(sid uuid, target uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
    SELECT may_moderate_stream(sid) AND target IS DISTINCT FROM app_user_id()
       AND EXISTS (
        SELECT 1 FROM live_streams s
         WHERE s.id = sid AND s.user_id <> target
           AND (s.user_id = app_user_id() OR NOT EXISTS (
                SELECT 1 FROM stream_moderators m WHERE m.stream_id = sid AND m.user_id = target)))
$$;

-- The acting user's standing on a stream: banned (until NULL), or timed out until a
-- future time; nothing when neither.
CREATE FUNCTION my_stream_ban(sid uuid)
RETURNS TABLE (until timestamptz, reason text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
    SELECT b.until, b.reason FROM stream_bans b
     WHERE b.stream_id = sid AND b.user_id = app_user_id()
       AND (b.until IS NULL OR b.until > now())
$$;

CREATE FUNCTION banned_from_stream(sid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM my_stream_ban(sid) WHERE until IS NULL)
$$;

CREATE FUNCTION barred_from_chat(sid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT EXISTS (SELECT 1 FROM my_stream_ban(sid)) $$;

CREATE FUNCTION user_suspended(uid uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
    SELECT EXISTS (SELECT 1 FROM suspended_users WHERE user_id = uid)
$$;

-- NSFW: declared, or flagged by video moderation (segment_moderation is the owner's).
CREATE FUNCTION stream_flagged(sid uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
    SELECT EXISTS (SELECT 1 FROM segment_moderation WHERE stream_id = sid AND flagged)
$$;

CREATE FUNCTION shows_nsfw() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((SELECT show_nsfw FROM user_settings WHERE user_id = app_user_id()), false)
$$;

-- May a listing show this stream to the acting user?
CREATE FUNCTION nsfw_listable(declared boolean, sid uuid, owner uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(owner = app_user_id(), false) OR shows_nsfw()
        OR NOT (declared OR stream_flagged(sid))
$$;

-- May the acting user join (watch) it?
CREATE FUNCTION nsfw_allowed(sid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((SELECT nsfw_listable(s.is_nsfw, s.id, s.user_id)
                       FROM live_streams s WHERE s.id = sid), true)
$$;

-- A VOD withheld: the stream was ended for a policy violation.
CREATE FUNCTION vod_withheld(sid uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
    SELECT EXISTS (SELECT 1 FROM live_streams WHERE id = sid AND end_reason = 'policy_violation')
$$;


------------------------------------------------------------------------------
-- 3. The audit log: appended by triggers only, never changed.

CREATE FUNCTION audit(act text, sid uuid, target uuid, rid uuid, mid uuid, info jsonb)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
    INSERT INTO moderation_audit (actor_id, action, stream_id, target_user_id, report_id,
                                  message_id, details)
    VALUES (app_user_id(), act, sid, target, rid, mid, COALESCE(info, '{}'::jsonb))
$$;

CREATE FUNCTION refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the moderation audit log is append-only'
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON moderation_audit
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON moderation_audit
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();

CREATE FUNCTION on_stream_moderator_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM audit('moderator_appointed', NEW.stream_id, NEW.user_id, NULL, NULL, '{}');
    ELSE
        PERFORM audit('moderator_removed', OLD.stream_id, OLD.user_id, NULL, NULL, '{}');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER stream_moderators_audit AFTER INSERT OR DELETE ON stream_moderators
    FOR EACH ROW EXECUTE FUNCTION on_stream_moderator_change();

CREATE FUNCTION on_stream_ban_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM audit('ban_lifted', OLD.stream_id, OLD.user_id, NULL, NULL,
                      jsonb_build_object('until', OLD.until, 'reason', OLD.reason));
    ELSE
        PERFORM audit(CASE WHEN NEW.until IS NULL THEN 'user_banned' ELSE 'user_timed_out' END,
                      NEW.stream_id, NEW.user_id, NULL, NULL,
                      jsonb_build_object('until', NEW.until, 'reason', NEW.reason));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER stream_bans_audit AFTER INSERT OR UPDATE OR DELETE ON stream_bans
    FOR EACH ROW EXECUTE FUNCTION on_stream_ban_change();

-- A message deleted by someone other than its author is a moderation action.
CREATE FUNCTION on_chat_moderated_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF app_user_id() IS DISTINCT FROM NEW.user_id THEN
        PERFORM audit('message_deleted', NEW.stream_id, NEW.user_id, NULL, NEW.id, '{}');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER chat_deleted_audit AFTER UPDATE OF is_deleted ON live_stream_chat
    FOR EACH ROW WHEN (NEW.is_deleted AND NOT OLD.is_deleted)
    EXECUTE FUNCTION on_chat_moderated_delete();

CREATE FUNCTION on_report_resolved() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    PERFORM audit('report_resolved', NEW.stream_id, NEW.reporter_id, NEW.id, NULL,
                  jsonb_build_object('action', NEW.resolution, 'note', NEW.resolution_note));
    RETURN NULL;
END $$;
CREATE TRIGGER stream_reports_audit AFTER UPDATE OF status ON stream_reports
    FOR EACH ROW WHEN (NEW.status = 'resolved' AND OLD.status <> 'resolved')
    EXECUTE FUNCTION on_report_resolved();

CREATE FUNCTION on_suspension_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM audit('user_suspended', NULL, NEW.user_id, NEW.report_id, NULL,
                      jsonb_build_object('reason', NEW.reason));
    ELSE
        PERFORM audit('suspension_lifted', NULL, OLD.user_id, NULL, NULL, '{}');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER suspended_users_audit AFTER INSERT OR DELETE ON suspended_users
    FOR EACH ROW EXECUTE FUNCTION on_suspension_change();

CREATE FUNCTION on_platform_moderator_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM audit('platform_moderator_granted', NULL, NEW.user_id, NULL, NULL,
                      jsonb_build_object('source', NEW.source));
    ELSE
        PERFORM audit('platform_moderator_revoked', NULL, OLD.user_id, NULL, NULL,
                      jsonb_build_object('source', OLD.source));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER platform_moderators_audit AFTER INSERT OR DELETE ON platform_moderators
    FOR EACH ROW EXECUTE FUNCTION on_platform_moderator_change();


------------------------------------------------------------------------------
-- 4. Suspended broadcasters do not go live: not by the API (the status trigger
-- refuses, SQLSTATE 42501 with message 'suspended'), not by RTMP (their keys publish
-- to nothing).

CREATE FUNCTION refuse_suspended_live() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF user_suspended(NEW.user_id) THEN
        RAISE EXCEPTION 'suspended' USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'the broadcaster is suspended from going live';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER streams_suspended BEFORE UPDATE OF status ON live_streams
    FOR EACH ROW WHEN (NEW.status = 'live' AND OLD.status <> 'live')
    EXECUTE FUNCTION refuse_suspended_live();

CREATE OR REPLACE FUNCTION stream_for_key(key text)
RETURNS TABLE (id uuid, user_id uuid, status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT s.id, s.user_id, s.status FROM live_streams s
     WHERE s.stream_key = key AND NOT user_suspended(s.user_id)
$$;
ALTER FUNCTION stream_for_key(text) SET lumalive.definer = on;


------------------------------------------------------------------------------
-- 5. Platform moderators: the report queue and its resolutions.

-- Reports newest first (keyset after (before_ts, before_id)), with the stream, the
-- reporter and what moderation already knows: flagged segments, hidden messages.
CREATE FUNCTION report_queue(want_status text, max_rows integer,
                             before_ts timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL)
RETURNS TABLE (id uuid, status varchar, reason varchar, details text, created_at timestamptz,
               resolution varchar, resolved_by uuid, resolved_at timestamptz,
               resolution_note text, reporter jsonb, stream jsonb,
               flagged_segments jsonb, moderated_messages jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF NOT is_platform_moderator() THEN
        RAISE EXCEPTION 'platform moderators only' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY
    SELECT r.id, r.status, r.reason, r.details, r.created_at, r.resolution, r.resolved_by,
           r.resolved_at, r.resolution_note,
           jsonb_build_object('id', u.id, 'username', u.username),
           jsonb_build_object('id', s.id, 'user_id', s.user_id, 'title', s.title,
                              'status', s.status, 'privacy', s.privacy, 'is_nsfw', s.is_nsfw,
                              'end_reason', s.end_reason, 'started_at', s.started_at,
                              'ended_at', s.ended_at,
                              'broadcaster_suspended', user_suspended(s.user_id)),
           (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                       'source_sequence', m.source_sequence, 'max_score', m.max_score,
                       'model', m.model, 'created_at', m.created_at)
                       ORDER BY m.source_sequence DESC), '[]'::jsonb)
              FROM (SELECT * FROM segment_moderation m0
                     WHERE m0.stream_id = s.id AND m0.flagged
                     ORDER BY m0.source_sequence DESC LIMIT 20) m),
           (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                       'id', c.id, 'user_id', c.user_id, 'message', c.message,
                       'moderation_score', c.moderation_score, 'created_at', c.created_at)
                       ORDER BY c.seq DESC), '[]'::jsonb)
              FROM (SELECT * FROM live_stream_chat c0
                     WHERE c0.stream_id = s.id AND c0.is_moderated
                     ORDER BY c0.seq DESC LIMIT 20) c)
      FROM stream_reports r
      JOIN live_streams s ON s.id = r.stream_id
      JOIN users u ON u.id = r.reporter_id
     WHERE (want_status IS NULL OR r.status = want_status)
       AND (before_ts IS NULL OR (r.created_at, r.id) < (before_ts, before_id))
     ORDER BY r.created_at DESC, r.id DESC
     LIMIT max_rows;
END $$;

-- Resolve an open report, in one transaction with what the action does in Postgres:
--   dismiss, warn   the resolution only (the owner reads it with their reports)
--   end_stream      the stream ends with end_reason 'policy_violation' (a created
--                   stream at once; a live one here too, with its stream_ended event,
--                   and the caller then stops its actor and ingest; an ended one keeps
--                   its times and gets the reason, which withholds its VOD)
--   suspend         the broadcaster is suspended, and the stream ends as for end_stream
-- Returns the stream, its owner and its status before; nothing if the report is not
-- open (or does not exist).
CREATE FUNCTION resolve_report(rid uuid, act text, note text)
RETURNS TABLE (stream_id uuid, owner_id uuid, status_before text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
DECLARE
    rep stream_reports;
    s live_streams;
BEGIN
    IF NOT is_platform_moderator() THEN
        RAISE EXCEPTION 'platform moderators only' USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE stream_reports r
       SET status = 'resolved', resolution = act, resolved_by = app_user_id(),
           resolved_at = now(), resolution_note = COALESCE(note, '')
     WHERE r.id = rid AND r.status = 'open'
    RETURNING r.* INTO rep;
    IF rep.id IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO s FROM live_streams WHERE id = rep.stream_id FOR NO KEY UPDATE;
    IF act = 'suspend' THEN
        INSERT INTO suspended_users (user_id, reason, suspended_by, report_id)
        VALUES (s.user_id, COALESCE(NULLIF(note, ''), rep.reason), app_user_id(), rid)
        ON CONFLICT (user_id) DO NOTHING;
    END IF;
    IF act IN ('end_stream', 'suspend') THEN
        IF s.status = 'ended' THEN
            UPDATE live_streams SET end_reason = 'policy_violation' WHERE id = s.id;
        ELSE
            UPDATE live_streams SET status = 'ended', end_reason = 'policy_violation'
             WHERE id = s.id;
            INSERT INTO live_stream_events (stream_id, event_type, event_data)
            SELECT s.id, 'stream_ended',
                   jsonb_build_object('reason', 'policy_violation', 'duration', l.duration,
                                      'report_id', rid)
              FROM live_streams l WHERE l.id = s.id;
        END IF;
        PERFORM audit('stream_ended', s.id, s.user_id, rid, NULL,
                      jsonb_build_object('reason', 'policy_violation', 'status_before', s.status));
    END IF;
    RETURN QUERY SELECT s.id, s.user_id, s.status::text;
END $$;


------------------------------------------------------------------------------
-- 6. Tokens that say "moderator": the row follows the token (source 'token'); an
-- operator's grant (source 'operator') is never removed by a token.
CREATE FUNCTION sync_token_moderator(claimed boolean) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF app_user_id() IS NULL THEN
        RETURN false;
    END IF;
    IF claimed THEN
        INSERT INTO platform_moderators (user_id, source) VALUES (app_user_id(), 'token')
        ON CONFLICT (user_id) DO NOTHING;
    ELSE
        DELETE FROM platform_moderators WHERE user_id = app_user_id() AND source = 'token';
    END IF;
    RETURN is_platform_moderator();
END $$;


------------------------------------------------------------------------------
-- 7. Moderators may delete messages and say so in the event log (0005's rule, with
-- "the owner" widened to whoever may moderate the stream or the platform), and an
-- owner or stream moderator who bans someone records `user_banned` (which ends the
-- banned user's live connections; only the owner's audience reads it).
CREATE OR REPLACE FUNCTION may_insert_event(sid uuid, kind text, data jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT app_user_id() IS NOT NULL AND stream_visible(sid) AND CASE
        WHEN kind IN ('stream_started', 'stream_ended', 'ingest_connected',
                      'ingest_disconnected', 'ingest_error', 'ingest_refused',
                      'segment_dropped')
            THEN stream_owned(sid)
        WHEN kind IN ('viewer_joined', 'viewer_left', 'reaction')
            THEN data->>'user_id' = app_user_id()::text
        WHEN kind = 'chat_message'
            THEN data->>'user_id' = app_user_id()::text AND EXISTS (
                SELECT 1 FROM live_stream_chat c
                 WHERE c.id = (data->>'message_id')::uuid AND c.stream_id = sid
                   AND c.user_id = app_user_id() AND c.message = data->>'message'
                   AND NOT c.is_moderated AND NOT c.is_deleted)
        WHEN kind = 'moderation_action' THEN CASE data->>'action'
            WHEN 'chat_message_hidden' THEN data->>'user_id' = app_user_id()::text AND EXISTS (
                SELECT 1 FROM live_stream_chat c
                 WHERE c.id = (data->>'message_id')::uuid AND c.stream_id = sid
                   AND c.user_id = app_user_id() AND c.is_moderated)
            WHEN 'chat_message_deleted' THEN data->>'by' = app_user_id()::text AND EXISTS (
                SELECT 1 FROM live_stream_chat c
                 WHERE c.id = (data->>'message_id')::uuid AND c.stream_id = sid
                   AND c.is_deleted
                   AND (c.user_id = app_user_id() OR may_moderate_stream(sid)
                        OR is_platform_moderator()))
            ELSE stream_owned(sid)
            END
        WHEN kind = 'report' THEN EXISTS (
                SELECT 1 FROM stream_reports r
                 WHERE r.id = (data->>'report_id')::uuid AND r.stream_id = sid
                   AND r.reporter_id = app_user_id())
        WHEN kind = 'user_banned' THEN data->>'by' = app_user_id()::text AND EXISTS (
                SELECT 1 FROM stream_bans b
                 WHERE b.stream_id = sid AND b.user_id = (data->>'user_id')::uuid
                   AND b.until IS NULL AND b.banned_by = app_user_id())
        ELSE false
    END
$$;


------------------------------------------------------------------------------
-- 8. Row-level security.
ALTER TABLE platform_moderators ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream_moderators ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream_bans ENABLE ROW LEVEL SECURITY;
ALTER TABLE suspended_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE moderation_audit ENABLE ROW LEVEL SECURITY;

-- Whether someone is a platform moderator: themselves, or another platform moderator.
CREATE POLICY platform_moderators_read ON platform_moderators FOR SELECT
    USING (user_id = app_user_id() OR is_platform_moderator());

-- A stream's moderators are public wherever the stream is (badges in chat).
CREATE POLICY stream_moderators_read ON stream_moderators FOR SELECT
    USING (stream_visible(stream_id) OR user_id = app_user_id());
CREATE POLICY stream_moderators_appoint ON stream_moderators FOR INSERT
    WITH CHECK (appointed_by = app_user_id() AND user_id <> app_user_id()
                AND stream_owned(stream_id));
CREATE POLICY stream_moderators_remove ON stream_moderators FOR DELETE
    USING (stream_owned(stream_id));

CREATE POLICY bans_read ON stream_bans FOR SELECT
    USING (user_id = app_user_id() OR may_moderate_stream(stream_id) OR is_platform_moderator());
CREATE POLICY bans_write ON stream_bans FOR INSERT
    WITH CHECK (banned_by = app_user_id() AND may_ban(stream_id, user_id));
CREATE POLICY bans_change ON stream_bans FOR UPDATE
    USING (may_ban(stream_id, user_id))
    WITH CHECK (banned_by = app_user_id() AND may_ban(stream_id, user_id));
CREATE POLICY bans_lift ON stream_bans FOR DELETE USING (may_ban(stream_id, user_id));

CREATE POLICY suspended_read ON suspended_users FOR SELECT
    USING (user_id = app_user_id() OR is_platform_moderator());

CREATE POLICY settings_own ON user_settings FOR ALL
    USING (user_id = app_user_id()) WITH CHECK (user_id = app_user_id());

CREATE POLICY audit_read ON moderation_audit FOR SELECT
    USING (is_platform_moderator() OR (stream_id IS NOT NULL AND stream_owned(stream_id)));

-- Banned and timed-out users, and NSFW without the opt-in, whatever else allows it.
CREATE POLICY viewers_not_barred ON live_stream_viewers AS RESTRICTIVE FOR INSERT
    TO lumalive_app WITH CHECK (NOT banned_from_stream(stream_id) AND nsfw_allowed(stream_id));
CREATE POLICY chat_not_barred ON live_stream_chat AS RESTRICTIVE FOR INSERT
    TO lumalive_app WITH CHECK (NOT barred_from_chat(stream_id) AND nsfw_allowed(stream_id));
CREATE POLICY reactions_not_barred ON live_stream_reactions AS RESTRICTIVE FOR INSERT
    TO lumalive_app WITH CHECK (NOT barred_from_chat(stream_id) AND nsfw_allowed(stream_id));

-- Moderators read every message of their streams (hidden ones too) and delete any.
CREATE POLICY chat_moderators_read ON live_stream_chat FOR SELECT
    USING (may_moderate_stream(stream_id) OR is_platform_moderator());
CREATE POLICY chat_moderate ON live_stream_chat FOR UPDATE
    USING (may_moderate_stream(stream_id) OR is_platform_moderator())
    WITH CHECK (may_moderate_stream(stream_id) OR is_platform_moderator());

-- Platform moderators read every report (the queue, through report_queue, too).
CREATE POLICY reports_moderators ON stream_reports FOR SELECT USING (is_platform_moderator());

-- A VOD ended for a policy violation: its owner and platform moderators only.
CREATE POLICY renditions_withheld ON stream_renditions AS RESTRICTIVE FOR SELECT
    TO lumalive_app
    USING (NOT vod_withheld(stream_id) OR stream_owned(stream_id) OR is_platform_moderator());
CREATE POLICY segments_withheld ON stream_segments AS RESTRICTIVE FOR SELECT
    TO lumalive_app
    USING (NOT vod_withheld(stream_id) OR stream_owned(stream_id) OR is_platform_moderator());

GRANT SELECT ON platform_moderators, suspended_users, moderation_audit TO lumalive_app;
GRANT SELECT, INSERT, DELETE ON stream_moderators TO lumalive_app;
GRANT SELECT, INSERT, DELETE ON stream_bans TO lumalive_app;
GRANT UPDATE (until, reason, banned_by, created_at) ON stream_bans TO lumalive_app;
GRANT SELECT, INSERT ON user_settings TO lumalive_app;
GRANT UPDATE (show_nsfw, nsfw_confirmed_at, updated_at) ON user_settings TO lumalive_app;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON moderation_audit FROM lumalive_app;

GRANT EXECUTE ON FUNCTION is_platform_moderator(), may_moderate_stream(uuid), may_ban(uuid, uuid),
    my_stream_ban(uuid), banned_from_stream(uuid), barred_from_chat(uuid), user_suspended(uuid),
    stream_flagged(uuid), shows_nsfw(), nsfw_listable(boolean, uuid, uuid), nsfw_allowed(uuid),
    vod_withheld(uuid), report_queue(text, integer, timestamptz, uuid),
    resolve_report(uuid, text, text), sync_token_moderator(boolean)
    TO lumalive_app;
-- Only the triggers write the log.
REVOKE EXECUTE ON FUNCTION audit(text, uuid, uuid, uuid, uuid, jsonb) FROM PUBLIC, lumalive_app;


------------------------------------------------------------------------------
-- 9. FORCE ROW LEVEL SECURITY and the owner's operator policy (0005, section 5) on
-- the tables of this file.
DO $$
DECLARE t record;
BEGIN
    FOR t IN SELECT c.oid::regclass AS tbl, pg_get_userbyid(c.relowner) AS owner
               FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                AND c.relname IN ('platform_moderators', 'stream_moderators', 'stream_bans',
                                  'suspended_users', 'user_settings', 'moderation_audit')
    LOOP
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t.tbl);
        EXECUTE format('CREATE POLICY operator_all ON %s TO %I'
                       ' USING (operator_session()) WITH CHECK (operator_session())',
                       t.tbl, t.owner);
    END LOOP;
END $$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
