"""The fan-out's coalescing rule (`serve_app.fanout.Coalescer`), on plain rows."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from lumalive.store.activity import EventRow
from serve_app.coalescer import Coalescer, Message

SID = uuid.uuid4()


def row(seq: int, event_type: str, **data: Any) -> EventRow:
    return EventRow(seq, event_type, data, datetime.now(UTC))


def feed(c: Coalescer, *rows: EventRow) -> list[Message]:
    return [m for r in rows for m in c.feed(r)]


def test_reactions_are_summed_into_one_batch_per_tick() -> None:
    c = Coalescer(SID)
    out = feed(
        c,
        row(1, "reaction", reaction="fire"),
        row(2, "reaction", reaction="heart"),
        row(3, "reaction", reaction="fire"),
    )
    assert out == []  # nothing goes out one by one
    [batch] = c.tick()
    assert batch.type == "reaction_batch"
    assert batch.data == {
        "reactions": {"fire": 2, "heart": 1},
        "total": 3,
        "first_seq": 1,
        "last_seq": 3,
    }
    assert (batch.id, batch.first_seq) == (3, 1)  # its id is a valid resume point
    assert c.tick() == []  # a quiet tick sends nothing


def test_other_events_flush_the_pending_batch_first_so_seq_order_holds() -> None:
    c = Coalescer(SID)
    out = feed(
        c,
        row(1, "reaction", reaction="fire"),
        row(2, "reaction", reaction="fire"),
        row(3, "chat_message", message="hi"),
        row(4, "reaction", reaction="clap"),
        row(5, "stream_ended", reason="ended_by_owner"),
    )
    assert [(m.type, m.id) for m in out] == [
        ("reaction_batch", 2),
        ("chat_message", 3),
        ("reaction_batch", 4),
        ("stream_ended", 5),
    ]
    ids = [m.id for m in out]
    assert ids == sorted(ids)


def test_a_message_is_encoded_once_for_each_transport() -> None:
    [msg] = feed(Coalescer(SID), row(7, "chat_message", message="héllo"))
    body = json.loads(msg.ws)
    assert body["id"] == 7 and body["type"] == "chat_message"
    assert body["stream_id"] == str(SID) and body["data"] == {"message": "héllo"}
    assert msg.sse == f"id: 7\nevent: chat_message\ndata: {msg.ws}\n\n".encode()


def test_viewer_count_at_most_once_per_tick_and_only_on_change() -> None:
    c = Coalescer(SID, viewers=2)  # the count on subscribe was already sent
    assert c.tick() == []
    out = feed(c, row(1, "viewer_joined"), row(2, "viewer_joined"), row(3, "viewer_left"))
    assert [m.type for m in out] == ["viewer_joined", "viewer_joined", "viewer_left"]
    counts = [m for m in c.tick() if m.type == "viewer_count"]
    assert [m.data for m in counts] == [{"viewers": 3}]
    assert counts[0].id is None  # state, not an event: never a resume point
    assert c.tick() == []  # unchanged: not sent again
    feed(c, row(4, "viewer_joined"), row(5, "viewer_left"))
    assert c.tick() == []  # back where it was: no message


def test_stream_ended_brings_the_count_to_zero() -> None:
    c = Coalescer(SID, viewers=5)
    feed(c, row(1, "reaction", reaction="fire"), row(2, "stream_ended"))
    assert c.viewers == 0
    assert [(m.type, m.data) for m in c.tick()] == [("viewer_count", {"viewers": 0})]


def test_viewer_left_never_counts_below_zero() -> None:
    c = Coalescer(SID)
    feed(c, row(1, "viewer_left"))
    assert c.viewers == 0 and c.tick() == []
