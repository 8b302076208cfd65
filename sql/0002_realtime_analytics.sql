-- Real-time delivery, batch analytics rollups and stream embeddings. Applied
-- by Alembic revision 0002. Never edit once shipped: add a new numbered file.
--
-- 1. Events: per stream, `seq` order is commit order, and every insert
--    notifies channel `lumalive_events` with '<stream_id>:<seq>'.
-- 2. Rollups written by the analytics job (an operator job that connects as
--    the schema owner); owners read their own streams' rows under RLS.
-- 3. Sentence embeddings of streams, for recommendations.


------------------------------------------------------------------------------
-- 1. Events in commit order, announced with NOTIFY.
--
-- Why: a cursor "everything after seq N" (SSE Last-Event-ID, the API replicas'
-- fan-out, GET .../events?since=) is only complete if no event of the stream
-- with a smaller seq can still commit later. Identity values are handed out at
-- insert time, so two transactions writing events of one stream could commit
-- out of seq order. We serialise event writers per stream on the stream's row
-- (the same row lock the counter triggers of 0001 already take, so no new lock
-- order appears) and only then draw the seq: the lock is held to commit, so a
-- later seq of the stream always commits after an earlier one.
--
-- Rule for future code: in a transaction that inserts events, take any other
-- lock before the first event insert, or only the stream row after it.
CREATE FUNCTION on_event_before_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    PERFORM 1 FROM live_streams WHERE id = NEW.stream_id FOR NO KEY UPDATE;
    -- The identity default has already drawn a value (left unused: seq has gaps,
    -- which cursors do not mind); draw again now that we hold the lock.
    NEW.seq := nextval(pg_get_serial_sequence('live_stream_events', 'seq'));
    RETURN NEW;
END $$;
CREATE TRIGGER event_before_insert BEFORE INSERT ON live_stream_events
    FOR EACH ROW EXECUTE FUNCTION on_event_before_insert();

-- Delivered to listeners when (and only if) the transaction commits, in commit
-- order. The payload is small on purpose: each API replica fetches the row
-- once, for all of its subscribers.
CREATE FUNCTION on_event_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lumalive_events', NEW.stream_id::text || ':' || NEW.seq::text);
    RETURN NULL;
END $$;
CREATE TRIGGER event_notify AFTER INSERT ON live_stream_events
    FOR EACH ROW EXECUTE FUNCTION on_event_notify();


------------------------------------------------------------------------------
-- 2. Rollups. Days are UTC dates. Written only by the analytics job with
-- INSERT ... ON CONFLICT DO UPDATE (idempotent: a rerun over the same data
-- leaves every row, computed_at included, as it was).

-- One row per stream and day on which the stream was live.
CREATE TABLE stream_daily_rollups (
    stream_id           uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    day                 date NOT NULL,
    user_id             uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,  -- the owner
    category            varchar(50) NOT NULL,
    quality             varchar(10) NOT NULL,
    watch_seconds       bigint NOT NULL,   -- watch_duration of viewings that joined this day and have ended
    viewer_sessions     integer NOT NULL,  -- viewings that joined this day
    unique_viewers      integer NOT NULL,  -- distinct users among them
    peak_viewers        integer NOT NULL,  -- most concurrent viewings at any instant of the day
    engaged_viewers     integer NOT NULL,  -- unique viewers of the day who chatted or reacted that day
    engagement_rate     real NOT NULL,     -- engaged_viewers / unique_viewers (0 without viewers)
    chat_messages       integer NOT NULL,  -- all messages sent that day, moderated ones included
    moderated_messages  integer NOT NULL,
    reactions           integer NOT NULL,
    computed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, day)
);
CREATE INDEX stream_daily_rollups_owner_idx ON stream_daily_rollups (user_id, day);

-- One row per day, category and quality tier (operators only).
CREATE TABLE category_daily_rollups (
    day              date NOT NULL,
    category         varchar(50) NOT NULL,
    quality          varchar(10) NOT NULL,
    streams          integer NOT NULL,  -- streams live at some time that day
    viewer_sessions  integer NOT NULL,
    unique_viewers   integer NOT NULL,  -- distinct users across those streams
    watch_seconds    bigint NOT NULL,
    chat_messages    integer NOT NULL,
    reactions        integer NOT NULL,
    computed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, category, quality)
);


------------------------------------------------------------------------------
-- 3. Stream embeddings (all-MiniLM-L6-v2: 384 floats, L2-normalised) of the
-- stream's title, description, tags and category; computed once per stream.
CREATE TABLE stream_embeddings (
    stream_id   uuid PRIMARY KEY REFERENCES live_streams(id) ON DELETE CASCADE,
    model       varchar(100) NOT NULL,
    embedding   real[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Anyone who may see a stream may store its embedding (it is derived from the
-- stream's visible fields only), so a reader can fill one in lazily.
CREATE FUNCTION store_stream_embedding(sid uuid, model_name text, vec real[]) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH ins AS (
        INSERT INTO stream_embeddings (stream_id, model, embedding)
        SELECT s.id, model_name, vec FROM live_streams s
         WHERE s.id = sid AND can_view_stream(s.user_id, s.privacy, s.id)
        ON CONFLICT (stream_id) DO NOTHING
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM ins)
$$;


------------------------------------------------------------------------------
ALTER TABLE stream_daily_rollups ENABLE ROW LEVEL SECURITY;
ALTER TABLE category_daily_rollups ENABLE ROW LEVEL SECURITY;  -- no policy: owner role only
ALTER TABLE stream_embeddings ENABLE ROW LEVEL SECURITY;

CREATE POLICY rollups_owner ON stream_daily_rollups FOR SELECT USING (user_id = app_user_id());
CREATE POLICY embeddings_read ON stream_embeddings FOR SELECT USING (stream_visible(stream_id));

GRANT SELECT ON stream_daily_rollups, stream_embeddings TO lumalive_app;
GRANT EXECUTE ON FUNCTION store_stream_embedding(uuid, text, real[]) TO lumalive_app;
