"""The event contract's edge conversion (`serve_app.events`) and the reaction rule
(`serve_app.schemas.is_reaction`), without a server."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from serve_app.events import camel, encode, envelope, event_data
from serve_app.schemas import is_reaction


@pytest.mark.parametrize(
    ("stored", "client"),
    [
        ("user_id", "userId"),
        ("watch_duration", "watchDuration"),
        ("source_sequence", "sourceSequence"),
        ("message", "message"),
        ("viewerCount", "viewerCount"),
    ],
)
def test_keys_become_camel_case(stored: str, client: str) -> None:
    assert camel(stored) == client


def test_username_goes_only_where_the_user_id_is() -> None:
    uid = str(uuid.uuid4())
    assert event_data({"user_id": uid, "message": "hi"}, "ana") == {
        "userId": uid,
        "message": "hi",
        "username": "ana",
    }
    # redacted for this reader: no id, so no name either
    assert event_data({"reaction": "🔥"}, "ana") == {"reaction": "🔥"}


def test_nested_values_are_not_renamed() -> None:
    data = event_data({"counts": {":party_parrot:": 2, "🔥": 1}, "first_seq": 3})
    assert data == {"counts": {":party_parrot:": 2, "🔥": 1}, "firstSeq": 3}


def test_the_envelope_is_the_contract() -> None:
    sid, at = uuid.uuid4(), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = json.loads(encode(envelope(9, "reaction", sid, at, {"reaction": "🚀"})))
    assert body == {
        "id": 9,
        "type": "reaction",
        "streamId": str(sid),
        "createdAt": "2026-01-02T03:04:05+00:00",
        "data": {"reaction": "🚀"},
    }
    assert "🚀" in encode(body)  # not escaped


@pytest.mark.parametrize(
    "reaction",
    [
        "🚀",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # ZWJ family
        "\U0001f44d\U0001f3fd",  # skin tone
        "🇯🇵",  # flag
        "#️⃣",  # keycap
        "❤️",
        ":party_parrot:",
        ":+1:",
    ],
)
def test_one_emoji_or_a_custom_name_is_a_reaction(reaction: str) -> None:
    assert is_reaction(reaction)


@pytest.mark.parametrize(
    "reaction", ["ab", "🚀🚀", "<script>", "1", "#", "", " 🚀", "::", ":" + "x" * 33 + ":"]
)
def test_anything_else_is_not(reaction: str) -> None:
    assert not is_reaction(reaction)
