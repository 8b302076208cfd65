"""The committed OpenAPI document (web/openapi.json), from which the TypeScript
client's types are generated, is exactly what the app produces now: a route or
model change without `make openapi` fails here, so the client's types never drift."""

from __future__ import annotations

import json

from cluster.openapi_dump import DEFAULT_PATH, openapi_document, render


def test_committed_openapi_matches_the_app() -> None:
    produced = render(openapi_document())
    committed = DEFAULT_PATH.read_text(encoding="utf-8")
    assert committed == produced, "web/openapi.json is stale: run `make openapi`"


def test_document_describes_the_spec_routes_and_bodies() -> None:
    doc = json.loads(render(openapi_document()))
    paths = doc["paths"]
    for path, method in [
        ("/api/live-streaming/create", "post"),
        ("/api/live-streaming/start/{stream_id}", "post"),
        ("/api/live-streaming/{stream_id}/join", "post"),
        ("/api/live-streaming/{stream_id}/chat", "post"),
        ("/api/live-streaming/{stream_id}/reaction", "post"),
        ("/api/live-streaming/{stream_id}/events/stream", "get"),
    ]:
        assert method in paths[path], (path, method)
    config = doc["components"]["schemas"]["StreamConfig"]["properties"]
    assert {"title", "quality", "bitrate", "enableAI", "isNSFW"} <= set(config)


def test_render_is_stable() -> None:
    doc = openapi_document()
    assert render(doc) == render(json.loads(render(doc)))
