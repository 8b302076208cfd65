"""A real S3-API server for tests: moto's threaded server on a free loopback port, and
the standard `AWS_*` variables that point obstore (or any S3 client) at it."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

__all__ = ["s3_server", "s3_environment"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def s3_server(bucket: str = "lumalive-test") -> Iterator[dict[str, str]]:
    """Start the server, create `bucket`, yield the environment an S3 client needs."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # CreateBucket through the plain HTTP API (moto accepts any credentials).
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"))
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "AWS_S3_BUCKET": bucket,  # not read by obstore: the tests build URLs from it
        }
    finally:
        server.stop()


@contextmanager
def s3_environment() -> Iterator[dict[str, str]]:
    """`s3_server`, with its `AWS_*` variables set in this process while it runs (obstore
    reads them), and the previous values put back afterwards."""
    with s3_server() as env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
