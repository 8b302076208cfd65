"""Every operation of the running system's `/openapi.json`, fuzzed by schemathesis over
HTTP: no server errors (5xx other than a documented 503), and every response matches
its documented schema (the typed response models, and the one error shape for 4xx;
429 from the rate limits is documented too, so it is checked like any answer).

Operations are exercised signed in (as a user who owns a live stream) and anonymous,
with valid and invalid input; path parameters named `stream_id` sometimes point at a
real live or ended stream, so the checks reach the 2xx bodies and not only 404s.
Failures are collected over all operations and reported together.

Operations are fuzzed a few at a time (each with its own HTTP session, kept alive):
the examples and checks are the same as one after the other, and the server, not
this process, is what a request waits on (Hypothesis runs separate tests in threads).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from lumalive.auth import TokenService
from lumalive.settings import Settings
from tests.utils.api import BASE

# Examples per operation and generation mode, for ~55 operations.
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 10}
# Operations fuzzed at once: well under the API's admission door (16 requests).
WORKERS = 4
CHECKS = [not_a_server_error, response_schema_conformance]
TARGETS = ("generated", "live", "ended")
SSE_PATH = "/api/live-streaming/{stream_id}/events/stream"


@schemathesis.serializer("application/sdp")
def _sdp(ctx: Any, value: Any) -> bytes:
    """WHIP offers are SDP text; whatever was generated goes as its text."""
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture(scope="module")
def world(settings: Settings, tokens: TokenService) -> Iterator[dict[str, Any]]:
    """A signed-in user with a live public stream (with some activity) and an ended one."""
    auth = {"Authorization": f"Bearer {tokens.issue(uuid.uuid4())}"}
    fan = {"Authorization": f"Bearer {tokens.issue(uuid.uuid4())}"}
    with httpx.Client(base_url=settings.api_url, timeout=30) as http:

        def stream(*, live: bool) -> str:
            r = http.post(f"{BASE}/create", json={"title": "fuzzed"}, headers=auth)
            assert r.status_code == 201, r.text
            sid = str(r.json()["id"])
            assert http.post(f"{BASE}/start/{sid}", headers=auth).status_code == 200
            activity = [
                ("join", None),
                ("chat", {"message": "hi"}),
                ("reaction", {"reaction": "🚀"}),
            ]
            for path, body in activity:
                r = http.post(f"{BASE}/{sid}/{path}", json=body, headers=fan)
                assert r.status_code in (200, 201), r.text
            if not live:
                assert http.post(f"{BASE}/end/{sid}", headers=auth).status_code == 200
            return sid

        yield {"auth": auth, "live": stream(live=True), "ended": stream(live=False)}


@pytest.fixture(scope="module")
def api_schema(settings: Settings) -> Any:
    return schemathesis.openapi.from_url(f"{settings.api_url}/openapi.json")


def _aim(case: Any, target: str, world: dict[str, Any]) -> None:
    """Point `stream_id` at a real stream. Never a live one for the SSE endpoint (it
    would stream until the test gives up) or for ending (the others need it live)."""
    params = case.path_parameters
    if target == "generated" or not params or "stream_id" not in params:
        return
    if case.operation.path == SSE_PATH or "/end/" in case.operation.path:
        target = "ended"
    params["stream_id"] = world[target]


def _new_out() -> dict[str, Any]:
    return {"statuses": Counter(), "failures": [], "no_negative": []}


def _fuzz_operation(op: Any, world: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Every generation mode of one operation, on a session of its own."""
    out = _new_out()
    with requests.Session() as session:
        for mode in EXAMPLES:
            _fuzz(op, mode, world, base_url, out, session)
    return out


def _fuzz(
    op: Any,
    mode: GenerationMode,
    world: dict[str, Any],
    base_url: str,
    out: dict,
    session: requests.Session,
) -> None:
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,  # the same examples on every run: a failure is reproducible
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=op.as_strategy(generation_mode=mode),
        target=st.sampled_from(TARGETS),
        signed_in=st.booleans(),
    )
    def run(case: Any, target: str, signed_in: bool) -> None:
        _aim(case, target, world)
        headers = world["auth"] if signed_in else None
        try:
            r = case.call_and_validate(
                base_url=base_url, session=session, headers=headers, checks=CHECKS, timeout=30
            )
            out["statuses"][r.status_code] += 1
        except (Failure, FailureGroup) as exc:
            out["failures"].append(f"{op.label} [{mode}, {target}]: {exc}")

    try:
        run()
    except Unsatisfiable:
        # Nothing invalid can be said to an operation without parameters or body.
        assert mode is GenerationMode.NEGATIVE, op.label
        out["no_negative"].append(op.label)


def test_every_operation_conforms_and_never_fails(settings: Settings, world, api_schema) -> None:
    started = time.monotonic()
    out = _new_out()
    ops = [result.ok() for result in api_schema.get_all_operations()]
    labels = [op.label for op in ops]
    with ThreadPoolExecutor(WORKERS) as pool:
        for each in pool.map(lambda op: _fuzz_operation(op, world, settings.api_url), ops):
            for key, value in each.items():
                out[key] += value
    elapsed = time.monotonic() - started
    report = "\n\n".join(out["failures"][:20])
    assert out["failures"] == [], f"{len(out['failures'])} failures:\n{report}"
    # It ran: every documented route, and it reached real successes, not only 4xx.
    assert f"GET {BASE}/{{stream_id}}/events" in labels and len(labels) >= 25, labels
    ok = sum(n for status, n in out["statuses"].items() if status < 300)
    assert ok >= len(labels), out["statuses"]
    print(f"schemathesis: {len(labels)} operations, {dict(out['statuses'])}, {elapsed:.0f} s")
