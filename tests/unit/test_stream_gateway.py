"""How `actors.stream_gateway.StreamGateway` turns what Ray raises into API errors,
with fake actor handles (Ray's exception classes need no cluster)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from actors.stream_gateway import StreamGateway
from lumalive.errors import Conflict, RateLimited, Unavailable
from lumalive.settings import Settings
from lumalive.status import StreamStatus


class Method:
    def __init__(self, handle: FakeHandle, name: str) -> None:
        self._handle, self._name = handle, name

    async def remote(self, *args: Any) -> Any:
        self._handle.calls.append((self._name, args))
        if self._handle.raises is not None:
            raise self._handle.raises
        if self._name.endswith("_many"):  # chat_many / react_many: one result per item
            return [{"method": self._name, "args": tuple(item)} for item in args[0]]
        return {"method": self._name, "args": args}


class FakeHandle:
    """Answers `handle.<method>.remote(*args)` as an actor would, or raises `raises`."""

    def __init__(self, raises: BaseException | None = None) -> None:
        self.raises = raises
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.stopped = False

    def __getattr__(self, name: str) -> Method:
        return Method(self, name)


class World:
    """The fakes a gateway is built on: handles per stream, the status in 'Postgres'."""

    def __init__(self, tmp_path: Path) -> None:
        self.status = StreamStatus.LIVE
        self.next_raises: BaseException | None = None
        self.connected: list[FakeHandle] = []
        self.changed: list[UUID] = []
        self.gateway = StreamGateway(
            Settings(data_dir=tmp_path),
            self.status_now,
            on_change=self.changed.append,
            connect=self.connect,
            stop=self.stop,
        )

    def connect(self, stream_id: UUID, owner_id: UUID) -> FakeHandle:
        handle = FakeHandle(self.next_raises)
        self.connected.append(handle)
        return handle

    @staticmethod
    def stop(handle: FakeHandle) -> None:
        handle.stopped = True

    async def status_now(self, stream_id: UUID, owner_id: UUID) -> str:
        return self.status


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


STREAM = {"id": uuid.uuid4(), "user_id": uuid.uuid4(), "status": StreamStatus.LIVE}
USER = uuid.uuid4()


def task_error(cause: Exception) -> RayTaskError:
    """As Ray raises it: a RayTaskError that is also an instance of the cause's class."""
    return RayTaskError("chat", "Traceback ...", cause).as_instanceof_cause()


async def test_each_operation_calls_its_actor_method_with_its_arguments(world: World) -> None:
    g = world.gateway
    assert await g.join(STREAM, USER) == {"method": "join", "args": (USER,)}
    assert (await g.chat(STREAM, USER, "hi", 0.5, False))["args"] == (USER, "hi", 0.5, False)
    assert (await g.react(STREAM, USER, "fire"))["args"] == (USER, "fire")
    assert (await g.leave(STREAM, USER))["method"] == "leave"
    assert (await g.stats(STREAM))["method"] == "stats"
    assert len(world.connected) == 1  # one handle per stream, cached


async def test_start_invalidates_and_end_stops_the_actor(world: World) -> None:
    g = world.gateway
    await g.start(STREAM)
    assert world.changed == [STREAM["id"]]
    handle = world.connected[0]
    assert (await g.end(STREAM, "ended_by_owner"))["args"] == ("ended_by_owner",)
    assert handle.stopped
    await g.join(STREAM, USER)
    assert len(world.connected) == 2  # a forgotten stream gets a new handle


async def test_a_domain_error_comes_back_as_itself(world: World) -> None:
    world.next_raises = task_error(RateLimited("slow down", 2.5))
    with pytest.raises(RateLimited) as exc:
        await world.gateway.chat(STREAM, USER, "hi", 0.0, False)
    assert type(exc.value) is RateLimited and exc.value.retry_after == 2.5
    assert not world.connected[0].stopped and world.changed == []


async def test_stream_not_live_forgets_the_actor(world: World) -> None:
    world.next_raises = task_error(Conflict("stream is ended, not live", "stream_not_live"))
    with pytest.raises(Conflict) as exc:
        await world.gateway.join(STREAM, USER)
    assert exc.value.code == "stream_not_live"
    assert world.connected[0].stopped and world.changed == [STREAM["id"]]


async def test_an_unexpected_actor_error_is_not_disguised(world: World) -> None:
    world.next_raises = task_error(KeyError("boom"))
    with pytest.raises(RayTaskError):
        await world.gateway.join(STREAM, USER)


def died() -> BaseException:
    return ActorDiedError()


def unavailable() -> BaseException:
    return ActorUnavailableError("the actor is restarting", None)


@pytest.mark.parametrize("failure", [died, unavailable])
async def test_a_dead_actor_of_a_live_stream_is_503_and_reconnected_next_time(
    world: World, failure: Callable[[], BaseException]
) -> None:
    world.next_raises = failure()
    with pytest.raises(Unavailable) as exc:
        await world.gateway.react(STREAM, USER, "fire")
    assert exc.value.code == "stream_restarting" and exc.value.status_code == 503
    assert world.changed == [STREAM["id"]]
    world.next_raises = None
    await world.gateway.react(STREAM, USER, "fire")
    assert len(world.connected) == 2
    assert not world.connected[0].stopped  # it restarts by itself; nothing to stop


@pytest.mark.parametrize("failure", [died, unavailable])
async def test_a_dead_actor_of_an_ended_stream_is_a_conflict(
    world: World, failure: Callable[[], BaseException]
) -> None:
    world.next_raises = failure()
    world.status = StreamStatus.ENDED
    with pytest.raises(Conflict) as exc:
        await world.gateway.chat(STREAM, USER, "hi", 0.0, False)
    assert exc.value.code == "stream_not_live"
    assert str(exc.value) == "stream is ended, not live"
