"""Starting and configuring LumaLive: embedded Postgres, local or remote Ray,
the Serve deployment graph, and the `lumalive` command line."""
