"""The retention sweep's storage side, on a local directory (`file://`) and a real
S3-API server (moto's): what the rows say expired is deleted, in batches, and nothing
else; the playlist of what remains starts at the right media sequence. The rows' side
(`expire_media` in Postgres) is tested in tests/system/test_retention.py; here it is
the sweeper's seam, a list of expired rows handed out a batch at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from actors.media_worker import segment_key
from actors.retention import RetentionSweeper, Swept
from lumalive.settings import Settings
from lumalive.store.retention import Expired, stream_prefix
from media.object_storage import open_storage
from media.playlist import SegmentRecord, media_playlist
from media.storage import SegmentStorage
from tests.utils.s3 import s3_environment

RENDITIONS = ("480p", "360p")


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with s3_environment() as env:
        yield env


_prefixes = iter(range(10**6))


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> SegmentStorage:
    if request.param == "file":
        return open_storage((tmp_path / "media").as_uri())
    env = request.getfixturevalue("s3")
    return open_storage(f"s3://{env['AWS_S3_BUCKET']}/r{next(_prefixes)}")


def _store(storage: SegmentStorage, stream: UUID, count: int) -> list[str]:
    keys = [segment_key(str(stream), r, i) for i in range(count) for r in RENDITIONS]
    for key in keys:
        storage.put(key, key.encode())
    return keys


class _Rows:
    """The sweeper's seam: expired rows, at most `max_rows` a call, each handed out once."""

    def __init__(self, expired: list[Expired]) -> None:
        self.left = list(expired)
        self.calls = 0

    async def __call__(self, max_rows: int) -> list[Expired]:
        self.calls += 1
        batch, self.left = self.left[:max_rows], self.left[max_rows:]
        return batch


async def test_a_sweep_deletes_what_expired_and_nothing_else(storage: SegmentStorage) -> None:
    live, other, ended = uuid4(), uuid4(), uuid4()
    live_keys = _store(storage, live, 6)
    other_keys = _store(storage, other, 3)
    _store(storage, ended, 2)
    expired = [Expired(live, k) for k in live_keys[:8]]  # sequences 0-3, both renditions
    rows = _Rows([*expired, Expired(ended, None)])
    settings = Settings(dvr_window_s=60, vod_retention_days=1)

    swept = await RetentionSweeper(settings, rows, storage, batch=3).sweep()

    assert swept == Swept(segments=8, vods=1, objects=8 + 4)
    assert rows.calls == 4 and not rows.left  # 3 + 3 + 3 (full), then 0 (short): done
    assert [k for k in live_keys if storage.exists(k)] == live_keys[8:]
    assert all(storage.exists(k) for k in other_keys)
    assert storage.delete_prefix(stream_prefix(ended)) == 0  # nothing of it was left


async def test_the_playlist_of_what_remains_starts_at_its_first_sequence(
    storage: SegmentStorage,
) -> None:
    stream = uuid4()
    keys = _store(storage, stream, 6)
    await RetentionSweeper(
        Settings(dvr_window_s=60), _Rows([Expired(stream, k) for k in keys[:8]]), storage
    ).sweep()
    # What a playlist would list: the 360p segments whose objects are still there.
    remaining = [i for i in range(6) if storage.exists(segment_key(str(stream), "360p", i))]
    assert remaining == [4, 5]
    text = media_playlist(
        [SegmentRecord(i, f"{i:08d}.ts", 2.0) for i in remaining], target_duration=2
    )
    assert "#EXT-X-MEDIA-SEQUENCE:4" in text
    assert [line for line in text.splitlines() if line.endswith(".ts")] == [
        "00000004.ts",
        "00000005.ts",
    ]


def test_delete_keys_deletes_exact_keys_and_ignores_missing_ones(storage: SegmentStorage) -> None:
    stream = str(uuid4())
    one, ten = segment_key(stream, "360p", 1), segment_key(stream, "360p", 10)
    storage.put(one, b"1")
    storage.put(ten, b"10")
    missing = segment_key(stream, "360p", 2)
    assert storage.delete([one, missing]) == 2
    assert not storage.exists(one) and storage.exists(ten)


async def test_with_nothing_to_expire_the_sweeper_does_not_run(tmp_path: Path) -> None:
    rows = _Rows([])
    sweeper = RetentionSweeper(Settings(), rows, open_storage(tmp_path.as_uri()))
    assert not sweeper.enabled
    await sweeper.run()  # returns at once: nothing can expire
    assert rows.calls == 0


def test_retention_settings_default_to_keeping_everything() -> None:
    s = Settings()
    assert s.dvr_window_s == 0 and s.vod_retention_days is None and s.retention_sweep_s == 60
    with pytest.raises(ValueError):
        Settings(vod_retention_days=0)
