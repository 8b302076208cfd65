"""Which address a request came from behind proxies (`serve_app.callers`): the
rightmost X-Forwarded-For hop that is not a trusted proxy, and only when the socket's
peer is one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from lumalive.settings import Settings
from serve_app.callers import client_address, forwarded_client, trusted_networks

LB = trusted_networks("10.0.0.0/8, 2001:db8::/32")


def test_trusted_proxies_parse_cidrs_and_addresses():
    nets = trusted_networks("10.0.0.0/8 192.0.2.7,2001:db8::/32")
    assert [str(n) for n in nets] == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
    assert trusted_networks("") == ()
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        trusted_networks("10.0.0.0/8,10.0.0.300")


def test_settings_refuse_a_malformed_proxy_list():
    assert Settings(_env_file=None, trusted_proxies="10.0.0.0/8").trusted_proxies == "10.0.0.0/8"  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Settings(_env_file=None, trusted_proxies="10.0.0.0/8, proxy.local")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        # an untrusted peer is the client, whatever it claims
        ("203.0.113.9", ["1.2.3.4"], "203.0.113.9"),
        ("203.0.113.9", [], "203.0.113.9"),
        # a trusted balancer: the hop it appended
        ("10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        # the client wrote the left part: the rightmost untrusted hop wins
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", ["6.6.6.6", "198.51.100.7, 10.1.2.3"], "198.51.100.7"),
        # every hop a proxy: the farthest one
        ("10.0.0.2", ["10.9.9.9, 10.1.2.3"], "10.9.9.9"),
        # a trusted peer without the header is the client
        ("10.0.0.2", [], "10.0.0.2"),
        # ports and IPv6, bracketed or not, and v4-mapped peers
        ("10.0.0.2", ["198.51.100.7:4711"], "198.51.100.7"),
        ("2001:db8::1", ["[2001:db9::5]:443"], "2001:db9::5"),
        ("2001:db8::1", ["2001:db9::5"], "2001:db9::5"),
        ("::ffff:10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        # garbage stops the walk at the proxy that reported it
        ("10.0.0.2", ["198.51.100.7, unknown"], "10.0.0.2"),
        ("10.0.0.2", ["1.1.1.1, nonsense, 10.1.2.3"], "10.1.2.3"),
    ],
)
def test_the_rightmost_untrusted_hop_is_the_client(peer, xff, client):
    assert forwarded_client(peer, xff, LB) == client


def _request(peer: str, *xff: str) -> Request:
    headers = [(b"x-forwarded-for", v.encode()) for v in xff]
    return Request({"type": "http", "client": (peer, 5000), "headers": headers})


def test_without_trusted_proxies_the_header_is_ignored():
    assert client_address(_request("127.0.0.1", "9.9.9.9"), "") == "127.0.0.1"
    assert client_address(_request("127.0.0.1", "9.9.9.9"), "127.0.0.1") == "9.9.9.9"
    assert client_address(_request("127.0.0.1", "9.9.9.9"), "10.0.0.0/8") == "127.0.0.1"
