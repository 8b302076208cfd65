"""Ray actors: one per live stream (`stream_actor`) and the media worker pools."""
