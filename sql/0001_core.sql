-- LumaLive core schema. Source of truth for the tables; applied by Alembic
-- revision 0001. Never edit once shipped: add a new numbered file instead.
--
-- Privacy lives here: the application connects as role lumalive_app, which is
-- subject to row-level security, and names the acting user per transaction
-- with set_config('lumalive.user_id', <uuid>, true).


DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lumalive_app') THEN
        CREATE ROLE lumalive_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END $$;
-- The connecting user switches to the app role with SET ROLE.
DO $$ BEGIN
    EXECUTE format('GRANT lumalive_app TO %I', current_user);
EXCEPTION WHEN others THEN NULL;  -- superusers need no grant
END $$;

-- The acting user of this transaction, NULL when anonymous.
CREATE FUNCTION app_user_id() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('lumalive.user_id', true), '')::uuid
$$;

CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username    varchar(64) UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE friendships (
    requester_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    addressee_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status       varchar(10) NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'accepted')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    accepted_at  timestamptz,
    PRIMARY KEY (requester_id, addressee_id),
    CHECK (requester_id <> addressee_id)
);
CREATE INDEX friendships_addressee_idx ON friendships (addressee_id, requester_id);

CREATE TABLE live_streams (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title         varchar(255) NOT NULL CHECK (length(btrim(title)) > 0),
    description   text NOT NULL DEFAULT '',
    quality       varchar(10) NOT NULL CHECK (quality IN ('1080p', '4K', '8K', '20K')),
    bitrate       integer NOT NULL CHECK (bitrate > 0),
    status        varchar(10) NOT NULL DEFAULT 'created'
                  CHECK (status IN ('created', 'live', 'ended')),
    is_live       boolean GENERATED ALWAYS AS (status = 'live') STORED,
    viewers       integer NOT NULL DEFAULT 0 CHECK (viewers >= 0),
    peak_viewers  integer NOT NULL DEFAULT 0 CHECK (peak_viewers >= 0),
    duration      integer NOT NULL DEFAULT 0,
    stream_key    varchar(255) NOT NULL UNIQUE,
    privacy       varchar(20) NOT NULL DEFAULT 'public'
                  CHECK (privacy IN ('public', 'friends', 'private')),
    category      varchar(50) NOT NULL DEFAULT 'general',
    tags          text[] NOT NULL DEFAULT '{}',
    is_nsfw       boolean NOT NULL DEFAULT false,
    ai_features   jsonb NOT NULL DEFAULT '{}'::jsonb,
    analytics     jsonb NOT NULL DEFAULT '{}'::jsonb,
    end_reason    varchar(50),
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    ended_at      timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- A request may lower the bitrate, never raise it above its tier's.
    CHECK (bitrate <= CASE quality WHEN '1080p' THEN 8000 WHEN '4K' THEN 25000
                                   WHEN '8K' THEN 50000 ELSE 100000 END)
);
CREATE INDEX live_streams_live_idx ON live_streams (started_at DESC, id) WHERE is_live;
CREATE INDEX live_streams_user_idx ON live_streams (user_id, created_at DESC, id);
CREATE INDEX live_streams_created_idx ON live_streams (created_at DESC, id);
CREATE INDEX live_streams_tags_idx ON live_streams USING gin (tags);

CREATE TABLE stream_invites (
    stream_id   uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    invited_by  uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX stream_invites_user_idx ON stream_invites (user_id, stream_id);

CREATE TABLE live_stream_events (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- cursor order
    stream_id   uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    event_type  varchar(50) NOT NULL,
    event_data  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_stream_events_stream_idx ON live_stream_events (stream_id, seq);

CREATE TABLE live_stream_chat (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    stream_id        uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    user_id          uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message          text NOT NULL CHECK (length(message) BETWEEN 1 AND 500),
    is_deleted       boolean NOT NULL DEFAULT false,
    is_moderated     boolean NOT NULL DEFAULT false,
    moderation_score real,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_stream_chat_stream_idx ON live_stream_chat (stream_id, seq);

CREATE TABLE live_stream_reactions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stream_id   uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    reaction    varchar(50) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_stream_reactions_stream_idx ON live_stream_reactions (stream_id, created_at);

CREATE TABLE live_stream_viewers (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stream_id       uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at       timestamptz NOT NULL DEFAULT now(),
    left_at         timestamptz,
    watch_duration  integer,
    CHECK (left_at IS NULL OR left_at >= joined_at)
);
-- One open viewing per user and stream: joining twice counts once.
CREATE UNIQUE INDEX live_stream_viewers_open_idx
    ON live_stream_viewers (stream_id, user_id) WHERE left_at IS NULL;
CREATE INDEX live_stream_viewers_stream_idx ON live_stream_viewers (stream_id, user_id);

CREATE TABLE stream_reports (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stream_id    uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    reporter_id  uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    reason       varchar(50) NOT NULL,
    details      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, reporter_id)
);

------------------------------------------------------------------------------
-- Visibility. SECURITY DEFINER so it can read friendships and invites without
-- the caller's own RLS; it answers only about the acting user.
CREATE FUNCTION are_friends(a uuid, b uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT EXISTS (SELECT 1 FROM friendships
                   WHERE status = 'accepted'
                     AND ((requester_id = a AND addressee_id = b)
                       OR (requester_id = b AND addressee_id = a)))
$$;

CREATE FUNCTION can_view_stream(owner uuid, privacy text, sid uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT privacy = 'public'
        OR owner = app_user_id()
        OR (privacy = 'friends' AND app_user_id() IS NOT NULL
            AND are_friends(owner, app_user_id()))
        OR (privacy = 'private' AND EXISTS (
                SELECT 1 FROM stream_invites i
                WHERE i.stream_id = sid AND i.user_id = app_user_id()))
$$;

-- The stream key is withheld from lumalive_app by column privileges; only
-- the owner gets it, through this function.
CREATE FUNCTION owner_stream_key(sid uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT stream_key FROM live_streams WHERE id = sid AND user_id = app_user_id()
$$;

-- For the ingest server: which stream does a key publish to?
CREATE FUNCTION stream_for_key(key text)
RETURNS TABLE (id uuid, user_id uuid, status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT id, user_id, status FROM live_streams WHERE stream_key = key
$$;

------------------------------------------------------------------------------
-- Analytics kept true by triggers (SECURITY DEFINER: they update the stream
-- row on behalf of viewers, who may not update it themselves).
CREATE FUNCTION bump_analytics(sid uuid, path text[], delta numeric) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    UPDATE live_streams
       SET analytics = jsonb_set(analytics, path,
               to_jsonb(COALESCE((analytics #>> path)::numeric, 0) + delta), true)
     WHERE id = sid
$$;

CREATE FUNCTION on_viewer_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    UPDATE live_streams
       SET viewers = viewers + 1,
           peak_viewers = GREATEST(peak_viewers, viewers + 1)
     WHERE id = NEW.stream_id;
    IF NOT EXISTS (SELECT 1 FROM live_stream_viewers
                   WHERE stream_id = NEW.stream_id AND user_id = NEW.user_id
                     AND id <> NEW.id) THEN
        PERFORM bump_analytics(NEW.stream_id, '{unique_viewers}', 1);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER viewer_insert AFTER INSERT ON live_stream_viewers
    FOR EACH ROW EXECUTE FUNCTION on_viewer_insert();

CREATE FUNCTION on_viewer_leave() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    NEW.watch_duration := GREATEST(0, floor(extract(epoch FROM NEW.left_at - NEW.joined_at)))::int;
    UPDATE live_streams SET viewers = GREATEST(viewers - 1, 0) WHERE id = NEW.stream_id;
    PERFORM bump_analytics(NEW.stream_id, '{total_watch_seconds}', NEW.watch_duration);
    RETURN NEW;
END $$;
CREATE TRIGGER viewer_leave BEFORE UPDATE OF left_at ON live_stream_viewers
    FOR EACH ROW WHEN (OLD.left_at IS NULL AND NEW.left_at IS NOT NULL)
    EXECUTE FUNCTION on_viewer_leave();

CREATE FUNCTION on_chat_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    PERFORM bump_analytics(NEW.stream_id, '{chat_messages}', 1);
    IF NEW.is_moderated THEN
        PERFORM bump_analytics(NEW.stream_id, '{moderated_messages}', 1);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER chat_insert AFTER INSERT ON live_stream_chat
    FOR EACH ROW EXECUTE FUNCTION on_chat_insert();

CREATE FUNCTION on_reaction_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    UPDATE live_streams
       SET analytics = jsonb_set(
               jsonb_set(analytics, '{reactions}', COALESCE(analytics->'reactions', '{}'::jsonb), true),
               ARRAY['reactions', NEW.reaction],
               to_jsonb(COALESCE((analytics->'reactions'->>NEW.reaction)::int, 0) + 1), true)
     WHERE id = NEW.stream_id;
    RETURN NEW;
END $$;
CREATE TRIGGER reaction_insert AFTER INSERT ON live_stream_reactions
    FOR EACH ROW EXECUTE FUNCTION on_reaction_insert();

-- Lifecycle: stamp start/end, set duration, and close every open viewing.
CREATE FUNCTION on_stream_status() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    NEW.updated_at := now();
    IF NEW.status = 'live' AND OLD.status = 'created' THEN
        NEW.started_at := COALESCE(NEW.started_at, now());
    ELSIF NEW.status = 'ended' AND OLD.status <> 'ended' THEN
        NEW.ended_at := COALESCE(NEW.ended_at, now());
        NEW.duration := GREATEST(0, floor(extract(epoch FROM
                           NEW.ended_at - COALESCE(NEW.started_at, NEW.ended_at))))::int;
    ELSIF NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'invalid stream transition % -> %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER stream_status BEFORE UPDATE OF status ON live_streams
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION on_stream_status();

CREATE FUNCTION on_stream_ended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    UPDATE live_stream_viewers SET left_at = NEW.ended_at
     WHERE stream_id = NEW.id AND left_at IS NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER stream_ended AFTER UPDATE OF status ON live_streams
    FOR EACH ROW WHEN (NEW.status = 'ended' AND OLD.status <> 'ended')
    EXECUTE FUNCTION on_stream_ended();

------------------------------------------------------------------------------
-- Row-level security. lumalive_app is neither owner nor superuser, so the
-- policies below always apply to it.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE friendships ENABLE ROW LEVEL SECURITY;
ALTER TABLE live_streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream_invites ENABLE ROW LEVEL SECURITY;
ALTER TABLE live_stream_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE live_stream_chat ENABLE ROW LEVEL SECURITY;
ALTER TABLE live_stream_reactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE live_stream_viewers ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream_reports ENABLE ROW LEVEL SECURITY;

CREATE POLICY users_read ON users FOR SELECT USING (true);
CREATE POLICY users_self ON users FOR INSERT WITH CHECK (id = app_user_id());

CREATE POLICY friendships_parties ON friendships FOR SELECT
    USING (app_user_id() IN (requester_id, addressee_id));
CREATE POLICY friendships_request ON friendships FOR INSERT
    WITH CHECK (requester_id = app_user_id() AND status = 'pending');
CREATE POLICY friendships_accept ON friendships FOR UPDATE
    USING (addressee_id = app_user_id()) WITH CHECK (addressee_id = app_user_id());

CREATE POLICY streams_read ON live_streams FOR SELECT
    USING (can_view_stream(user_id, privacy, id));
CREATE POLICY streams_create ON live_streams FOR INSERT
    WITH CHECK (user_id = app_user_id());
CREATE POLICY streams_owner ON live_streams FOR UPDATE
    USING (user_id = app_user_id()) WITH CHECK (user_id = app_user_id());

-- Stream visibility for child rows goes through live_streams' own policy.
CREATE FUNCTION stream_visible(sid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT EXISTS (SELECT 1 FROM live_streams WHERE id = sid) $$;
CREATE FUNCTION stream_owned(sid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM live_streams WHERE id = sid AND user_id = app_user_id())
$$;

CREATE POLICY invites_read ON stream_invites FOR SELECT
    USING (user_id = app_user_id() OR stream_owned(stream_id));
CREATE POLICY invites_owner ON stream_invites FOR INSERT
    WITH CHECK (invited_by = app_user_id() AND stream_owned(stream_id));

CREATE POLICY events_read ON live_stream_events FOR SELECT USING (stream_visible(stream_id));
CREATE POLICY events_write ON live_stream_events FOR INSERT WITH CHECK (stream_visible(stream_id));

-- Moderated or deleted messages are shown only to their author and the owner.
CREATE POLICY chat_read ON live_stream_chat FOR SELECT
    USING (stream_visible(stream_id)
           AND ((NOT is_moderated AND NOT is_deleted)
                OR user_id = app_user_id() OR stream_owned(stream_id)));
CREATE POLICY chat_write ON live_stream_chat FOR INSERT
    WITH CHECK (user_id = app_user_id() AND stream_visible(stream_id));
CREATE POLICY chat_delete ON live_stream_chat FOR UPDATE
    USING (user_id = app_user_id() OR stream_owned(stream_id))
    WITH CHECK (stream_visible(stream_id));

CREATE POLICY reactions_read ON live_stream_reactions FOR SELECT USING (stream_visible(stream_id));
CREATE POLICY reactions_write ON live_stream_reactions FOR INSERT
    WITH CHECK (user_id = app_user_id() AND stream_visible(stream_id));

CREATE POLICY viewers_read ON live_stream_viewers FOR SELECT
    USING (user_id = app_user_id() OR stream_owned(stream_id));
CREATE POLICY viewers_join ON live_stream_viewers FOR INSERT
    WITH CHECK (user_id = app_user_id() AND stream_visible(stream_id));
CREATE POLICY viewers_leave ON live_stream_viewers FOR UPDATE
    USING (user_id = app_user_id()) WITH CHECK (user_id = app_user_id());

CREATE POLICY reports_own ON stream_reports FOR SELECT
    USING (reporter_id = app_user_id() OR stream_owned(stream_id));
CREATE POLICY reports_write ON stream_reports FOR INSERT
    WITH CHECK (reporter_id = app_user_id() AND stream_visible(stream_id));

GRANT USAGE ON SCHEMA public TO lumalive_app;
GRANT SELECT, INSERT ON users, friendships, stream_invites, live_stream_events,
    live_stream_reactions, stream_reports TO lumalive_app;
GRANT SELECT, INSERT ON live_stream_chat, live_stream_viewers TO lumalive_app;
GRANT UPDATE (left_at) ON live_stream_viewers TO lumalive_app;
GRANT UPDATE (status, accepted_at) ON friendships TO lumalive_app;
GRANT UPDATE (is_deleted) ON live_stream_chat TO lumalive_app;
-- Every column but stream_key is readable; stream_key only via owner_stream_key().
GRANT SELECT (id, user_id, title, description, quality, bitrate, status, is_live,
              viewers, peak_viewers, duration, privacy, category, tags, is_nsfw,
              ai_features, analytics, end_reason, created_at, started_at, ended_at,
              updated_at) ON live_streams TO lumalive_app;
GRANT INSERT ON live_streams TO lumalive_app;
GRANT UPDATE (status, end_reason, started_at, ended_at) ON live_streams TO lumalive_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO lumalive_app;
