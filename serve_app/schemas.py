"""Request bodies. Field names follow the spec's client (camelCase config).

Every string a client sends must be storable as Postgres text: no NUL characters
and no unpaired surrogates (JSON can spell both, `\u0000` and `\ud800`). Bodies
are checked by `_Strict`, query parameters by `Storable`; either way it is a 422
here, not a database error later.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeVar
from uuid import UUID

import emoji
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

__all__ = [
    "StreamConfig",
    "ChatIn",
    "ReactionIn",
    "InviteIn",
    "ReportIn",
    "is_reaction",
    "Storable",
    "storable",
]

T = TypeVar("T")

Quality = Literal["1080p", "4K", "8K", "20K"]
Privacy = Literal["public", "friends", "private"]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]

# A custom reaction's name: `:party_parrot:`.
_CUSTOM_REACTION = re.compile(r"^:[a-z0-9_+\-]{1,32}:$")


def is_reaction(value: str) -> bool:
    """Whether `value` is one reaction: exactly one emoji (the `emoji` package's
    Unicode emoji data: ZWJ sequences, skin tones, flags and keycaps included) or a
    custom `:name:`. "🚀🚀", "ab" and markup are not."""
    return emoji.is_emoji(value) or _CUSTOM_REACTION.fullmatch(value) is not None


def storable(value: T) -> T:
    """`value` unchanged if every string in it (list items, dict keys and values too)
    can be stored as Postgres text; ValueError otherwise."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL (\\u0000) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no unpaired surrogates)") from None
    elif isinstance(value, list | tuple):
        for item in value:
            storable(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    return value


# For query parameters: `Annotated[str | None, Query(...), Storable]`.
Storable = AfterValidator(storable)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _storable(cls, v: T) -> T:
        return storable(v)


class StreamConfig(_Strict):
    """The spec's streamConfig. Bitrate defaults to the tier's and may only be lowered."""

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
    description: Annotated[str, StringConstraints(max_length=5000)] = ""
    quality: Quality = "1080p"
    bitrate: int | None = Field(default=None, gt=0)
    enableAI: bool = False
    enableHDR: bool = False
    enableRayTracing: bool = Field(
        default=False,
        description="stored and returned only (`ai_features.ray_tracing`): a hint for the"
        " broadcaster's own client renderer; the server does no ray tracing",
    )
    privacy: Privacy = "public"
    category: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)
    ] = "general"
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    isNSFW: bool = False
    aiFeatures: dict[str, bool] = Field(
        default_factory=dict, max_length=16, description="extra AI switches, e.g. denoise, sharpen"
    )
    # sql/0012: what a viewer's delay costs (README, docs/media.md).
    latencyMode: Literal["low", "normal"] = Field(
        default="low",
        description="low: LL-HLS (CMAF parts, ~2-4 s behind live) for the rungs up to"
        " LUMALIVE_LLHLS_MAX_HEIGHT, from one extra real-time encoder per stream, besides"
        " the classic HLS ladder; normal: classic HLS only (segments, ~10+ s behind), and"
        " no WebRTC (WHEP) playback of an HEVC/AV1 source (its WebRTC video is the lowest"
        " LL rung)",
    )

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))


class ChatIn(_Strict):
    message: str = Field(description="1-500 characters after trimming")

    @field_validator("message")
    @classmethod
    def _trimmed_length(cls, v: str) -> str:
        v = v.strip()
        if not 1 <= len(v) <= 500:
            raise ValueError("message must be 1-500 characters after trimming")
        return v


class ReactionIn(_Strict):
    reaction: str = Field(
        max_length=50,
        description="one emoji (ZWJ sequences, skin tones, flags, keycaps included),"
        " or a custom reaction `:name:` of 1-32 lowercase letters, digits, _ + -",
        examples=["🔥", "🚀", "👍🏽", ":party_parrot:"],
    )

    @field_validator("reaction")
    @classmethod
    def _one_reaction(cls, v: str) -> str:
        if is_reaction(v):
            return v
        raise ValueError(
            "reaction must be exactly one emoji, or a custom :name: of 1-32 lowercase"
            " letters, digits, _ + -"
        )


class InviteIn(_Strict):
    userId: UUID


class ReportIn(_Strict):
    reason: Literal["spam", "harassment", "hate", "nudity", "violence", "copyright", "other"]
    details: Annotated[str, StringConstraints(max_length=2000)] = ""
