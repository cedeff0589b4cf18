"""Periodic, on-demand and on-shutdown snapshots of a MemoryState.

The copy is taken synchronously on the event loop (consistent with every applied
episode), the file is written in a worker thread, and a lock keeps one snapshot
at a time so versions on disk only grow.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from atlasrl.memory import store
from atlasrl.memory.state import MemoryState

log = logging.getLogger("atlasrl.memory")


class Snapshotter:
    def __init__(self, state: MemoryState, data_dir: Path | None, interval_s: float, on_written=None):
        self.state = state
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.interval_s = interval_s
        self.on_written = on_written          # callback(SnapshotInfo), e.g. metrics
        self.last: store.SnapshotInfo | None = None
        self.last_version = -1
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    @property
    def enabled(self) -> bool:
        return self.data_dir is not None

    def loaded(self, blob: store.Blob, unix_time: float) -> None:
        """Record a snapshot restored at start-up as the last one written."""
        assert self.data_dir is not None  # snapshots are loaded only when enabled
        self.last_version = blob.version
        self.last = store.SnapshotInfo(self.data_dir / store.SNAPSHOT_NAME, blob.version, 0, 0.0, unix_time)

    async def snapshot(self) -> store.SnapshotInfo:
        if self.data_dir is None:
            raise RuntimeError("no data directory configured")
        async with self._lock:
            blob = store.capture(self.state)
            info = await asyncio.to_thread(store.write_snapshot, self.data_dir, blob)
            self.last, self.last_version = info, info.version
        if self.on_written:
            self.on_written(info)
        return info

    async def snapshot_if_dirty(self) -> store.SnapshotInfo | None:
        if self.data_dir is None or self.state.version == self.last_version:
            return None
        return await self.snapshot()

    def start(self) -> None:
        if self.data_dir is not None and self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.snapshot_if_dirty()
            except Exception:  # keep serving; the next tick retries
                log.exception("periodic snapshot failed")
