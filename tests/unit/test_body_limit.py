"""The body limit (`serve_app.body_limit.BodyLimit`) as plain ASGI, in-process: bodies
are counted as they arrive, declared or chunked, and a refused body is never read on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from serve_app import errors
from serve_app.body_limit import BodyLimit

LIMIT = 64 * 1024
CHUNK = 16 * 1024


class Doc(BaseModel):
    text: str


def fastapi_app() -> FastAPI:
    """The API's error handlers and body parsing, one route that takes a JSON body."""
    app = FastAPI()
    errors.install(app)

    @app.post("/doc")
    async def doc(body: Doc) -> dict[str, int]:
        return {"chars": len(body.text)}

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def raw_reader(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads its body itself, outside FastAPI's body parsing."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


class Client:
    """Sends one request's body as http.request messages (lazily: a 200 MiB body is
    never in memory) and records how many of them the app pulled, and what it sent."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._next: bytes | None = next(chunks, None)
        self.pulled = 0
        self.pulled_bytes = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self._next is None:
            return {"type": "http.disconnect"}
        body, self._next = self._next, next(self._chunks, None)
        self.pulled += 1
        self.pulled_bytes += len(body)
        return {"type": "http.request", "body": body, "more_body": self._next is not None}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.sent
        return int(starts[0]["status"])

    @property
    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent if "body" in m))


def scope(path: str = "/doc", headers: dict[str, str] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (k.lower().encode(), v.encode())
            for k, v in {"content-type": "application/json", **(headers or {})}.items()
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


def json_chunks(total: int) -> Iterator[bytes]:
    """A JSON document of about `total` bytes, in CHUNK-sized pieces (chunked: no length)."""
    yield b'{"text": "'
    sent = 0
    while sent < total:
        yield b"x" * CHUNK
        sent += CHUNK
    yield b'"}'


def assert_413(client: Client) -> None:
    assert client.status == 413
    body = client.json
    assert body["error"]["code"] == "payload_too_large"
    assert str(LIMIT) in body["error"]["message"]


async def test_chunked_body_over_the_limit_is_413_and_not_read_on():
    client = Client(json_chunks(200 * 1024 * 1024))  # 200 MiB, made only as pulled
    await BodyLimit(fastapi_app(), LIMIT)(scope(), client.receive, client.send)
    assert_413(client)
    # What was read: the limit and the one message that crossed it, no more.
    assert client.pulled_bytes <= LIMIT + CHUNK + 16
    assert client.pulled <= LIMIT // CHUNK + 2


async def test_chunked_body_under_the_limit_passes():
    client = Client(json_chunks(LIMIT - 2 * CHUNK))
    await BodyLimit(fastapi_app(), LIMIT)(scope(), client.receive, client.send)
    assert client.status == 200 and client.json == {"chars": LIMIT - 2 * CHUNK}


async def test_a_body_of_exactly_the_limit_passes():
    body = b'{"text": "' + b"y" * (LIMIT - 12) + b'"}'
    assert len(body) == LIMIT
    client = Client(iter([body[:CHUNK], body[CHUNK:]]))
    await BodyLimit(fastapi_app(), LIMIT)(scope(), client.receive, client.send)
    assert client.status == 200


@pytest.mark.parametrize("length", [str(LIMIT + 1), "12abc", "-1"])
async def test_declared_length_over_the_limit_or_garbage_is_refused_unread(length):
    client = Client(json_chunks(LIMIT * 4))
    await BodyLimit(fastapi_app(), LIMIT)(
        scope(headers={"content-length": length}), client.receive, client.send
    )
    assert_413(client)
    assert client.pulled == 0


async def test_a_lying_content_length_is_caught_by_counting():
    client = Client(json_chunks(LIMIT * 4))
    await BodyLimit(fastapi_app(), LIMIT)(
        scope(headers={"content-length": "100"}), client.receive, client.send
    )
    assert_413(client)
    assert client.pulled_bytes <= LIMIT + CHUNK + 16


async def test_an_app_reading_its_own_body_gets_413_too():
    client = Client(json_chunks(LIMIT * 4))
    await BodyLimit(raw_reader, LIMIT)(scope(), client.receive, client.send)
    assert_413(client)


async def test_a_response_already_begun_is_ended_not_answered_twice():
    async def streams_then_reads(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass

    client = Client(json_chunks(LIMIT * 4))
    await BodyLimit(streams_then_reads, LIMIT)(scope(), client.receive, client.send)
    assert client.status == 200  # one start only; the limit still stopped the reading
    assert client.pulled_bytes <= LIMIT + CHUNK + 16


async def test_other_scopes_pass_untouched():
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def nothing() -> Message:
        raise AssertionError("not read")

    async def ignore(_: Message) -> None:
        pass

    await BodyLimit(app, 1)({"type": "lifespan"}, nothing, ignore)
    await BodyLimit(app, 1)({"type": "websocket", "headers": []}, nothing, ignore)
    assert seen == ["lifespan", "websocket"]


async def test_requests_without_a_body_are_served():
    client = Client(iter([b""]))
    s = {**scope("/ping"), "method": "GET"}
    await BodyLimit(fastapi_app(), LIMIT)(s, client.receive, client.send)
    assert client.status == 200 and client.json == {"status": "ok"}
