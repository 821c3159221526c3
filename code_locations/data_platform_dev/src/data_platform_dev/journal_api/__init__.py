"""The development upstream: synthetic journal-app data behind a real HTTP server."""
