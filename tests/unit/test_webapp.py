"""Serving the built web app beside the API: the catch-all never shadows an API path,
never serves a file outside the build, and says what to run when there is no build.
A real FastAPI app (no database needed for these paths) and real files."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lumalive.settings import Settings
from serve_app.app import create_app
from serve_app.webapp import default_dist


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    build = tmp_path / "dist"
    (build / "assets").mkdir(parents=True)
    (build / "index.html").write_text('<!doctype html><div id="root"></div>')
    (build / "assets" / "index-abc123.js").write_text("console.log('app')")
    (tmp_path / "secret.txt").write_text("not for the web")
    (tmp_path / "x.txt").write_text("not for the web")
    return build


def client(dist: Path | None) -> TestClient:
    settings = Settings(jwt_secret="x" * 40, web_dist=dist)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_app_routes_get_index_and_assets_are_immutable(dist: Path) -> None:
    c = client(dist)
    for path in ("/", "/watch/3f1c", "/studio", "/analytics/x/y"):
        r = c.get(path)
        assert r.status_code == 200 and 'id="root"' in r.text, path
        assert r.headers["cache-control"] == "no-cache"
    r = c.get("/assets/index-abc123.js")
    assert r.text == "console.log('app')"
    assert "immutable" in r.headers["cache-control"]
    assert c.get("/assets/index-old.js").status_code == 404  # not index.html as JS


def test_api_paths_are_never_the_app(dist: Path) -> None:
    c = client(dist)
    r = c.get("/api/no-such-route")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert c.get("/openapi.json").json()["info"]["title"] == "LumaLive API"
    assert "swagger" in c.get("/docs").text.lower()
    # A wrong method on an API path stays the API's 405, not the app's page.
    assert c.delete(f"/api/live-streaming/start/{uuid.uuid4()}").status_code == 405
    assert "/{path}" not in c.get("/openapi.json").json()["paths"]


def test_no_file_outside_the_build_is_served(dist: Path) -> None:
    c = client(dist)
    for path in (
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/assets/../../secret.txt",
    ):
        assert "not for the web" not in c.get(path).text, path


def test_without_a_build_the_page_says_to_run_make_web(tmp_path: Path) -> None:
    r = client(tmp_path / "missing").get("/")
    assert r.status_code == 503 and "make web" in r.text


def test_the_default_build_is_found_from_the_package_not_the_working_dir() -> None:
    assert default_dist().is_absolute()
    assert default_dist().parent.name == "web"
