-- Retention (issue 9): a live stream's DVR window, an ended stream's VOD lifetime,
-- and deleting a stream. Applied by Alembic revision 0009. Never edit once shipped:
-- add a new numbered file instead.
--
-- lumalive_app may only SELECT and INSERT media rows (0003), and nobody may DELETE a
-- stream (0001 has no DELETE policy). Rather than DELETE policies, which would let any
-- statement acting as an owner delete any of that owner's rows in any shape, two
-- narrow SECURITY DEFINER functions say exactly what may go (conventions of 0005:
-- lumalive.definer = on, not executable by PUBLIC, granted to lumalive_app by name):
--
--   delete_stream(sid)   the acting user's own stream, not while it is live: its
--                        row, and with it (ON DELETE CASCADE) every row that names it.
--   expire_media(...)    what the retention settings say has expired, in batches,
--                        returning the storage keys to delete. Only a session with no
--                        acting user (the retention sweep) may call it; it never
--                        takes a live stream's newest `keep_last` segments of a
--                        rendition, so the live playlist window stays whole.
--
-- Rows go first, objects after (the caller deletes them once this commits): a
-- playlist never names a deleted object; an object left without a row (a failed
-- delete) is unreachable, and harmless.

CREATE FUNCTION delete_stream(sid uuid) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
DECLARE
    st text;
BEGIN
    SELECT status INTO st FROM live_streams
     WHERE id = sid AND user_id = app_user_id() FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;  -- not the caller's stream (or none): the same answer, nothing told
    END IF;
    IF st = 'live' THEN
        RETURN st;  -- end it first: its pipeline is still writing
    END IF;
    DELETE FROM live_streams WHERE id = sid;
    RETURN 'deleted';
END $$;

-- The index the DVR sweep walks: segments by age, per stream.
CREATE INDEX stream_segments_age_idx ON stream_segments (stream_id, program_date_time);

-- Expired media, deleted here and returned for storage: (stream_id, path) for a
-- segment that left a live stream's DVR window (dvr_window NULL: none leaves), and
-- (stream_id, NULL) for an ended stream whose VOD outlived vod_retention (NULL:
-- kept forever) — all its renditions and segments; the stream row itself stays.
-- At most max_rows of each kind per call: the caller calls again while it gets some.
CREATE FUNCTION expire_media(dvr_window interval, keep_last integer, vod_retention interval,
                             max_rows integer)
RETURNS TABLE (expired_stream uuid, expired_path text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lumalive.definer = on AS $$
BEGIN
    IF app_user_id() IS NOT NULL THEN
        RAISE EXCEPTION 'expire_media is for the retention sweep, not a user'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF keep_last < 1 OR max_rows < 1 THEN
        RAISE EXCEPTION 'keep_last and max_rows must be at least 1';
    END IF;
    IF dvr_window IS NOT NULL THEN
        RETURN QUERY
        WITH newest AS (
            SELECT g.stream_id, g.rendition, max(g.sequence) AS last
              FROM stream_segments g JOIN live_streams s ON s.id = g.stream_id
             WHERE s.status = 'live'
             GROUP BY g.stream_id, g.rendition
        ), doomed AS (
            SELECT g.stream_id, g.rendition, g.sequence
              FROM stream_segments g JOIN newest n
                ON n.stream_id = g.stream_id AND n.rendition = g.rendition
             WHERE g.program_date_time < now() - dvr_window
               AND g.sequence <= n.last - keep_last
             ORDER BY g.program_date_time
             LIMIT max_rows
               FOR UPDATE OF g SKIP LOCKED
        ), gone AS (
            DELETE FROM stream_segments g USING doomed d
             WHERE g.stream_id = d.stream_id AND g.rendition = d.rendition
               AND g.sequence = d.sequence
            RETURNING g.stream_id, g.path
        )
        SELECT gone.stream_id, gone.path FROM gone;
    END IF;
    IF vod_retention IS NOT NULL THEN
        RETURN QUERY
        WITH doomed AS (
            SELECT s.id FROM live_streams s
             WHERE s.status = 'ended' AND s.ended_at < now() - vod_retention
               AND EXISTS (SELECT 1 FROM stream_renditions r WHERE r.stream_id = s.id)
             ORDER BY s.ended_at
             LIMIT max_rows
               FOR UPDATE OF s SKIP LOCKED
        ), gone AS (
            -- segments go with their renditions (ON DELETE CASCADE)
            DELETE FROM stream_renditions r USING doomed d WHERE r.stream_id = d.id
            RETURNING r.stream_id
        )
        SELECT DISTINCT gone.stream_id, NULL::text FROM gone;
    END IF;
END $$;

REVOKE EXECUTE ON FUNCTION delete_stream(uuid), expire_media(interval, integer, interval, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION delete_stream(uuid), expire_media(interval, integer, interval, integer)
    TO lumalive_app;
