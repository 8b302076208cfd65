"""One segment's bytes as an HTTP response, from whichever store holds them.

- Local files: a `FileResponse` (Starlette answers Range requests itself).
- An object store, proxied: `ObjectSegmentResponse` answers a single `Range: bytes=...`
  with 206 and `Content-Range` from one ranged GET, an unsatisfiable one with 416 and
  `Content-Range: bytes */size`, a malformed one with 400, several ranges (or none)
  with 200 and the whole object; like the local file response, so a player cannot tell
  the stores apart.
- An object store, presigned (`settings.media_presign`): a PUBLIC stream's segment is
  a 307 redirect to a URL signed for `media_presign_ttl_s`, so the bytes flow from the
  bucket, not through the API. Private and friends-only streams are always proxied:
  a presigned URL is a bearer credential that outlives the viewer's access check.

Invariants: the caller has already checked the viewer may see the stream and that a
published row names the key. A missing file is `KeyError` (the route answers 404); a
missing object is the same 404 JSON, sent by `ObjectSegmentResponse` before any byte,
except under a redirect, where the bucket answers it. A whole proxied segment costs one
GET, as before; only a Range request adds a HEAD (the size decides 206 or 416).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import Response
from fastapi.responses import FileResponse, RedirectResponse
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from lumalive.settings import Settings
from media.object_storage import ObjectStorage
from media.storage import LocalStorage, SegmentStorage
from serve_app.errors import error_response

__all__ = ["segment_response", "ObjectSegmentResponse", "parse_range"]

SEGMENT_TYPE = "video/mp2t"


async def segment_response(
    storage: SegmentStorage,
    key: str,
    headers: dict[str, str],
    *,
    public: bool,
    settings: Settings,
) -> Response:
    """The response for a published segment's key (see the module docstring)."""
    if isinstance(storage, LocalStorage):
        path = storage.path(key)
        if not path.is_file():
            raise KeyError(key)
        return FileResponse(path, media_type=SEGMENT_TYPE, headers=headers)
    if isinstance(storage, ObjectStorage):
        presign = public and settings.media_presign
        url = storage.presign(key, settings.media_presign_ttl_s) if presign else None
        if url is not None:
            # The redirect may be cached, but not past the signature's life.
            ttl = max(1, settings.media_presign_ttl_s // 2)
            cache = {"Cache-Control": f"public, max-age={ttl}"}
            return RedirectResponse(url, status_code=307, headers=cache)
        return ObjectSegmentResponse(storage, key, headers)
    data = await asyncio.to_thread(storage.get, key)
    return Response(data, media_type=SEGMENT_TYPE, headers=headers)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """`Range: bytes=a-b | a- | -n` as (start, end exclusive); None for several ranges
    (the whole object is sent: RFC 9110 lets a server ignore Range). ValueError if it is
    malformed, `IndexError` if no byte of it is in the object (416)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        raise ValueError("only one bytes range is supported")
    if "," in spec:
        return None
    first, dash, last = (p.strip() for p in spec.strip().partition("-"))
    if not dash or not (first or last) or not (first or "0").isdigit():
        raise ValueError("malformed range")
    if last and not last.isdigit():
        raise ValueError("malformed range")
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise IndexError("empty suffix range")
        return max(0, size - n), size
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    if last and int(last) < start:
        raise ValueError("range ends before it starts")
    if start >= size:
        raise IndexError("range starts past the end")
    return start, end


class ObjectSegmentResponse(Response):
    """A proxied object, whole (one GET) or one byte range of it (a HEAD for the size,
    then a ranged GET). The Range header is read when the response is sent (as
    Starlette's `FileResponse` does), so the route needs no Request; for the same
    reason a missing object is answered here, with the route's 404."""

    media_type = SEGMENT_TYPE

    def __init__(self, storage: ObjectStorage, key: str, headers: dict[str, str]) -> None:
        super().__init__(None, headers={**headers, "Accept-Ranges": "bytes"})
        self._storage, self._key = storage, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = Headers(scope=scope).get("range")
        try:
            if header is None:
                size, chunks = await self._storage.stream(self._key)
                await self._send(send, 200, size, (0, size), chunks)
                return
            size = await self._storage.size(self._key)
        except KeyError:
            missing = error_response(404, "segment_not_found", "segment file is missing")
            await missing(scope, receive, send)
            return
        try:
            asked = parse_range(header, size)
        except IndexError:
            extra = {"Content-Range": f"bytes */{size}"}
            refused = error_response(
                416, "range_not_satisfiable", "the range is outside the segment", extra
            )
            await refused(scope, receive, send)
            return
        except ValueError as e:
            await error_response(400, "invalid_range", str(e))(scope, receive, send)
            return
        if asked is None:  # several ranges: the whole object
            size, chunks = await self._storage.stream(self._key)
            await self._send(send, 200, size, (0, size), chunks)
            return
        chunks = self._storage.stream_range(self._key, *asked)
        await self._send(send, 206, size, asked, chunks)

    async def _send(
        self,
        send: Send,
        status: int,
        size: int,
        span: tuple[int, int],
        chunks: AsyncIterator[bytes],
    ) -> None:
        start, end = span
        headers = {"content-length": str(end - start)}
        if status == 206:
            headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        # Response.__init__ put a Content-Length for an empty body: this one is ours.
        kept = [h for h in self.raw_headers if h[0] != b"content-length"]
        await send({"type": "http.response.start", "status": status, "headers": kept + raw})
        if end > start:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
