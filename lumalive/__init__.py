"""LumaLive core: settings, errors, database access and the repositories shared by
the API (`serve_app`) and the stream actors (`actors`)."""
