"""The Ray face of `StreamSession`: one named, detached, restartable actor per live stream.

Named `stream-<id>` in namespace `lumalive` so any API replica finds it.
`num_cpus=0` because it waits on Postgres, not the CPU; `max_restarts=-1`
so a crash brings it back, rebuilding its state from Postgres. Calls are not
retried (`max_task_retries=0`): a chat message must not be written twice, so
a caller that sees the actor die gets a 503 and decides.
"""

from __future__ import annotations

from uuid import UUID

import ray

from actors import placement
from actors.stream_session import StreamSession
from lumalive.settings import Settings

__all__ = ["StreamActor", "NAMESPACE", "actor_name", "get_or_create", "lookup", "stop"]

NAMESPACE = "lumalive"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1000)
class StreamActor(StreamSession):
    """StreamSession as a Ray actor (see module docstring)."""


def actor_name(stream_id: UUID) -> str:
    return f"stream-{stream_id}"


def get_or_create(stream_id: UUID, owner_id: UUID, settings: Settings) -> ray.actor.ActorHandle:
    """The stream's actor, created if it does not exist (e.g. after a cluster restart)."""
    return StreamActor.options(
        **placement.control_options(settings),
        name=actor_name(stream_id),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote(stream_id, owner_id, settings)


def named(name: str) -> ray.actor.ActorHandle | None:
    """The detached actor `name` in LumaLive's namespace, or None if it does not run."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def lookup(stream_id: UUID) -> ray.actor.ActorHandle | None:
    return named(actor_name(stream_id))


def stop(handle: ray.actor.ActorHandle) -> None:
    """Remove an ended stream's actor for good."""
    ray.kill(handle, no_restart=True)
