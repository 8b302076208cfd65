"""The retention sweep: every `retention_sweep_s`, delete what the DVR window
(`dvr_window_s`) and the VOD lifetime (`vod_retention_days`) let expire — rows first,
then their objects — and the helper that deletes storage keys.

Invariants:
- Objects are deleted only after the transaction that deleted their rows committed:
  a playlist never lists a deleted object. A failed object delete leaves an object
  that no row names (unreachable, harmless); it is logged, the sweep goes on.
- A live stream keeps at least its newest `live_window_segments` segments per
  rendition, whatever the DVR window, so its live playlist stays whole. The LL-HLS
  renditions (sql/0012 `expire_ll_media`) follow the same rules: an LL segment
  goes with its parts.
- The logic is `RetentionSweeper`, a plain class (the rows come through the
  `ExpireRows` seam); the ingest actor runs its `run` loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.store import llhls, retention
from lumalive.store.retention import Expired
from media.storage import SegmentStorage

__all__ = ["RetentionSweeper", "Swept", "postgres_expiry"]

log = logging.getLogger(__name__)

_BATCH = 500  # rows per transaction: short locks, bounded memory

# One batch of expired rows (deleted and committed when it returns).
ExpireRows = Callable[[int], Awaitable[list[Expired]]]


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep deleted."""

    segments: int = 0  # segment rows (and LL-HLS part rows) past the DVR window
    vods: int = 0  # ended streams whose media expired
    objects: int = 0  # storage objects


def postgres_expiry(settings: Settings, db: Database) -> ExpireRows:
    """The rows' side of the sweep: one committed batch per call, as no acting user."""

    async def expire(max_rows: int) -> list[Expired]:
        async with db.acting(None) as conn:
            # LL-HLS rows (sql/0012) first: their objects share the stream's prefix.
            # An LL playlist lists its own window of segments: that many stay.
            ll_keep = max(settings.live_window_segments, settings.llhls_window_segments)
            expired = []
            for rows, keep in (
                (llhls.expire_ll_media, ll_keep),
                (retention.expire_media, settings.live_window_segments),
            ):
                expired += await rows(
                    conn,
                    dvr_window_s=settings.dvr_window_s,
                    keep_last=keep,
                    vod_retention_days=settings.vod_retention_days,
                    max_rows=max_rows,
                )
            return expired

    return expire


class RetentionSweeper:
    """Deletes expired media: rows through `expire`, then their objects in `storage`."""

    def __init__(
        self,
        settings: Settings,
        expire: ExpireRows,
        storage: SegmentStorage,
        *,
        batch: int = _BATCH,
    ) -> None:
        self._settings = settings
        self._expire = expire
        self._storage = storage
        self._batch = batch

    @property
    def enabled(self) -> bool:
        """False when both the DVR window and the VOD lifetime keep everything."""
        s = self._settings
        return s.dvr_window_s > 0 or s.vod_retention_days is not None

    async def sweep(self) -> Swept:
        """Expire in batches until a batch comes back short."""
        total = Swept()
        while True:
            batch = await self._expire(self._batch)
            objects = await asyncio.to_thread(self._delete_objects, batch)
            segments = sum(e.key is not None for e in batch)
            total = Swept(
                total.segments + segments,
                total.vods + len(batch) - segments,
                total.objects + objects,
            )
            if len(batch) < self._batch:
                return total

    def _delete_objects(self, batch: list[Expired]) -> int:
        try:
            deleted = self._storage.delete([e.key for e in batch if e.key is not None])
            for e in batch:
                if e.key is None:
                    deleted += self._storage.delete_prefix(e.prefix)
        except Exception:  # noqa: BLE001 - the rows are gone: the objects are unreachable
            log.exception("retention: deleting %d expired objects failed", len(batch))
            return 0
        return deleted

    async def run(self) -> None:
        """Sweep every `retention_sweep_s` until cancelled; a failed sweep is retried
        at the next tick."""
        if not self.enabled:
            return
        while True:
            try:
                swept = await self.sweep()
                if swept.segments or swept.vods:
                    log.info("retention: %s", swept)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database may be away for a while
                log.exception("retention sweep failed")
            await asyncio.sleep(self._settings.retention_sweep_s)
