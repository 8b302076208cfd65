-- Least privilege: events that carry only what their reader may see, event inserts
-- limited by type and acting user, analytics counters for the owner only, no function
-- executable by PUBLIC, and row-level security FORCEd on every table. Applied by
-- Alembic revision 0005. Never edit once shipped: add a new numbered file instead.
--
-- Audiences. Every reader of a stream's events is one of
--   owner      the stream's owner: everything the event holds
--   viewer     any other signed-in user who may see the stream
--   anonymous  no acting user
-- `redact_event` is the one place that says what each sees of each event type:
--
--   event_type          owner                     viewer             anonymous
--   stream_started      user_id                   user_id            user_id
--   stream_ended        reason, duration          same               same
--   chat_message        message_id, user_id,      same               same
--                       message | deleted
--   reaction            user_id, reaction         user_id, reaction  reaction
--   viewer_joined       user_id                   user_id            {}
--   viewer_left         user_id, watch_duration   user_id            {}
--   moderation_action   everything (author,       action, message_id (when about chat)
--                       score, by, model, ...)
--   report, ingest_*,   everything                not shown          not shown
--   segment_dropped and any type not listed here
--
-- A deleted chat message's text leaves its `chat_message` event in the transaction
-- that deletes it (trigger `chat_deleted`), and this file strips it from the events
-- of messages deleted before; the author and the owner still read it in
-- live_stream_chat, under that table's policy.


------------------------------------------------------------------------------
-- 1. Events as each audience may see them.

-- `data` with only the given keys.
CREATE FUNCTION jsonb_pick(data jsonb, keys text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT COALESCE(jsonb_object_agg(e.key, e.value), '{}'::jsonb)
      FROM jsonb_each(data) AS e WHERE e.key = ANY (keys)
$$;

-- What `audience` may see of an event: its data, a part of it, or NULL (not the row
-- at all). Keys are listed, never removed, so a key added to an event later stays
-- the owner's until it is listed here. Redacting twice never shows more:
-- redact_event(t, redact_event(t, d, a), b) is at most what b may see.
CREATE FUNCTION redact_event(kind text, data jsonb, audience text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN audience = 'owner' THEN data
        WHEN kind = 'stream_started' THEN jsonb_pick(data, '{user_id}')
        WHEN kind = 'stream_ended' THEN jsonb_pick(data, '{reason,duration}')
        WHEN kind = 'chat_message' THEN jsonb_pick(data, '{message_id,user_id,message,deleted}')
        WHEN kind = 'moderation_action' THEN jsonb_pick(data, '{action,message_id}')
        WHEN kind = 'reaction' AND audience = 'viewer' THEN jsonb_pick(data, '{user_id,reaction}')
        WHEN kind = 'reaction' THEN jsonb_pick(data, '{reaction}')
        WHEN kind IN ('viewer_joined', 'viewer_left') AND audience = 'viewer'
            THEN jsonb_pick(data, '{user_id}')
        WHEN kind IN ('viewer_joined', 'viewer_left') THEN '{}'::jsonb
        ELSE NULL
    END
$$;

-- The only way the application reads events' data (it may read the other columns
-- directly, for cursors): a stream's events with seq in (after_seq, until_seq], oldest
-- first, as the acting user may see them. Nothing if the stream is not visible to them.
CREATE FUNCTION stream_events(sid uuid, after_seq bigint, until_seq bigint, max_rows integer,
                              only_type text DEFAULT NULL)
RETURNS TABLE (id uuid, seq bigint, stream_id uuid, event_type varchar, event_data jsonb,
               created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT e.id, e.seq, e.stream_id, e.event_type, r.data, e.created_at
      FROM live_streams s
      JOIN live_stream_events e ON e.stream_id = s.id
      CROSS JOIN LATERAL (SELECT redact_event(e.event_type, e.event_data,
             CASE WHEN s.user_id = app_user_id() THEN 'owner'
                  WHEN app_user_id() IS NOT NULL THEN 'viewer'
                  ELSE 'anonymous' END) AS data) r
     WHERE s.id = sid AND can_view_stream(s.user_id, s.privacy, s.id)
       AND e.seq > after_seq AND e.seq <= until_seq
       AND (only_type IS NULL OR e.event_type = only_type)
       AND r.data IS NOT NULL
     ORDER BY e.seq
     LIMIT max_rows
$$;

REVOKE SELECT ON live_stream_events FROM lumalive_app;
GRANT SELECT (id, seq, stream_id, event_type, created_at) ON live_stream_events TO lumalive_app;

-- Deleting a message takes its text out of its event, in the same transaction.
CREATE INDEX live_stream_events_message_idx ON live_stream_events ((event_data->>'message_id'))
    WHERE event_type = 'chat_message';

CREATE FUNCTION on_chat_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    UPDATE live_stream_events
       SET event_data = (event_data - 'message') || '{"deleted": true}'::jsonb
     WHERE event_type = 'chat_message' AND event_data->>'message_id' = NEW.id::text
       AND stream_id = NEW.stream_id;
    RETURN NULL;
END $$;
CREATE TRIGGER chat_deleted AFTER UPDATE OF is_deleted ON live_stream_chat
    FOR EACH ROW WHEN (NEW.is_deleted AND NOT OLD.is_deleted)
    EXECUTE FUNCTION on_chat_deleted();

-- ...and so do the messages deleted before this migration.
UPDATE live_stream_events e
   SET event_data = (e.event_data - 'message') || '{"deleted": true}'::jsonb
  FROM live_stream_chat c
 WHERE c.is_deleted AND e.event_type = 'chat_message'
   AND e.event_data->>'message_id' = c.id::text AND e.stream_id = c.stream_id;


------------------------------------------------------------------------------
-- 2. Who may append which event: each acting as themselves, each only what their
-- own doing produces (through the stream's actor or the API), checked against the
-- rows that doing wrote in the same transaction.
CREATE FUNCTION may_insert_event(sid uuid, kind text, data jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT app_user_id() IS NOT NULL AND stream_visible(sid) AND CASE
        -- The lifecycle, the ingest and the media pipeline act as the owner.
        WHEN kind IN ('stream_started', 'stream_ended', 'ingest_connected',
                      'ingest_disconnected', 'ingest_error', 'ingest_refused',
                      'segment_dropped')
            THEN stream_owned(sid)
        -- A user's own doings.
        WHEN kind IN ('viewer_joined', 'viewer_left', 'reaction')
            THEN data->>'user_id' = app_user_id()::text
        WHEN kind = 'chat_message'  -- only a stored, unmoderated message, word for word
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
            -- by its author or the owner: who may delete it (policy chat_delete) may say so
            WHEN 'chat_message_deleted' THEN data->>'by' = app_user_id()::text AND EXISTS (
                SELECT 1 FROM live_stream_chat c
                 WHERE c.id = (data->>'message_id')::uuid AND c.stream_id = sid
                   AND c.is_deleted AND (c.user_id = app_user_id() OR stream_owned(sid)))
            ELSE stream_owned(sid)  -- segment_flagged, stream_ended: the media pipeline
            END
        WHEN kind = 'report' THEN EXISTS (
                SELECT 1 FROM stream_reports r
                 WHERE r.id = (data->>'report_id')::uuid AND r.stream_id = sid
                   AND r.reporter_id = app_user_id())
        ELSE false
    END
$$;

DROP POLICY events_write ON live_stream_events;
CREATE POLICY events_write ON live_stream_events FOR INSERT
    WITH CHECK (may_insert_event(stream_id, event_type, event_data));


------------------------------------------------------------------------------
-- 3. The analytics counters on the stream row are the owner's, like its key.
CREATE FUNCTION owner_analytics(sid uuid) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT analytics FROM live_streams WHERE id = sid AND user_id = app_user_id()
$$;
REVOKE SELECT (analytics) ON live_streams FROM lumalive_app;


------------------------------------------------------------------------------
-- 4. Functions. Nothing is executable by PUBLIC (here and, by default, in later
-- migrations: grant to lumalive_app what it calls). SECURITY DEFINER functions
-- check their caller themselves; of them lumalive_app may call only those it needs:
--   can_view_stream (RLS of live_streams), owner_stream_key, stream_for_key (the
--   ingest), store_stream_embedding, stream_events, owner_analytics, and any that
--   another migration grants it by name.
-- Trigger functions, bump_analytics and are_friends are the owner role's alone.

-- Only the counter triggers move the counters (0001 let anyone add to anyone's).
CREATE OR REPLACE FUNCTION bump_analytics(sid uuid, path text[], delta numeric) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF pg_trigger_depth() = 0 THEN
        RAISE EXCEPTION 'bump_analytics is called by the counter triggers only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE live_streams
       SET analytics = jsonb_set(analytics, path,
               to_jsonb(COALESCE((analytics #>> path)::numeric, 0) + delta), true)
     WHERE id = sid;
END $$;

-- Answers only about the acting user's own friendships (0001 answered about anyone's).
CREATE OR REPLACE FUNCTION are_friends(a uuid, b uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT app_user_id() IN (a, b) AND EXISTS (
        SELECT 1 FROM friendships
         WHERE status = 'accepted'
           AND ((requester_id = a AND addressee_id = b)
             OR (requester_id = b AND addressee_id = a)))
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION bump_analytics(uuid, text[], numeric), are_friends(uuid, uuid)
    FROM lumalive_app;
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace
                AND p.prorettype = 'trigger'::regtype
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM lumalive_app', f);
    END LOOP;
END $$;
GRANT EXECUTE ON FUNCTION jsonb_pick(jsonb, text[]), redact_event(text, jsonb, text),
    stream_events(uuid, bigint, bigint, integer, text), may_insert_event(uuid, text, jsonb),
    owner_analytics(uuid) TO lumalive_app;


------------------------------------------------------------------------------
-- 5. FORCE ROW LEVEL SECURITY on every table, so that the tables' owner is bound by
-- the policies too. Superusers and BYPASSRLS roles are not (Postgres exempts them),
-- so where the owner is one nothing changes. Where it is not, the owner's own work
-- must still see every row, and gets a policy saying so, `operator_all`, that
-- holds in
--   - its SECURITY DEFINER functions and triggers, which all run with
--     lumalive.definer = on (set on each below, and by later migrations on theirs);
--   - a session that never named an acting user: migrations, the analytics job
--     (cluster/analytics_job.py), an operator's psql.
-- A connection as the owner that names an acting user, as the application does,
-- gets exactly that user's rows: forgetting SET ROLE lumalive_app fails closed.
CREATE FUNCTION operator_session() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT current_setting('lumalive.definer', true) = 'on'
        OR current_setting('lumalive.user_id', true) IS NULL
$$;
REVOKE EXECUTE ON FUNCTION operator_session() FROM lumalive_app;

DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET lumalive.definer = on', f);
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    -- Postgres lets only superusers put a custom setting on a function, unless granted.
    RAISE EXCEPTION 'the schema owner % may not set lumalive.definer', current_user
        USING HINT = format('As a superuser, run: GRANT SET ON PARAMETER lumalive.definer TO %I;'
                            ' then migrate again.', current_user);
END $$;

DO $$
DECLARE t record;
BEGIN
    -- users, friendships, live_streams, stream_invites, live_stream_events,
    -- live_stream_chat, live_stream_reactions, live_stream_viewers, stream_reports,
    -- stream_daily_rollups, category_daily_rollups, stream_embeddings,
    -- stream_renditions, stream_segments, segment_moderation, stream_quality, and
    -- any other with row-level security (alembic_version has none: the app cannot read it)
    FOR t IN SELECT c.oid::regclass AS tbl, pg_get_userbyid(c.relowner) AS owner
               FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                AND c.relrowsecurity
    LOOP
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t.tbl);
        EXECUTE format('CREATE POLICY operator_all ON %s TO %I'
                       ' USING (operator_session()) WITH CHECK (operator_session())',
                       t.tbl, t.owner);
    END LOOP;
END $$;
