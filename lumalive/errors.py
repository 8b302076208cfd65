"""Domain errors. Each carries an HTTP status and a stable code; one handler in
`serve_app.errors` turns them into `{"error": {"code", "message"}}`.

    LumaError
    ├── BadRequest           400
    ├── Unauthorized         401
    ├── Forbidden            403
    ├── NotFound             404  (also: exists but the caller may not see it)
    ├── Conflict             409
    ├── PayloadTooLarge      413
    ├── Unprocessable        422
    ├── RateLimited          429  (carries retry_after seconds)
    └── Unavailable          503  (may carry retry_after; a database fault is one,
                                   see `lumalive.db.as_unavailable`)
"""

from __future__ import annotations

__all__ = [
    "LumaError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "Unprocessable",
    "RateLimited",
    "Unavailable",
]


class LumaError(Exception):
    status_code = 500
    default_code = "internal_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def __reduce__(self) -> tuple[type[LumaError], tuple[object, ...]]:
        # Survive pickling across Ray actor boundaries.
        return (type(self), (self.message, self.code))


class BadRequest(LumaError):
    status_code, default_code = 400, "bad_request"


class Unauthorized(LumaError):
    status_code, default_code = 401, "unauthorized"


class Forbidden(LumaError):
    status_code, default_code = 403, "forbidden"


class NotFound(LumaError):
    status_code, default_code = 404, "not_found"


class Conflict(LumaError):
    status_code, default_code = 409, "conflict"


class PayloadTooLarge(LumaError):
    status_code, default_code = 413, "payload_too_large"


class Unprocessable(LumaError):
    status_code, default_code = 422, "validation_error"


class RateLimited(LumaError):
    status_code, default_code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[LumaError], tuple[object, ...]]:
        return (type(self), (self.message, self.retry_after, self.code))


class Unavailable(LumaError):
    """Retry later; `retry_after` (seconds), when known, becomes the Retry-After header."""

    status_code, default_code = 503, "unavailable"

    def __init__(
        self, message: str, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[LumaError], tuple[object, ...]]:
        return (type(self), (self.message, self.code, self.retry_after))
