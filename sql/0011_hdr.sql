-- HDR renditions (issue 8). Applied by Alembic revision 0011. Never edit once shipped: add a new
-- numbered file instead.
--
-- A stream with enableHDR gets, beside its H.264 SDR ladder, an HEVC Main10 twin of each
-- rung ("1080p-hdr") in the source's HDR format: PQ or HLG (an SDR source is mapped to
-- HLG; media/hdr.py). HLS carries HEVC only in fragmented MP4, so those renditions'
-- segments are `.m4s` media segments after one `init.mp4` per rendition
-- (`{stream}/{rendition}/init.mp4` in the media store; media/cmaf.py), and their media
-- playlists carry EXT-X-MAP. The master playlist advertises each rendition's range.
--
-- New columns of an existing table: the policies (0003, 0006) and grants (0003: SELECT,
-- INSERT to lumalive_app) of stream_renditions cover them. Existing rows are SDR MPEG-TS.

ALTER TABLE stream_renditions
    -- EXT-X-STREAM-INF VIDEO-RANGE: SDR, PQ (SMPTE ST 2084) or HLG (ARIB STD-B67).
    ADD COLUMN video_range varchar(3) NOT NULL DEFAULT 'SDR'
        CHECK (video_range IN ('SDR', 'PQ', 'HLG')),
    -- The segments' container: ts (MPEG-TS, .ts) or fmp4 (init.mp4 + .m4s).
    ADD COLUMN container varchar(4) NOT NULL DEFAULT 'ts'
        CHECK (container IN ('ts', 'fmp4'));
