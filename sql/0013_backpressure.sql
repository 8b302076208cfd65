-- Backpressure: quality degradation (issue 9). Applied by Alembic revision 0013. Never
-- edit once shipped: add a new numbered file instead.
--
-- When a stream's segments wait for the worker pool, its pipeline sheds rungs
-- (actors/backpressure.py, docs/media.md "Backpressure"): the AI rungs first, then the
-- top rung, then the next; never the lowest, so every segment is published in it.
--
--   stream_segments.gap          a shed rung's placeholder for a segment the other
--                                rungs publish: `EXT-X-GAP` in that rung's playlist, so
--                                the media sequence numbers of all rungs stay aligned
--                                (players skip the gap or switch rungs). No object is
--                                behind it: `path` names the key it would have had, and
--                                asking for it answers 404.
--   stream_quality.quality_level the level the source segment was encoded at (0: the
--                                whole ladder)
--   stream_quality.shed          the renditions it was not encoded to
--   live_stream_events quality_degraded
--                                a level change, written as the owner with the first
--                                segment at the new level: {action: degraded | restored,
--                                level, previous_level, max_level, shed, source_sequence,
--                                waiting, oldest_wait_s}. A restore is the same type with
--                                action "restored" (level 0: the whole ladder is back), so
--                                0007's `stream.quality_degraded` webhook carries both.
--                                Only the owner reads it (redact_event's ELSE: not shown).

ALTER TABLE stream_segments ADD COLUMN gap boolean NOT NULL DEFAULT false;

ALTER TABLE stream_quality
    ADD COLUMN quality_level smallint NOT NULL DEFAULT 0 CHECK (quality_level >= 0),
    ADD COLUMN shed text[] NOT NULL DEFAULT '{}';

-- A second permissive INSERT policy (policies for one command are OR'ed) rather than
-- another copy of may_insert_event: the pipeline, acting as the stream's owner, may
-- record its quality changes.
CREATE POLICY events_write_quality ON live_stream_events FOR INSERT
    WITH CHECK (event_type = 'quality_degraded' AND app_user_id() IS NOT NULL
                AND stream_owned(stream_id));
