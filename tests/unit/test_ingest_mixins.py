"""The ingest actor is one class made of mixins (WHEP egress, WHIP ingest, the cluster's
RTMP ingest over `IngestService`): a helper one of them defines under a name another
already uses silently replaces it for all of them. Twice that broke a path only a
system test reached (a WHEP `_hang_up` hid the ingest's; a WHEP `_publishing` hid the
WHIP one). Only the cooperative methods, which call `super()`, may share a name."""

from __future__ import annotations

import inspect

from actors.ingest_actor import ClusterIngest
from actors.ingest_service import IngestService
from actors.whep_egress import WhepEgress
from actors.whip_ingest import WhipIngest


def ingest_mixins() -> list[type]:
    """The ingest actor's classes, in its MRO's order (`actors.ingest_actor`)."""
    return [WhepEgress, WhipIngest, ClusterIngest, IngestService]


# Methods each mixin extends on purpose, calling super().
COOPERATIVE = {"__init__", "status", "stop", "finish", "on_session"}


def test_no_mixin_of_the_ingest_actor_hides_anothers_name() -> None:
    seen: dict[str, str] = {}
    clashes = []
    for cls in ingest_mixins():
        for name, value in vars(cls).items():
            if not (inspect.isfunction(value) or isinstance(value, property)):
                continue
            if name in seen and name not in COOPERATIVE:
                clashes.append(f"{name}: {cls.__name__} and {seen[name]}")
            seen.setdefault(name, cls.__name__)
    assert not clashes, clashes


def test_the_cooperative_methods_call_super() -> None:
    for cls in ingest_mixins()[:-1]:  # the base class has no super() to call
        for name in COOPERATIVE & set(vars(cls)):
            assert "super()" in inspect.getsource(vars(cls)[name]), f"{cls.__name__}.{name}"
