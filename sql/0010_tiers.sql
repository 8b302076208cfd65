-- Quality tiers (issue 8): how a rendition was made, and 20K as a grid of tiles.
-- Applied by Alembic revision 0010. Never edit once shipped: add a new numbered file
-- instead.
--
-- A 20K frame (20480x11520) fits no H.264/HEVC/AV1 level, so a 20K stream is encoded
-- as tiles (5x5 of 4096x2304), each an ordinary rendition with its own segments in
-- stream_segments (rendition = the tile's name, e.g. "20K_r0c4"), beside a normal
-- ladder capped at 8K. A tile's row says where it sits in the whole frame; the
-- master playlist lists only the rows without a tile (a player must not pick one
-- tile as a "quality"): the tile manifests (DASH SRD, the JSON tile map) list those.
--
-- New columns of existing tables: the policies (0003, 0006) and grants (0003:
-- SELECT, INSERT to lumalive_app) of stream_renditions cover them.

ALTER TABLE stream_renditions
    -- Learned x2 super-resolution passes that made the rendition (0: not upscaled by
    -- the network); beyond the enhancer's passes, enlarging is bicubic.
    ADD COLUMN upscale_passes smallint NOT NULL DEFAULT 0 CHECK (upscale_passes >= 0),
    -- NULL on an ordinary rendition; all set on a tile: its grid position, its
    -- top-left pixel in the whole frame, and that frame's size (width and height are
    -- the tile's own).
    ADD COLUMN tile_row smallint CHECK (tile_row >= 0),
    ADD COLUMN tile_col smallint CHECK (tile_col >= 0),
    ADD COLUMN tile_x integer CHECK (tile_x >= 0),
    ADD COLUMN tile_y integer CHECK (tile_y >= 0),
    ADD COLUMN frame_width integer,
    ADD COLUMN frame_height integer,
    ADD CONSTRAINT stream_renditions_tile_whole
        CHECK (num_nulls(tile_row, tile_col, tile_x, tile_y, frame_width, frame_height)
               IN (0, 6)),
    ADD CONSTRAINT stream_renditions_tile_inside
        CHECK (tile_x IS NULL OR (tile_x + width <= frame_width
                                  AND tile_y + height <= frame_height));
