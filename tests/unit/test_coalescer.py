"""The fan-out's coalescing rule (`serve_app.fanout.Coalescer`) and its audiences
(`Broadcast`, `Subscription.offer`), on plain rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from lumalive.store.activity import Audience, EventRow
from serve_app.coalescer import Broadcast, Coalescer, Message
from serve_app.subscription import Subscription

SID = uuid.uuid4()
OWNER = Audience.OWNER


def row(
    seq: int,
    event_type: str,
    *,
    viewer: dict[str, Any] | None = None,
    anonymous: dict[str, Any] | None = None,
    **data: Any,
) -> EventRow:
    """An event as the owner reads it; the others see the same unless told otherwise."""
    return EventRow(
        seq,
        event_type,
        data,
        datetime.now(UTC),
        data if viewer is None else viewer,
        data if anonymous is None else anonymous,
    )


def owner_only(seq: int, event_type: str, **data: Any) -> EventRow:
    """An event that viewers and anonymous callers do not see (a report, say)."""
    return EventRow(seq, event_type, data, datetime.now(UTC), None, None)


def feed(c: Coalescer, *rows: EventRow) -> list[Message]:
    """What the owner gets."""
    return [m for r in rows for b in c.feed(r) if (m := b.to(OWNER)) is not None]


def owners(out: list[Broadcast]) -> list[Message]:
    return [m for b in out if (m := b.to(OWNER)) is not None]


def test_reactions_go_out_one_by_one_while_the_stream_is_quiet() -> None:
    c = Coalescer(SID, singles_per_tick=2)
    uid = str(uuid.uuid4())
    out = feed(
        c,
        row(1, "reaction", reaction="🚀", user_id=uid, anonymous={"reaction": "🚀"}),
        row(2, "reaction", reaction="🔥", user_id=uid, anonymous={"reaction": "🔥"}),
    )
    assert [(m.type, m.id, m.data["reaction"]) for m in out] == [
        ("reaction", 1, "🚀"),
        ("reaction", 2, "🔥"),
    ]
    assert out[0].data == {"reaction": "🚀", "userId": uid, "username": None}
    assert owners(c.tick()) == []  # nothing was held back


def test_reactions_past_the_tick_s_singles_are_summed_into_one_batch() -> None:
    c = Coalescer(SID, singles_per_tick=1)
    out = feed(
        c,
        row(1, "reaction", reaction="fire"),
        row(2, "reaction", reaction="heart"),
        row(3, "reaction", reaction=":party_parrot:"),
        row(4, "reaction", reaction="heart"),
    )
    assert [(m.type, m.id) for m in out] == [("reaction", 1)]  # the rest wait for the tick
    [batch] = owners(c.tick())
    assert batch.type == "reaction_batch"
    assert batch.data == {
        "counts": {"heart": 2, ":party_parrot:": 1},  # reactions as they are, not renamed
        "total": 3,
        "firstSeq": 2,
        "lastSeq": 4,
    }
    assert (batch.id, batch.first_seq) == (4, 2)  # its id is a valid resume point
    assert c.tick() == []  # a quiet tick sends nothing
    [single] = feed(c, row(5, "reaction", reaction="fire"))  # a new tick: one by one again
    assert single.type == "reaction"


def test_other_events_flush_the_pending_batch_first_so_seq_order_holds() -> None:
    c = Coalescer(SID, singles_per_tick=1)
    out = feed(
        c,
        row(1, "reaction", reaction="fire"),
        row(2, "reaction", reaction="fire"),
        row(3, "chat_message", message="hi"),
        row(4, "reaction", reaction="clap"),
        row(5, "stream_ended", reason="ended_by_owner"),
    )
    assert [(m.type, m.id) for m in out] == [
        ("reaction", 1),
        ("reaction_batch", 2),
        ("chat_message", 3),
        ("reaction_batch", 4),
        ("stream_ended", 5),
    ]
    ids = [m.id for m in out]
    assert ids == sorted(ids)


def test_a_message_is_encoded_once_for_each_transport() -> None:
    uid = str(uuid.uuid4())
    event = row(7, "chat_message", message="héllo", message_id="m1", user_id=uid)
    [msg] = feed(Coalescer(SID), event._replace(username="ana"))
    body = json.loads(msg.ws)
    assert set(body) == {"id", "type", "streamId", "createdAt", "data"}  # the contract
    assert body["id"] == 7 and body["type"] == "chat_message" and body["streamId"] == str(SID)
    assert datetime.fromisoformat(body["createdAt"]) == event.created_at
    assert body["data"] == {"message": "héllo", "messageId": "m1", "userId": uid, "username": "ana"}
    assert msg.sse == f"id: 7\nevent: chat_message\ndata: {msg.ws}\n\n".encode()


def test_viewer_count_at_most_once_per_tick_and_only_on_change() -> None:
    c = Coalescer(SID, viewers=2)  # the count on subscribe was already sent
    assert c.tick() == []
    out = feed(c, row(1, "viewer_joined"), row(2, "viewer_joined"), row(3, "viewer_left"))
    assert [m.type for m in out] == ["viewer_joined", "viewer_joined", "viewer_left"]
    counts = [m for m in owners(c.tick()) if m.type == "viewer_count"]
    assert [m.data for m in counts] == [{"viewerCount": 3}]
    assert counts[0].id is None  # state, not an event: never a resume point
    assert c.tick() == []  # unchanged: not sent again
    feed(c, row(4, "viewer_joined"), row(5, "viewer_left"))
    assert c.tick() == []  # back where it was: no message


def test_stream_ended_brings_the_count_to_zero() -> None:
    c = Coalescer(SID, viewers=5)
    feed(c, row(1, "reaction", reaction="fire"), row(2, "stream_ended"))
    assert c.viewers == 0
    assert [(m.type, m.data) for m in owners(c.tick())] == [("viewer_count", {"viewerCount": 0})]


def test_viewer_left_never_counts_below_zero() -> None:
    c = Coalescer(SID)
    feed(c, row(1, "viewer_left"))
    assert c.viewers == 0 and c.tick() == []


# --- audiences ----------------------------------------------------------------------


def test_each_audience_gets_its_own_view_and_equal_views_share_one_encoding() -> None:
    uid = str(uuid.uuid4())
    [joined] = Coalescer(SID).feed(row(1, "viewer_joined", user_id=uid, anonymous={}))
    owner, viewer, anon = (joined.to(a) for a in Audience)
    assert owner is viewer  # same data: encoded once, the same bytes for both
    assert owner is not None and anon is not None
    assert json.loads(owner.ws)["data"] == {"userId": uid, "username": None}
    assert json.loads(anon.ws)["data"] == {} and uid not in anon.sse.decode()
    assert anon.id == owner.id == joined.id == 1  # one resume point for everyone

    [chat] = Coalescer(SID).feed(row(2, "chat_message", message="hi"))
    assert chat.to(OWNER) is chat.to(Audience.VIEWER) is chat.to(Audience.ANONYMOUS)


def test_an_event_hidden_from_a_class_is_not_sent_to_it() -> None:
    c = Coalescer(SID, singles_per_tick=0)
    out = c.feed(row(1, "reaction", reaction="fire"))
    out += c.feed(owner_only(2, "report", reason="spam"))
    # the pending reactions still go out first, to everyone
    assert [b.type for b in out] == ["reaction_batch", "report"]
    assert out[0].to(Audience.ANONYMOUS) is out[0].to(OWNER)
    assert out[1].to(OWNER) is not None
    assert out[1].to(Audience.VIEWER) is None and out[1].to(Audience.ANONYMOUS) is None


class _Hub:
    def replay(self, sub: Subscription, after: int, until: int) -> AsyncIterator[list[Message]]:
        raise AssertionError("no replay here")

    def unsubscribe(self, sub: Subscription) -> None:
        pass


async def test_a_subscription_takes_its_audience_s_message() -> None:
    owner_id, viewer_id, uid = uuid.uuid4(), uuid.uuid4(), str(uuid.uuid4())
    stream = {"id": SID, "user_id": owner_id, "status": "live"}
    subs = {
        who: Subscription(_Hub(), stream, actor, "sse", 100)
        for who, actor in (("owner", owner_id), ("viewer", viewer_id), ("anonymous", None))
    }
    assert [s.audience for s in subs.values()] == list(Audience)
    c = Coalescer(SID)
    out = c.feed(
        row(5, "viewer_left", user_id=uid, watch_duration=7, viewer={"user_id": uid}, anonymous={})
    )
    out += c.feed(owner_only(6, "report", reason="spam"))
    for b in out:
        for sub in subs.values():
            sub.offer(b)
    got = {who: [(m.id, m.data) for m in await anext(sub.batches())] for who, sub in subs.items()}
    assert got == {
        "owner": [
            (5, {"userId": uid, "username": None, "watchDuration": 7}),
            (6, {"reason": "spam"}),
        ],
        "viewer": [(5, {"userId": uid, "username": None})],
        "anonymous": [(5, {})],
    }
    assert (subs["owner"].cursor, subs["viewer"].cursor) == (6, 5)
