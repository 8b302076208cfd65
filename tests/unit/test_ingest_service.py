"""The ingest's admission, publisher-drop and end policy, without Ray or Postgres: the
service's seams (records, stream control, pipelines) are in-memory here; the RTMP
sessions are real `IngestSession`s, handed over as the RTMP server hands them, and
their readers are read to the end in a thread, as the segmenter reads them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest

from actors.ingest_ports import EndStream, Finished, KeyedStream
from actors.ingest_service import IngestService
from lumalive.status import StreamStatus
from media.rtmp import IngestSession, flv


@dataclass
class Records:
    """IngestRecords over dicts: stream rows by id, keys to ids, the events recorded."""

    rows: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, UUID] = field(default_factory=dict)
    events: list[tuple[UUID, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, key: str, status: StreamStatus) -> UUID:
        sid = uuid.uuid4()
        self.rows[sid] = {"id": sid, "user_id": uuid.uuid4(), "status": str(status)}
        self.keys[key] = sid
        return sid

    def kinds(self, sid: UUID) -> list[str]:
        return [kind for s, kind, _ in self.events if s == sid]

    async def stream_for_key(self, key: str) -> KeyedStream | None:
        sid = self.keys.get(key)
        return KeyedStream.from_row(self.rows[sid]) if sid else None

    async def stream(self, stream_id: UUID, owner_id: UUID) -> dict[str, Any] | None:
        row = self.rows.get(stream_id)
        return dict(row) if row and row["user_id"] == owner_id else None

    async def add_event(
        self, stream_id: UUID, owner_id: UUID, kind: str, data: dict[str, Any]
    ) -> None:
        self.events.append((stream_id, kind, data))


@dataclass
class Control:
    """StreamControl that moves the rows as the stream actor would."""

    records: Records
    started: list[UUID] = field(default_factory=list)
    ended: list[tuple[UUID, str]] = field(default_factory=list)
    race_to: StreamStatus | None = None  # someone else moves a created stream first

    async def start(self, stream_id: UUID, owner_id: UUID) -> bool:
        row = self.records.rows[stream_id]
        if self.race_to is not None:
            row["status"] = str(self.race_to)
        if row["status"] != StreamStatus.CREATED:
            return False
        row["status"] = str(StreamStatus.LIVE)
        self.started.append(stream_id)
        return True

    async def end(self, stream_id: UUID, owner_id: UUID, reason: str) -> None:
        row = self.records.rows[stream_id]
        if row["status"] == StreamStatus.LIVE:
            row["status"] = str(StreamStatus.ENDED)
            self.ended.append((stream_id, reason))


class Pipeline:
    """A stream's pipeline that reads each input to its end in a thread (once
    `may_read` is set) and keeps what it read; `drain`, like the real one, waits for
    the input to end, then for the test to say what it sent is published."""

    def __init__(self, stream: dict[str, Any], end_stream: EndStream) -> None:
        self.owner_id: UUID = stream["user_id"]
        self.stopped = False
        self.closed = False
        self.inputs: list[Any] = []
        self.received: list[bytes] = []  # what each input read, once it ended
        self.end_stream = end_stream
        self.may_read = asyncio.Event()
        self.may_read.set()
        self.draining = False
        self.drains = 0
        self.published = asyncio.Event()
        self.published.set()
        self._input = asyncio.Lock()

    async def ingest(self, source: Any, *, started_at: float | None = None) -> None:
        self.inputs.append(source)
        async with self._input:
            await self.may_read.wait()
            self.received.append(await asyncio.to_thread(read_to_end, source))

    async def drain(self) -> None:
        self.draining = True
        self.drains += 1
        async with self._input:
            pass
        await self.published.wait()

    async def close(self) -> None:
        self.stopped = self.closed = True

    def status(self) -> dict[str, Any]:
        return {"inputs": len(self.inputs)}


def read_to_end(source: Any) -> bytes:
    data = b""
    while chunk := source.read(65536):
        data += chunk
    return data


def send_audio(session: IngestSession, timestamp: int, payload: bytes) -> None:
    """The publisher sends an AAC frame (raw, not a sequence header)."""
    session.feed_media(flv.AUDIO, timestamp, b"\xaf\x01" + payload)


@dataclass
class Pipelines:
    opened: list[Pipeline] = field(default_factory=list)

    async def __call__(
        self, stream: dict[str, Any], *, end_stream: EndStream, on_stop: Callable[[], None]
    ) -> Pipeline:
        pipeline = Pipeline(stream, end_stream)
        self.opened.append(pipeline)
        return pipeline


@dataclass
class Ingest:
    records: Records
    control: Control
    pipelines: Pipelines
    service: IngestService

    async def publish(self, key: str) -> IngestSession:
        """A publish of `key` as the RTMP server makes it: authorize, then on_session."""
        sid = await self.service.authorize("live", key)
        assert sid is not None, f"{key} refused"
        session = IngestSession(stream_id=sid, stream_key=key, app="live", peer="test")
        await self.service.on_session(session)
        return session


def make_ingest(grace_s: float) -> Ingest:
    records = Records()
    control = Control(records)
    pipelines = Pipelines()
    service = IngestService(records, control, pipelines, reconnect_grace_s=grace_s)
    return Ingest(records, control, pipelines, service)


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    box = make_ingest(grace_s=60.0)
    yield box
    await box.service.stop()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Let the service's tasks run until `check()` holds: a step of the event loop at a
    time, then also time for the threads that read the inputs (the timeout only bounds
    a test that would otherwise hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    steps = 0
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        steps += 1
        await asyncio.sleep(0 if steps < 1000 else 0.001)


# --- admission -------------------------------------------------------------------------


async def test_an_unknown_key_is_refused(ingest: Ingest) -> None:
    assert await ingest.service.authorize("live", "no-such-key") is None
    assert ingest.records.events == [] and ingest.control.started == []


async def test_an_app_other_than_live_is_refused(ingest: Ingest) -> None:
    ingest.records.add("key", StreamStatus.LIVE)
    assert await ingest.service.authorize("vod", "key") is None


async def test_an_ended_streams_key_is_refused_and_recorded(ingest: Ingest) -> None:
    sid = ingest.records.add("key", StreamStatus.ENDED)
    assert await ingest.service.authorize("live", "key") is None
    assert ingest.records.events == [(sid, "ingest_refused", {"reason": "stream_ended"})]
    assert ingest.control.started == []


async def test_publishing_starts_a_created_stream(ingest: Ingest) -> None:
    sid = ingest.records.add("key", StreamStatus.CREATED)
    assert await ingest.service.authorize("live", "key") == str(sid)
    assert ingest.control.started == [sid]
    assert ingest.records.rows[sid]["status"] == StreamStatus.LIVE


async def test_a_live_stream_is_accepted_without_starting_it(ingest: Ingest) -> None:
    sid = ingest.records.add("key", StreamStatus.LIVE)
    assert await ingest.service.authorize("live", "key") == str(sid)
    assert ingest.control.started == []


@pytest.mark.parametrize(
    ("raced_to", "accepted"), [(StreamStatus.LIVE, True), (StreamStatus.ENDED, False)]
)
async def test_a_start_that_races_with_the_owner_goes_by_the_status_after(
    ingest: Ingest, raced_to: StreamStatus, accepted: bool
) -> None:
    sid = ingest.records.add("key", StreamStatus.CREATED)
    ingest.control.race_to = raced_to  # the owner started (or ended) it just before
    assert await ingest.service.authorize("live", "key") == (str(sid) if accepted else None)
    assert ingest.control.started == []


# --- a publisher that drops ------------------------------------------------------------


async def test_a_publish_runs_the_streams_pipeline_and_records_it(ingest: Ingest) -> None:
    sid = ingest.records.add("key", StreamStatus.CREATED)
    session = await ingest.publish("key")
    [pipeline] = ingest.pipelines.opened
    await until(lambda: len(pipeline.inputs) == 1, "the input reached the pipeline")
    assert ingest.service.status()["sessions"].keys() == {str(sid)}
    session.end("unpublished")
    await until(lambda: "ingest_disconnected" in ingest.records.kinds(sid), "disconnect event")
    assert ingest.records.kinds(sid) == ["ingest_connected", "ingest_disconnected"]
    assert ingest.records.events[-1][2] == {"reason": "unpublished"}
    assert ingest.service.status()["grace"] == [str(sid)]  # may come back
    assert ingest.control.ended == [] and not pipeline.closed


async def test_a_reconnect_within_the_grace_period_reuses_the_pipeline(ingest: Ingest) -> None:
    sid = ingest.records.add("key", StreamStatus.LIVE)
    first = await ingest.publish("key")
    first.end("disconnected")
    await until(lambda: ingest.service.status()["grace"] == [str(sid)], "the grace period")
    grace = ingest.service._grace[str(sid)]

    second = await ingest.publish("key")
    [pipeline] = ingest.pipelines.opened  # the same pipeline takes the second input
    await until(lambda: len(pipeline.inputs) == 2, "the second input reached the pipeline")
    await until(grace.done, "the grace timer to stop")
    assert grace.cancelled() and ingest.service.status()["grace"] == []
    assert ingest.control.ended == [] and not pipeline.closed
    second.end("unpublished")
    await until(lambda: ingest.service.status()["grace"] == [str(sid)], "a new grace period")


async def test_without_a_publisher_for_the_grace_period_the_stream_ends_after_drain() -> None:
    ingest = make_ingest(grace_s=0.0)
    try:
        sid = ingest.records.add("key", StreamStatus.LIVE)
        session = await ingest.publish("key")
        [pipeline] = ingest.pipelines.opened
        pipeline.published.clear()  # segments of the last input still in the pool
        session.end("disconnected")
        await until(lambda: ingest.service.status()["grace"] == [str(sid)], "the grace period")
        for _ in range(20):  # the grace period is over, but nothing ends before the drain
            await asyncio.sleep(0)
        assert ingest.control.ended == [] and not pipeline.closed

        pipeline.published.set()
        await until(lambda: pipeline.closed, "the pipeline to close")
        assert ingest.control.ended == [(sid, "publisher_timeout")]
        assert ingest.service.status()["grace"] == [] and ingest.service.status()["pipelines"] == {}
        kinds = ingest.records.kinds(sid)
        assert kinds == ["ingest_connected", "ingest_disconnected"]
    finally:
        await ingest.service.stop()


async def test_a_pipeline_stopped_by_the_stream_ending_gets_no_grace_period(
    ingest: Ingest,
) -> None:
    """The stream ended while publishing (moderation, its owner): the next publish of the
    key is refused, and the old pipeline is closed rather than waited for."""
    sid = ingest.records.add("key", StreamStatus.LIVE)
    session = await ingest.publish("key")
    [pipeline] = ingest.pipelines.opened
    await pipeline.end_stream("policy_violation")
    pipeline.stopped = True
    assert ingest.control.ended == [(sid, "policy_violation")]
    session.end("disconnected")
    await until(lambda: pipeline.closed, "the pipeline to close")
    assert ingest.service.status()["grace"] == []
    assert await ingest.service.authorize("live", "key") is None
    assert ingest.records.kinds(sid)[-1] == "ingest_refused"


async def test_moderation_ends_the_stream_at_once_without_waiting_for_the_drain(
    ingest: Ingest,
) -> None:
    sid = ingest.records.add("key", StreamStatus.LIVE)
    await ingest.publish("key")
    [pipeline] = ingest.pipelines.opened
    pipeline.published.clear()  # segments still in the pool: they must not hold it up
    await pipeline.end_stream("policy_violation")
    assert ingest.control.ended == [(sid, "policy_violation")]
    assert not pipeline.draining


# --- its owner ending it ---------------------------------------------------------------


async def test_finishing_reads_what_the_publisher_sent_and_nothing_after(
    ingest: Ingest,
) -> None:
    """The publisher is still sending when its owner ends the stream: what arrived
    before is read (the segmenter cuts it), what comes after is not, and `finish`
    answers once that is published; the stream is left for the caller to end."""
    sid = ingest.records.add("key", StreamStatus.LIVE)
    session = await ingest.publish("key")
    [pipeline] = ingest.pipelines.opened
    pipeline.may_read.clear()  # the segmenter is behind: what came is still buffered
    pipeline.published.clear()
    send_audio(session, 0, b"BEFORE")

    finishing = asyncio.create_task(ingest.service.finish(str(sid), 10.0))
    await until(lambda: pipeline.draining, "the drain to start")
    send_audio(session, 40, b"AFTER")  # the publisher is still sending
    pipeline.may_read.set()
    await until(lambda: bool(pipeline.received), "the input to end")
    [got] = pipeline.received
    assert b"BEFORE" in got and b"AFTER" not in got
    assert not session.closed  # the publisher is still connected, just not read

    # Meanwhile the key is refused (and that recorded) ...
    assert await ingest.service.authorize("live", "key") is None
    assert ingest.records.events[-1] == (sid, "ingest_refused", {"reason": "stream_ending"})
    assert ingest.service.status()["finishing"] == [str(sid)]
    # ... and `finish` waits for what was cut to be published.
    for _ in range(20):
        await asyncio.sleep(0)
    assert not finishing.done() and not pipeline.closed

    pipeline.published.set()
    result = await finishing
    assert result.drained and result.waited_s >= 0
    await until(lambda: pipeline.closed, "the pipeline to close")
    assert ingest.service.status()["pipelines"] == {}
    assert ingest.service.status()["finishing"] == []
    assert ingest.control.ended == []  # the caller ends it (through the stream actor)

    session.end("unpublished")  # the publisher goes: no grace period for an ended stream
    await until(lambda: "ingest_disconnected" in ingest.records.kinds(sid), "disconnect event")
    assert ingest.service.status()["grace"] == []


async def test_a_publisher_leaving_while_finishing_gets_no_grace_period(
    ingest: Ingest,
) -> None:
    sid = ingest.records.add("key", StreamStatus.LIVE)
    session = await ingest.publish("key")
    [pipeline] = ingest.pipelines.opened
    pipeline.published.clear()
    finishing = asyncio.create_task(ingest.service.finish(str(sid), 10.0))
    await until(lambda: pipeline.draining, "the drain to start")
    session.end("unpublished")
    await until(lambda: "ingest_disconnected" in ingest.records.kinds(sid), "disconnect event")
    assert ingest.service.status()["grace"] == [] and not pipeline.closed

    pipeline.published.set()
    assert (await finishing).drained
    await until(lambda: pipeline.closed, "the pipeline to close")
    assert ingest.service.status()["grace"] == [] and ingest.control.ended == []


async def test_finishing_is_bounded_by_the_drain_time(ingest: Ingest) -> None:
    sid = ingest.records.add("key", StreamStatus.LIVE)
    session = await ingest.publish("key")
    [pipeline] = ingest.pipelines.opened
    pipeline.published.clear()  # a segment that never finishes
    async with asyncio.timeout(5):
        result = await ingest.service.finish(str(sid), 0.05)
    assert result == Finished(drained=False, waited_s=result.waited_s)
    assert 0.05 <= result.waited_s < 5
    await until(lambda: pipeline.closed, "the pipeline to close")
    assert ingest.service.status()["pipelines"] == {} and ingest.control.ended == []
    session.end("unpublished")


async def test_finishing_a_stream_whose_publisher_dropped_cancels_its_grace_period(
    ingest: Ingest,
) -> None:
    """The grace period would end it for `publisher_timeout`; its owner ends it first,
    after what the last publisher sent is published."""
    sid = ingest.records.add("key", StreamStatus.LIVE)
    session = await ingest.publish("key")
    [pipeline] = ingest.pipelines.opened
    session.end("disconnected")
    await until(lambda: ingest.service.status()["grace"] == [str(sid)], "the grace period")
    grace = ingest.service._grace[str(sid)]
    pipeline.published.clear()

    finishing = asyncio.create_task(ingest.service.finish(str(sid), 10.0))
    await until(grace.done, "the grace timer to stop")
    assert ingest.service.status()["grace"] == [] and not finishing.done()
    pipeline.published.set()
    assert (await finishing).drained
    await until(lambda: pipeline.closed, "the pipeline to close")
    assert ingest.service.status()["grace"] == [] and ingest.control.ended == []


async def test_finishing_twice_at_once_waits_for_one_drain(ingest: Ingest) -> None:
    sid = ingest.records.add("key", StreamStatus.LIVE)
    session = await ingest.publish("key")
    [pipeline] = ingest.pipelines.opened
    pipeline.published.clear()
    first = asyncio.create_task(ingest.service.finish(str(sid), 10.0))
    second = asyncio.create_task(ingest.service.finish(str(sid), 10.0))
    await until(lambda: pipeline.draining, "the drain to start")
    assert not first.done() and not second.done()
    pipeline.published.set()
    assert (await first).drained and (await second).drained
    assert pipeline.drains == 1
    session.end("unpublished")


async def test_finishing_a_stream_without_a_pipeline_is_immediate(ingest: Ingest) -> None:
    sid = ingest.records.add("key", StreamStatus.LIVE)  # started by the API, never published
    assert await ingest.service.finish(str(sid), 10.0) == Finished(drained=True, waited_s=0.0)
    assert await ingest.service.authorize("live", "key") == str(sid)  # may publish after all


async def test_a_pipelines_drain_waits_for_its_input_to_end() -> None:
    """`StreamPipeline.drain`, what `finish` waits for, first waits for the input being
    read to end (its last segment is cut only then), not only for what was cut."""
    from concurrent.futures import ThreadPoolExecutor

    from actors.media_pipeline import StreamPipeline
    from lumalive.settings import Settings
    from media.rtmp import FlvReader
    from media.segmenter import InvalidSourceError

    async def run(job: Any, data: bytes) -> Any:
        raise AssertionError("nothing is cut from an empty input")

    async def end_stream(reason: str) -> None:
        raise AssertionError("not ended")

    stream = {"id": uuid.uuid4(), "user_id": uuid.uuid4(), "quality": "1080p"}
    db: Any = None  # `drain` touches no database (`open` does, and is not called)
    with ThreadPoolExecutor(1) as executor:
        pipeline = StreamPipeline(
            stream, Settings(), db, run, executor=executor, end_stream=end_stream
        )
        reader = FlvReader(1 << 20)
        ingesting = asyncio.create_task(pipeline.ingest(reader))
        try:
            await asyncio.sleep(0)  # the segmenter waits for the publisher's first bytes
            draining = asyncio.create_task(pipeline.drain())
            for _ in range(20):
                await asyncio.sleep(0.005)
            assert not draining.done()

            reader.finish()  # the input ends (here before any media: nothing to cut)
            await until(draining.done, "the drain to finish")
        finally:
            reader.close()  # the segmenter's thread stops either way
        with pytest.raises(InvalidSourceError):
            await ingesting
