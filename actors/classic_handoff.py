"""Encode once, the streaming encoder's side: the classic TS segments it makes of its
LL rungs (`media.llhls.classic`) wait here until the pipeline asks for them
(`actors.encode_once.run_segment`), which then does not encode those rungs on the pool.

    encoder thread ──made / ended (call_soon_threadsafe)──▶ ClassicHandoff ◀── classic(seq)
                                                                              (pipeline)

Invariants:
- The segmenter's cut points reach the encoder as marks on the packets
  (`LiveEncoder.cut`), so a classic segment holds the source segment's frames.
- A classic segment that will never come (the encoder failed or the input ended, or
  the encoder moved past it) is answered None at once, so the pipeline falls back to
  the pool; only the wait for one still to come is bounded (`classic(timeout)`).
  One not made within that wait means the encoder stalled (its input still arrives:
  the segment was cut): the pool carries the LL rungs for the rest of the input, as
  after a failure, and no later segment waits for it.
- At most `_KEPT` segments made and not (yet) asked for are held per stream.
- Touched only on the event loop: the encoder thread hands over with
  `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from actors.ll_rungs import ll_renditions
from lumalive.settings import Settings
from media.ladder import Rendition
from media.llhls.classic import ClassicSegment
from media.segmenter import SourceSegment

__all__ = ["Classic", "ClassicHandoff"]

_KEPT = 8  # classic segments made but not (yet) asked for, per stream

Classic = dict[str, ClassicSegment]  # one source segment's classic TS, by rendition


class ClassicHandoff:
    """See the module docstring. `enabled`: `llhls_encode_once`; `put_all` stores
    objects by key (blocking), as the stream's LL-HLS objects are stored."""

    def __init__(
        self,
        stream: dict[str, Any],
        settings: Settings,
        put_all: Callable[[dict[str, bytes]], None],
    ) -> None:
        self.enabled = settings.llhls_encode_once
        self.segment_seconds = settings.segment_seconds
        self._stream = stream
        self._settings = settings
        self._put_all = put_all
        self._made: dict[int, Classic] = {}  # by source sequence
        self._asked: dict[int, asyncio.Future[Classic | None]] = {}
        self._last = -1  # the highest source sequence made (or given up)
        self._running = False  # from an input's start until its encoder's last word

    @property
    def carries(self) -> bool:
        """Whether classic segments of this input's LL rungs are (still) being made."""
        return self.enabled and self._running

    def start(self) -> None:
        """A new input's encoder session: classic segments come again."""
        self._running = True

    def carried(self, renditions: Sequence[Rendition], segment: SourceSegment) -> set[str]:
        """Which of a segment's pool renditions this encoder makes classic TS of: its
        LL rungs (same name and size), unless the pool would make them differently
        (denoise and sharpen touch every rung, HDR maps colour)."""
        ai = self._stream.get("ai_features") or {}
        if not self.carries or ai.get("denoise") or ai.get("sharpen") or ai.get("hdr"):
            return set()
        ll = ll_renditions(
            self._stream, self._settings, segment.width, segment.height, segment.fps or 30.0
        )
        sizes = {(r.name, r.width, r.height) for r in ll}
        return {r.name for r in renditions if (r.name, r.width, r.height) in sizes}

    async def store(self, puts: dict[str, bytes]) -> list[str]:
        """Store classic segments at the pool's keys; the keys, in order."""
        await asyncio.to_thread(self._put_all, puts)
        return list(puts)

    async def classic(self, sequence: int, timeout: float) -> Classic | None:
        """Source segment `sequence`'s classic TS of every LL rung, once made; None if
        it never will be (or not within `timeout` seconds: the encoder fell behind)."""
        if (made := self._made.get(sequence)) is not None:
            return made  # a segment's jobs (`actors.lowest_first`) each ask for it
        if not self.carries or sequence <= self._last:
            return None
        future = self._asked.get(sequence) or asyncio.get_running_loop().create_future()
        self._asked[sequence] = future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:  # stalled or far behind: the pool takes the rungs back
            self.ended()
            return None

    def made(self, segments: list[ClassicSegment]) -> None:
        """From the encoder thread: classic segments made. Those asked for and passed
        over (never made) are answered None."""
        by_sequence: dict[int, Classic] = {}
        for seg in segments:
            by_sequence.setdefault(seg.source_sequence, {})[seg.rendition] = seg
        for sequence, by_rung in sorted(by_sequence.items()):
            self._last = max(self._last, sequence)
            self._made[sequence] = by_rung
            self._answer([sequence], by_rung)
        skipped = [s for s in self._asked if s < self._last]  # never made
        self._answer(skipped, None)
        for sequence in sorted(self._made)[:-_KEPT]:
            del self._made[sequence]

    def ended(self) -> None:
        """From the encoder thread: no more classic segments this input (it ended or
        its encoder failed); every one asked for is answered None."""
        self._running = False
        self._last = max([self._last, *self._asked])
        self._answer(list(self._asked), None)

    def _answer(self, sequences: list[int], answer: Classic | None) -> None:
        for sequence in sequences:
            future = self._asked.pop(sequence, None)
            if future is not None and not future.done():
                future.set_result(answer)
