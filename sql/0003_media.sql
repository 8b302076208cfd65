-- Media: the HLS ladder of each stream, its published segments, and what the
-- pipeline measured on every source segment (moderation, quality). Applied by
-- Alembic revision 0003. Never edit once shipped: add a new numbered file.
--
-- Writer: the ingest actor's pipeline, one writer per stream, acting as the
-- stream's owner (inserts are allowed only to the owner). Segments of a stream
-- are published in sequence order, in a transaction that first locks the
-- stream row and checks that it is still live, so an ended stream's playlist
-- (EXT-X-ENDLIST) never changes afterwards.
--
-- Readers: playlists are rendered from these rows by any API replica.
-- Renditions and segments are readable wherever the stream is visible;
-- moderation and quality only by the owner.
--
-- Two sequence numbers:
--   source_sequence  the segmenter's number for a source segment; every source
--                    segment has one, also one that was dropped (corrupt) or
--                    withheld (moderation). Storage keys use it.
--   sequence         the HLS media sequence number: dense (0, 1, 2, ...) over the
--                    segments that were published, because players number a
--                    playlist's segments by position from EXT-X-MEDIA-SEQUENCE.


-- The master playlist's rows: one per rendition, in ladder order (position 0 =
-- highest). Written once, with the stream's first published segment.
CREATE TABLE stream_renditions (
    stream_id          uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    name               varchar(20) NOT NULL,          -- "720p"; the URL path part
    position           smallint NOT NULL,
    width              integer NOT NULL CHECK (width > 0),
    height             integer NOT NULL CHECK (height > 0),
    frame_rate         double precision NOT NULL CHECK (frame_rate > 0),
    video_codec        varchar(10) NOT NULL,          -- h264 | hevc
    video_kbps         integer NOT NULL CHECK (video_kbps > 0),
    audio_kbps         integer NOT NULL CHECK (audio_kbps > 0),
    bandwidth          integer NOT NULL,              -- EXT-X-STREAM-INF BANDWIDTH
    average_bandwidth  integer NOT NULL,              -- AVERAGE-BANDWIDTH
    codecs             text NOT NULL,                 -- CODECS, read back from the encoder
    needs_upscale      boolean NOT NULL DEFAULT false, -- above the source: AI super-resolution
    ladder_reason      text,                          -- why the ladder was capped, e.g. 20K
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, name)
);

-- One row per published segment and rendition: the media playlists.
CREATE TABLE stream_segments (
    stream_id          uuid NOT NULL,
    rendition          varchar(20) NOT NULL,
    sequence           bigint NOT NULL CHECK (sequence >= 0),
    source_sequence    bigint NOT NULL,
    duration           double precision NOT NULL CHECK (duration > 0),  -- EXTINF seconds
    bytes              integer NOT NULL,
    frames             integer NOT NULL,
    path               text NOT NULL,                 -- storage key of the segment file
    discontinuity      boolean NOT NULL DEFAULT false, -- EXT-X-DISCONTINUITY before it
    program_date_time  timestamptz NOT NULL,          -- wall clock of its first frame
    -- Kept by the single writer so a playlist is one indexed read of its window:
    -- EXT-X-TARGETDURATION (ceil of the longest segment so far; never shrinks) and
    -- the number of discontinuities before this segment (EXT-X-DISCONTINUITY-SEQUENCE
    -- when it is the first in the window).
    target_duration    integer NOT NULL,
    discontinuity_sequence integer NOT NULL DEFAULT 0,
    -- Milliseconds per stage: queue, moderate, enhance, encode, store, publish.
    timings            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, rendition, sequence),
    FOREIGN KEY (stream_id, rendition) REFERENCES stream_renditions (stream_id, name)
        ON DELETE CASCADE
);

-- Moderation of each source segment (frames sampled at moderation_fps).
CREATE TABLE segment_moderation (
    stream_id          uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    source_sequence    bigint NOT NULL,
    frames_scored      integer NOT NULL DEFAULT 0,
    scores             real[] NOT NULL DEFAULT '{}',
    max_score          real,                          -- NULL: nothing scored
    flagged            boolean NOT NULL DEFAULT false, -- max_score over nsfw_threshold
    model              varchar(50),                   -- NULL: moderation unavailable
    error              text,                          -- why it was unavailable
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, source_sequence)
);

-- Quality monitoring: one row per source segment, dropped ones included.
CREATE TABLE stream_quality (
    stream_id          uuid NOT NULL REFERENCES live_streams(id) ON DELETE CASCADE,
    source_sequence    bigint NOT NULL,
    start_time         double precision NOT NULL,     -- position on the stream's timeline, s
    duration           double precision NOT NULL,
    frames             integer NOT NULL,
    input_fps          real,
    input_kbps         real,                          -- source segment bytes over its duration
    latency_ms         real,                          -- segment cut -> published (or dropped)
    retries            integer NOT NULL DEFAULT 0,    -- resubmissions after a worker died
    dropped            boolean NOT NULL DEFAULT false, -- not published: corrupt or withheld
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, source_sequence)
);

ALTER TABLE stream_renditions ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream_segments ENABLE ROW LEVEL SECURITY;
ALTER TABLE segment_moderation ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream_quality ENABLE ROW LEVEL SECURITY;

CREATE POLICY renditions_read ON stream_renditions FOR SELECT USING (stream_visible(stream_id));
CREATE POLICY renditions_write ON stream_renditions FOR INSERT WITH CHECK (stream_owned(stream_id));
CREATE POLICY segments_read ON stream_segments FOR SELECT USING (stream_visible(stream_id));
CREATE POLICY segments_write ON stream_segments FOR INSERT WITH CHECK (stream_owned(stream_id));
CREATE POLICY moderation_read ON segment_moderation FOR SELECT USING (stream_owned(stream_id));
CREATE POLICY moderation_write ON segment_moderation FOR INSERT
    WITH CHECK (stream_owned(stream_id));
CREATE POLICY quality_read ON stream_quality FOR SELECT USING (stream_owned(stream_id));
CREATE POLICY quality_write ON stream_quality FOR INSERT WITH CHECK (stream_owned(stream_id));

GRANT SELECT, INSERT ON stream_renditions, stream_segments, segment_moderation, stream_quality
    TO lumalive_app;
