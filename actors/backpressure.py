"""Backpressure: which rungs a stream sheds when its segments arrive faster than the
worker pool finishes them, and when it takes them back. Pure logic, no Ray, no clock
of its own (`observe` takes `now`), so it is tested with a fake clock.

Degradation order (`shedding_steps`), one level per step:
  level 1       every AI rung (`needs_upscale`: super-resolution is the dearest work)
  level 2, 3..  the top remaining rung, then the next, ... (enableHDR's HEVC twins
                before any SDR rung: the SDR ladder is what every player plays)
  never         the lowest rung (the lowest SDR one): every source segment is
                published in it.
A ladder without AI rungs starts at the top rung. Level 0 is the full ladder.

Signals (a `Backlog` read from the pool as each segment is cut, before it is handed
over): how many jobs wait for a worker (not running yet), whether every worker is busy
(`full`: the segment being cut will wait too), and how long the oldest waiting job has
waited, in segment durations. A pool that keeps up has no job waiting as the next
segment is cut.

Invariants:
- Degrade (one level up) when `queued >= degrade_waiting` (the jobs waiting, plus the
  segment being cut if no worker is free for it: counting it reacts a segment sooner
  than counting only what was already waiting) or the oldest has waited `degrade_age`
  segment durations, and something waits; the first step is taken at once, each
  further one only after `escalate_s` at the level (its jobs need time to show their
  effect).
- Restore (one level down) only after the pool has had nothing waiting for `restore_s`
  without a break, and at least `restore_s` after the last change: the gap between the
  two thresholds, and the hold time, is the hysteresis that keeps it from flapping. A
  restore that is followed by a degrade within `restore_s` doubles the next hold
  (up to `max_restore_s`): a pool that barely carries a rung stops retrying it often.
- The level is within 0..len(steps); with no steps (one rung) it is always 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from media.ladder import Rendition
from media.rendition import lowest_rung

__all__ = ["Backlog", "Thresholds", "Change", "BackpressureController", "shedding_steps"]


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the pool has not started: segments waiting for a worker, and when the oldest
    of them was cut (`time.time()`; None: nothing waits)."""

    waiting: int = 0
    oldest_submitted_at: float | None = None
    full: bool = False  # every worker busy, none to start: the next job waits

    @property
    def queued(self) -> int:
        """What the next segment would wait behind: the waiting jobs, plus itself if
        no worker is free for it."""
        return self.waiting + int(self.full)

    def oldest_age(self, now: float) -> float:
        return 0.0 if self.oldest_submitted_at is None else max(0.0, now - self.oldest_submitted_at)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When to shed and when to restore; ages in segment durations, holds in seconds
    as multiples of a segment duration (see `BackpressureController`)."""

    degrade_waiting: int = 2  # segments waiting for a worker
    degrade_age: float = 1.0  # ... or the oldest waited this many segment durations
    escalate_segments: float = 2.0  # at a level before the next step
    restore_segments: float = 4.0  # nothing waiting this long before a step back
    max_restore_segments: float = 32.0  # the doubled hold's cap


@dataclass(frozen=True, slots=True)
class Change:
    """A level change, as the `quality_degraded` event records it (level 0: restored)."""

    level: int
    previous: int
    shed: tuple[str, ...]  # rendition names not encoded at this level
    waiting: int
    oldest_wait_s: float

    @property
    def action(self) -> str:
        return "degraded" if self.level > self.previous else "restored"

    def event(self, source_sequence: int, max_level: int) -> dict[str, object]:
        return {
            "action": self.action,
            "level": self.level,
            "previous_level": self.previous,
            "max_level": max_level,
            "shed": list(self.shed),
            "source_sequence": source_sequence,
            "waiting": self.waiting,
            "oldest_wait_s": round(self.oldest_wait_s, 3),
        }


def shedding_steps(ladder: Sequence[Rendition]) -> tuple[tuple[str, ...], ...]:
    """The ladder's shedding order (ladder order is highest first): all AI rungs in one
    step, then enableHDR's HEVC twins and then the SDR rungs, one at a time from the
    top; never the lowest rung (`media.rendition.lowest_rung`)."""
    lowest = lowest_rung(ladder)
    if lowest is None:
        return ()
    # Tiles (20K, after the ladder) are the top tier's AI work: they go with the AI rungs.
    ai = tuple(r.name for r in ladder if r is not lowest and _is_ai(r))
    rungs = [r for r in ladder if r.tile is None and r is not lowest and not _is_ai(r)]
    rungs.sort(key=lambda r: r.video_range == "SDR")  # stable: twins first, each from the top
    return ((ai,) if ai else ()) + tuple((r.name,) for r in rungs)


def _is_ai(r: Rendition) -> bool:
    return r.needs_upscale or getattr(r, "tile", None) is not None


@dataclass
class BackpressureController:
    """One stream's degradation level, fed a `Backlog` once per segment."""

    steps: tuple[tuple[str, ...], ...]
    segment_s: float
    thresholds: Thresholds = field(default_factory=Thresholds)
    level: int = 0
    _changed_at: float | None = None
    _calm_since: float | None = None
    _restored_at: float | None = None
    _restore_hold: float = 0.0

    def __post_init__(self) -> None:
        self._restore_hold = self.thresholds.restore_segments * self.segment_s

    @property
    def max_level(self) -> int:
        return len(self.steps)

    @property
    def shed(self) -> tuple[str, ...]:
        """The renditions not encoded at the current level."""
        return tuple(name for step in self.steps[: self.level] for name in step)

    def observe(self, now: float, backlog: Backlog) -> Change | None:
        """Take one reading; the change it caused, if any (`self.level` is the new level)."""
        age = backlog.oldest_age(now)
        t = self.thresholds
        overloaded = (
            backlog.queued >= t.degrade_waiting or age >= t.degrade_age * self.segment_s
        ) and backlog.waiting > 0
        if overloaded:
            self._calm_since = None
            return self._degrade(now, backlog, age)
        if backlog.waiting > 0:
            self._calm_since = None  # not calm: the hold starts again
            return None
        if self._calm_since is None:
            self._calm_since = now
        return self._restore(now, backlog, age)

    def _degrade(self, now: float, backlog: Backlog, age: float) -> Change | None:
        if self.level >= self.max_level:
            return None
        escalate = self.thresholds.escalate_segments * self.segment_s
        if self.level > 0 and self._changed_at is not None and now - self._changed_at < escalate:
            return None
        if self._restored_at is not None and now - self._restored_at < self._restore_hold:
            max_hold = self.thresholds.max_restore_segments * self.segment_s
            self._restore_hold = min(2 * self._restore_hold, max_hold)  # it flapped
        return self._set(self.level + 1, now, backlog, age)

    def _restore(self, now: float, backlog: Backlog, age: float) -> Change | None:
        if self.level == 0 or self._calm_since is None:
            return None
        hold = self._restore_hold
        if now - self._calm_since < hold:
            return None
        if self._changed_at is not None and now - self._changed_at < hold:
            return None
        self._restored_at = now
        self._calm_since = now  # one step per hold
        return self._set(self.level - 1, now, backlog, age)

    def _set(self, level: int, now: float, backlog: Backlog, age: float) -> Change:
        previous, self.level, self._changed_at = self.level, level, now
        return Change(level, previous, self.shed, backlog.waiting, age)
