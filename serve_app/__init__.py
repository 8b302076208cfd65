"""The REST API: a FastAPI app (`app.create_app`) served by Ray Serve (`deployment`)."""
