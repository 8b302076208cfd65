"""Webhook signing, the retry schedule and the URL check (`lumalive.webhooks`), and one
delivery attempt (`WebhookDispatcher.send`) against httpx's MockTransport; no I/O beyond
the local resolver, no Ray started, no Postgres."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

import httpx
import pytest

from actors.webhook_dispatcher import WebhookDispatcher
from lumalive.errors import Unprocessable
from lumalive.store.webhooks import Claimed
from lumalive.webhooks import (
    SECRET_PREFIX,
    RetrySchedule,
    UrlPolicy,
    body_bytes,
    check_addresses,
    check_url,
    new_secret,
    sign,
    signature_headers,
    verify,
)

# The Standard Webhooks specification's published test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _by_hand(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    """The spec's recipe, written out with hmac directly."""
    key = base64.b64decode(secret[len("whsec_") :])
    mac = hmac.new(key, msg_id.encode() + b"." + str(ts).encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_signature_matches_the_specifications_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    assert _by_hand(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_signature_of_a_fresh_secret_matches_the_recipe() -> None:
    secret = new_secret()
    body = body_bytes({"type": "stream.started", "data": {"streamId": "x", "title": "ü"}})
    headers = signature_headers(secret, "evt-1", 1_700_000_000, body)
    assert headers["webhook-id"] == "evt-1"
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"] == _by_hand(secret, "evt-1", 1_700_000_000, body)


def test_secrets_are_whsec_base64_of_24_random_bytes() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith(SECRET_PREFIX) and a != b
    assert len(base64.b64decode(a[len(SECRET_PREFIX) :])) == 24


def test_verify_accepts_the_real_signature_only_and_only_while_fresh() -> None:
    now = time.time()
    headers = signature_headers(SPEC_SECRET, SPEC_ID, int(now), SPEC_BODY)
    assert verify(SPEC_SECRET, headers, SPEC_BODY)
    assert not verify(SPEC_SECRET, headers, SPEC_BODY + b" ")  # body changed
    assert not verify(new_secret(), headers, SPEC_BODY)  # another secret
    assert not verify(SPEC_SECRET, {**headers, "webhook-id": "other"}, SPEC_BODY)
    assert not verify(SPEC_SECRET, headers, SPEC_BODY, now=now + 301)  # a replay, later
    # Several signatures (a rotated secret): one that matches is enough.
    rotated = {**headers, "webhook-signature": "v1,AAAA " + headers["webhook-signature"]}
    assert verify(SPEC_SECRET, rotated, SPEC_BODY)
    assert not verify(SPEC_SECRET, {"webhook-id": "x"}, SPEC_BODY)


def test_retry_schedule_waits_each_delay_with_bounded_jitter_then_gives_up() -> None:
    delays = (5.0, 30.0, 120.0)
    low = RetrySchedule(delays, jitter=0.2, rng=lambda: 0.0)
    high = RetrySchedule(delays, jitter=0.2, rng=lambda: 0.999999)
    exact = RetrySchedule(delays, jitter=0.0)
    assert exact.max_attempts == 4
    assert [exact.retry_in(n) for n in (1, 2, 3)] == [5.0, 30.0, 120.0]
    assert exact.retry_in(4) is None and exact.retry_in(0) is None
    for n, delay in enumerate(delays, start=1):
        assert low.retry_in(n) == pytest.approx(delay * 0.8)
        assert high.retry_in(n) == pytest.approx(delay * 1.2, rel=1e-5)
    spread = {RetrySchedule(delays).retry_in(2) for _ in range(50)}
    assert len(spread) > 1 and all(24.0 <= s <= 36.0 for s in spread)  # type: ignore[operator]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fc00::1",
        "fe80::1%eth0",
        "::ffff:127.0.0.1",
    ],
)
def test_private_and_local_addresses_are_refused(address: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        check_addresses([address], allow_private=False)
    assert refused.value.code == "webhook_private_address"
    check_addresses([address], allow_private=True)  # unless the setting allows them


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    check_addresses(["93.184.216.34", "2606:2800:220:1::1"], allow_private=False)
    with pytest.raises(Unprocessable):
        check_addresses(["93.184.216.34", "10.0.0.1"], allow_private=False)


async def _public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://example.com/hook", "webhook_insecure_url"),
        ("ftp://example.com/hook", "webhook_insecure_url"),
        ("https:///nohost", "webhook_invalid_url"),
        ("https://user:pw@example.com/hook", "webhook_invalid_url"),
        ("https://example.com:99999/hook", "webhook_invalid_url"),
    ],
)
async def test_url_shape_is_checked(url: str, code: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        await check_url(url, UrlPolicy(), _public)
    assert refused.value.code == code


async def test_url_check_resolves_the_host_for_real() -> None:
    assert await check_url("https://example.com/h", UrlPolicy(), _public) == "https://example.com/h"
    # `localhost` through the system resolver (/etc/hosts): loopback, refused by default.
    with pytest.raises(Unprocessable) as refused:
        await check_url("https://localhost:8443/hook", UrlPolicy())
    assert refused.value.code == "webhook_private_address"
    with pytest.raises(Unprocessable):
        await check_url("https://127.0.0.1/hook", UrlPolicy())
    policy = UrlPolicy(allow_http=True, allow_private=True)
    assert await check_url("http://localhost:8080/h", policy) == "http://localhost:8080/h"
    with pytest.raises(Unprocessable) as unresolved:
        await check_url("https://no-such-host.invalid/h", UrlPolicy())
    assert unresolved.value.code == "webhook_unresolvable"


# -- one attempt (actors.webhook_dispatcher.WebhookDispatcher.send), over httpx's
# MockTransport: the receiver is the seam; signing and the URL check run for real.


def _dispatcher(handler, resolved: str = "93.184.216.34"):
    async def resolve(host: str, port: int) -> list[str]:
        return [resolved]

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    dispatcher = WebhookDispatcher(
        None,  # type: ignore[arg-type]  # send() does not touch the database
        client,
        RetrySchedule((1.0,)),
        UrlPolicy(),
        timeout_s=2.0,
        poll_s=1.0,
        resolve=resolve,
    )
    return dispatcher, client


def _claimed(url: str = "https://hooks.example.com/in"):
    payload = {"type": "stream.started", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}}
    return Claimed(uuid.uuid4(), uuid.uuid4(), 1, url, new_secret(), payload)


async def test_an_attempt_posts_the_signed_body_and_a_2xx_is_delivered() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    dispatcher, client = _dispatcher(handler)
    d = _claimed()
    outcome = await dispatcher.send(d)
    await client.aclose()
    assert (outcome.ok, outcome.status_code, outcome.error) == (True, 204, None)
    [request] = seen
    assert request.method == "POST" and str(request.url) == d.url
    assert request.content == body_bytes(d.payload)
    assert request.headers["webhook-id"] == str(d.event_id)
    assert verify(d.secret, dict(request.headers), request.content)


@pytest.mark.parametrize("status", [500, 404, 302])
async def test_anything_but_a_2xx_is_a_failed_attempt(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"location": "http://169.254.169.254/"})

    dispatcher, client = _dispatcher(handler)
    outcome = await dispatcher.send(_claimed())
    await client.aclose()
    assert (outcome.ok, outcome.status_code, outcome.error) == (False, status, f"HTTP {status}")


async def test_a_host_that_now_resolves_privately_is_not_called() -> None:
    calls: list[httpx.Request] = []
    dispatcher, client = _dispatcher(lambda r: calls.append(r) or httpx.Response(200), "10.0.0.7")
    outcome = await dispatcher.send(_claimed())
    await client.aclose()
    assert not outcome.ok and calls == []
    assert outcome.status_code is None and "private" in (outcome.error or "")


async def test_an_unreachable_receiver_is_a_failed_attempt_with_the_reason() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    dispatcher, client = _dispatcher(handler)
    outcome = await dispatcher.send(_claimed())
    await client.aclose()
    assert not outcome.ok and outcome.status_code is None
    assert outcome.error == "ConnectError: connection refused"
