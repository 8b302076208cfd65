"""Settling a batched caller's future: the write batcher and the call lane both hand
one batch's results back to the callers who queued them, and a caller may have gone
away (cancelled) meanwhile, so the rule lives here once.

Invariant: settling a future that is already done does nothing (never raises
`InvalidStateError` into the batch that serves the other callers).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["settle"]


def settle(fut: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    """Give `fut` its result, or `exc` if one is given, unless its caller went away."""
    if fut.done():  # the caller went away
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
