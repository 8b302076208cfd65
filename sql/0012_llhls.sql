-- Low latency (issue 10): LL-HLS parts and a stream's latency mode. Applied by Alembic
-- revision 0012. Never edit once shipped: add a new numbered file instead.
--
-- latency_mode on live_streams: 'low' (the default) runs a streaming encoder for the
-- stream (actors/live_encoder.py) that publishes the rungs up to
-- LUMALIVE_LLHLS_MAX_HEIGHT as CMAF parts, besides the pool's MPEG-TS ladder;
-- 'normal' is the pool's segments only (0003).
--
-- Writer: the ingest actor's live encoder, one per stream, acting as the stream's
-- owner, in a transaction that first locks the stream row and checks it is live
-- (as 0003's segments). Readers: any API replica renders the LL-HLS playlists from
-- these rows, under the same visibility as the stream.
--
-- Numbering (its own, apart from stream_segments):
--   sequence   the LL media sequence number of a segment, dense per stream from 0,
--              the same in every LL rendition (they cut at the same frames).
--   part       a part's index inside its segment, from 0; part 0 starts with an IDR.
--   epoch      the encoder session (one per publisher input); each has its own init
--              segment (EXT-X-MAP), and its first segment is a discontinuity after
--              an earlier one.
--
-- A part's row is written as soon as its object is stored; a segment's row (its
-- parts' bytes concatenated, one object) when its last part is known, i.e. when the
-- next segment's first part is published or the input ends. A statement that adds
-- parts sends NOTIFY lumalive_llhls '<stream_id>' on commit, which wakes the
-- blocking playlist reloads (_HLS_msn/_HLS_part) waiting on any API replica.

ALTER TABLE live_streams ADD COLUMN latency_mode varchar(10) NOT NULL DEFAULT 'low'
    CHECK (latency_mode IN ('low', 'normal'));

-- The LL renditions of a stream, written with its first part (one row each).
CREATE TABLE ll_renditions (
    stream_id          uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    name               varchar(20) NOT NULL,          -- "480p"; the URL path part
    position           smallint NOT NULL,             -- 0 = highest
    width              integer NOT NULL CHECK (width > 0),
    height             integer NOT NULL CHECK (height > 0),
    frame_rate         double precision NOT NULL CHECK (frame_rate > 0),
    bandwidth          integer NOT NULL,              -- EXT-X-STREAM-INF BANDWIDTH
    average_bandwidth  integer NOT NULL,
    codecs             text NOT NULL,                 -- read back from the encoder
    part_target        double precision NOT NULL CHECK (part_target > 0), -- PART-TARGET s
    target_duration    integer NOT NULL CHECK (target_duration > 0),      -- TARGETDURATION
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, name)
);

-- One row per complete LL segment and rendition.
CREATE TABLE ll_segments (
    stream_id          uuid NOT NULL,
    rendition          varchar(20) NOT NULL,
    sequence           bigint NOT NULL CHECK (sequence >= 0),
    epoch              integer NOT NULL,
    duration           double precision NOT NULL CHECK (duration > 0),  -- EXTINF seconds
    bytes              integer NOT NULL,
    path               text NOT NULL,                 -- storage key of the segment object
    init_path          text NOT NULL,                 -- storage key of its init segment
    discontinuity      boolean NOT NULL DEFAULT false,
    discontinuity_sequence integer NOT NULL DEFAULT 0, -- discontinuities before it
    program_date_time  timestamptz NOT NULL,          -- wall clock of its first frame
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, rendition, sequence),
    FOREIGN KEY (stream_id, rendition) REFERENCES ll_renditions (stream_id, name)
        ON DELETE CASCADE
);

-- One row per published part.
CREATE TABLE ll_parts (
    stream_id          uuid NOT NULL,
    rendition          varchar(20) NOT NULL,
    sequence           bigint NOT NULL CHECK (sequence >= 0),  -- its segment's
    part               integer NOT NULL CHECK (part >= 0),
    epoch              integer NOT NULL,
    duration           double precision NOT NULL CHECK (duration > 0),
    independent        boolean NOT NULL,              -- starts with an IDR: INDEPENDENT=YES
    bytes              integer NOT NULL,
    path               text NOT NULL,
    program_date_time  timestamptz NOT NULL,          -- wall clock of its first frame
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, rendition, sequence, part),
    FOREIGN KEY (stream_id, rendition) REFERENCES ll_renditions (stream_id, name)
        ON DELETE CASCADE
);

CREATE FUNCTION on_ll_parts_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lumalive_llhls', s) FROM (SELECT DISTINCT stream_id::text AS s FROM added) n;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION on_ll_parts_notify() FROM PUBLIC;
CREATE TRIGGER ll_parts_notify AFTER INSERT ON ll_parts
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION on_ll_parts_notify();

ALTER TABLE ll_renditions ENABLE ROW LEVEL SECURITY;
ALTER TABLE ll_segments ENABLE ROW LEVEL SECURITY;
ALTER TABLE ll_parts ENABLE ROW LEVEL SECURITY;
ALTER TABLE ll_renditions FORCE ROW LEVEL SECURITY;
ALTER TABLE ll_segments FORCE ROW LEVEL SECURITY;
ALTER TABLE ll_parts FORCE ROW LEVEL SECURITY;

CREATE POLICY ll_renditions_read ON ll_renditions FOR SELECT USING (stream_visible(stream_id));
CREATE POLICY ll_renditions_write ON ll_renditions FOR INSERT
    WITH CHECK (stream_owned(stream_id));
CREATE POLICY ll_segments_read ON ll_segments FOR SELECT USING (stream_visible(stream_id));
CREATE POLICY ll_segments_write ON ll_segments FOR INSERT WITH CHECK (stream_owned(stream_id));
CREATE POLICY ll_parts_read ON ll_parts FOR SELECT USING (stream_visible(stream_id));
CREATE POLICY ll_parts_write ON ll_parts FOR INSERT WITH CHECK (stream_owned(stream_id));

DO $$
DECLARE t regclass;
BEGIN
    FOREACH t IN ARRAY ARRAY['ll_renditions'::regclass, 'll_segments'::regclass,
                             'll_parts'::regclass]
    LOOP
        EXECUTE format('CREATE POLICY operator_all ON %s TO %I'
                       ' USING (operator_session()) WITH CHECK (operator_session())',
                       t, (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = t));
    END LOOP;
END $$;

GRANT SELECT, INSERT ON ll_renditions, ll_segments, ll_parts TO lumalive_app;
-- live_streams' SELECT is granted column by column (0001): the new one too.
GRANT SELECT (latency_mode) ON live_streams TO lumalive_app;

-- Retention of LL media (issue 9's rules, applied to these tables; conventions of
-- 0009: SECURITY DEFINER, lumalive.definer = on, not executable by PUBLIC, granted to
-- lumalive_app by name, only for the sweep, rows first and objects after).
-- Deleting a stream needs nothing new: ll_renditions cascades from live_streams, and
-- ll_segments/ll_parts from ll_renditions; its objects share the stream's prefix.
--
-- expire_ll_media returns what 0009's expire_media returns, for the LL tables:
-- (stream_id, path) for each LL segment that left a live stream's DVR window (the
-- newest `keep_last` of a rendition stay, whatever their age) and for each of its
-- parts; (stream_id, NULL) for an ended stream whose VOD outlived vod_retention — all
-- its LL rows go (its objects share the stream's prefix). Init segments stay while
-- the stream has rows (a few hundred bytes per input). At most max_rows segments and
-- max_rows streams per call.
CREATE INDEX ll_segments_age_idx ON ll_segments (stream_id, program_date_time);

CREATE FUNCTION expire_ll_media(dvr_window interval, keep_last integer,
                                vod_retention interval, max_rows integer)
RETURNS TABLE (expired_stream uuid, expired_path text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF app_user_id() IS NOT NULL THEN
        RAISE EXCEPTION 'expire_ll_media is for the retention sweep, not a user'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF keep_last < 1 OR max_rows < 1 THEN
        RAISE EXCEPTION 'keep_last and max_rows must be at least 1';
    END IF;
    IF dvr_window IS NOT NULL THEN
        RETURN QUERY
        WITH newest AS (
            SELECT g.stream_id, g.rendition, max(g.sequence) AS last
              FROM ll_segments g JOIN live_streams s ON s.id = g.stream_id
             WHERE s.status = 'live'
             GROUP BY g.stream_id, g.rendition
        ), doomed AS (
            SELECT g.stream_id, g.rendition, g.sequence
              FROM ll_segments g JOIN newest n
                ON n.stream_id = g.stream_id AND n.rendition = g.rendition
             WHERE g.program_date_time < now() - dvr_window
               AND g.sequence <= n.last - keep_last
             ORDER BY g.program_date_time
             LIMIT max_rows
               FOR UPDATE OF g SKIP LOCKED
        ), parts_gone AS (
            DELETE FROM ll_parts p USING doomed d
             WHERE p.stream_id = d.stream_id AND p.rendition = d.rendition
               AND p.sequence = d.sequence
            RETURNING p.stream_id, p.path
        ), segments_gone AS (
            DELETE FROM ll_segments g USING doomed d
             WHERE g.stream_id = d.stream_id AND g.rendition = d.rendition
               AND g.sequence = d.sequence
            RETURNING g.stream_id, g.path
        )
        SELECT * FROM segments_gone UNION ALL SELECT * FROM parts_gone;
    END IF;
    IF vod_retention IS NOT NULL THEN
        RETURN QUERY
        WITH doomed AS (
            SELECT s.id FROM live_streams s
             WHERE s.status = 'ended' AND s.ended_at < now() - vod_retention
               AND EXISTS (SELECT 1 FROM ll_renditions r WHERE r.stream_id = s.id)
             ORDER BY s.ended_at
             LIMIT max_rows
               FOR UPDATE OF s SKIP LOCKED
        ), gone AS (
            -- segments and parts go with their renditions (ON DELETE CASCADE)
            DELETE FROM ll_renditions r USING doomed d WHERE r.stream_id = d.id
            RETURNING r.stream_id
        )
        SELECT DISTINCT gone.stream_id, NULL::text FROM gone;
    END IF;
END $$;

REVOKE EXECUTE ON FUNCTION expire_ll_media(interval, integer, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION expire_ll_media(interval, integer, interval, integer)
    TO lumalive_app;
