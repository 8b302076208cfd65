"""`Range` headers as the proxied segment response reads them (RFC 9110 14.1.2)."""

from __future__ import annotations

import pytest

from serve_app.segment_response import parse_range


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes=0-99", (0, 100)),
        ("bytes=100-", (100, 1000)),
        ("bytes=-10", (990, 1000)),
        ("bytes=-5000", (0, 1000)),  # a suffix longer than the object: all of it
        ("bytes=990-5000", (990, 1000)),  # an end past the object is clamped
        ("BYTES = 5-5", (5, 6)),
        ("bytes=0-1, 5-6", None),  # several ranges: the whole object, 200
    ],
)
def test_satisfiable_ranges(header: str, span: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == span


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(IndexError):
        parse_range(header, 1000)


@pytest.mark.parametrize("header", ["items=0-1", "bytes=", "bytes=a-b", "bytes=5-3", "bytes=-"])
def test_malformed_ranges(header: str) -> None:
    with pytest.raises(ValueError):
        parse_range(header, 1000)
