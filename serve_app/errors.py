"""One JSON error shape for every failure: {"error": {"code", "message", ...}}.

Besides the domain errors (`lumalive.errors`), database faults are mapped here, in
one place, wherever they are raised (a route, a dependency, a stream actor whose
error Ray wraps in a `RayTaskError`):

- down, unreachable, overloaded or too slow (`lumalive.db.as_unavailable`):
  503 `database_unavailable` / `database_timeout` / `database_busy`, with Retry-After;
- a value Postgres refuses (class 22 "data exception", e.g. a NUL byte in text):
  422 `invalid_value` — the schemas refuse such input first, this is the safety net;
- a row the request refers to vanished meanwhile (foreign key violation): 409 `conflict`.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa
from starlette.exceptions import HTTPException as StarletteHTTPException

from lumalive.db import as_unavailable
from lumalive.errors import LumaError, RateLimited, Unavailable

__all__ = ["install", "error_response", "unavailable_response"]

log = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, **extra}}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds + 0.499)))}


def unavailable_response(exc: Unavailable, **extra: Any) -> JSONResponse:
    headers = None if exc.retry_after is None else _retry_after(exc.retry_after)
    return error_response(exc.status_code, exc.code, exc.message, headers, **extra)


async def _luma(_: Request, exc: LumaError) -> JSONResponse:
    if isinstance(exc, Unavailable):
        return unavailable_response(exc)
    headers = _retry_after(exc.retry_after) if isinstance(exc, RateLimited) else None
    return error_response(exc.status_code, exc.code, exc.message, headers)


async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    return error_response(422, "validation_error", f"{where}: {first['msg']}", details=details)


async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    return error_response(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        str(exc.detail),
        getattr(exc, "headers", None),
    )


def database_fault(exc: BaseException) -> JSONResponse | None:
    """The answer to a database error, or None if `exc` is no database error we map."""
    cause = getattr(exc, "cause", None)  # an actor's error, as Ray re-raises it
    if isinstance(cause, BaseException) and cause is not exc:
        return database_fault(cause)
    unavailable = as_unavailable(exc)
    if unavailable is not None:
        first_line = str(exc).partition("\n")[0]  # no parameters: hide_parameters
        log.warning("database fault (%s): %s", unavailable.code, first_line)
        return unavailable_response(unavailable)
    driver = exc.orig if isinstance(exc, sa.DBAPIError) else exc
    if isinstance(driver, psycopg.DataError):
        return error_response(422, "invalid_value", "a value in this request cannot be stored")
    if isinstance(driver, psycopg.errors.ForeignKeyViolation):
        return error_response(409, "conflict", "something this request refers to no longer exists")
    return None


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    mapped = database_fault(exc)
    if mapped is not None:
        return mapped
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(LumaError, _luma)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    # Registered by class as well as under Exception: Starlette answers `Exception`
    # last and re-raises it to the server as a crash, which a mapped fault is not.
    app.add_exception_handler(sa.SQLAlchemyError, _unexpected)
    app.add_exception_handler(psycopg.Error, _unexpected)
    app.add_exception_handler(Exception, _unexpected)
