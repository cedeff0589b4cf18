"""Atomic snapshots of the memory to a data directory.

    blob = capture(state)                       # consistent copy, taken synchronously
    info = write_snapshot(data_dir, blob)       # slow part: may run in a thread
    restore(state, data_dir)                    # on start-up; False when no snapshot exists

One file, ``memory.snapshot.npz``: an uncompressed numpy zip (``allow_pickle`` off
on load, so a snapshot can never run code) holding a JSON ``manifest`` and the
arrays. Writing goes to a temporary file in the same directory, which is
fsynced, renamed over the snapshot (atomic on POSIX) and followed by an fsync of
the directory, so a crash at any point leaves either the old or the new
snapshot, never a torn one. Leftover temporary files are removed on start-up.

``memory.version-floor`` holds the highest version that may have been handed
out (reserved in blocks, written the same atomic way): after a crash the memory
resumes above it, so versions never repeat. A clean shutdown writes the
snapshot's own version there, so clean restarts keep the numbers contiguous.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atlasrl.memory.atlas import Atlas
from atlasrl.memory.state import MemoryState

SNAPSHOT_NAME = "memory.snapshot.npz"
VERSION_FLOOR_NAME = "memory.version-floor"  # text: no version at or below it was handed out after the snapshot
TMP_PREFIX = ".memory.snapshot.tmp-"
FORMAT = 1


@dataclass
class Blob:
    manifest: dict
    arrays: dict[str, np.ndarray]

    @property
    def version(self) -> int:
        return int(self.manifest["memory_version"])


@dataclass
class SnapshotInfo:
    path: Path
    version: int
    bytes: int
    seconds: float
    unix_time: float


def capture(state: MemoryState) -> Blob:
    """Copy everything a snapshot needs (fast; call without awaiting in between)."""
    arrays: dict[str, np.ndarray] = {}
    layouts, families = [], []
    for i, ((family, layout_key), atlas) in enumerate(sorted(state.layouts.items())):
        meta, arrs = atlas.to_state()
        layouts.append({"family": family, "layout_key": layout_key, "meta": meta})
        arrays.update({f"L{i}/{k}": v for k, v in arrs.items()})
    for i, (family, atlas) in enumerate(sorted(state.families.items())):
        meta, arrs = atlas.to_state()
        families.append({"family": family, "meta": meta})
        arrays.update({f"F{i}/{k}": v for k, v in arrs.items()})
    ex_meta, ex_arrays = state.bank.to_state()
    arrays.update({f"X/{k}": v for k, v in ex_arrays.items()})
    manifest = {
        "format": FORMAT, "memory_version": state.version, "episodes_ingested": state.episodes_ingested,
        "recent_ids": list(state.recent_ids), "retired_versions": state.retired_versions,
        "layouts": layouts, "families": families, "exemplars": ex_meta, "written_unix": time.time(),
    }
    return Blob(manifest, arrays)


def write_snapshot(data_dir: Path, blob: Blob) -> SnapshotInfo:
    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    final = data_dir / SNAPSHOT_NAME
    tmp = data_dir / f"{TMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
    manifest = np.frombuffer(json.dumps(blob.manifest).encode(), np.uint8)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, manifest=manifest, **blob.arrays)  # type: ignore[arg-type]  # numpy's stub lets **kwds reach allow_pickle: bool
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(data_dir)
    return SnapshotInfo(final, blob.version, final.stat().st_size, time.perf_counter() - t0, time.time())


def read_snapshot(data_dir: Path) -> Blob | None:
    path = Path(data_dir) / SNAPSHOT_NAME
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        manifest = json.loads(bytes(z["manifest"]).decode())
        arrays = {k: z[k] for k in z.files if k != "manifest"}
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: snapshot format {manifest.get('format')} is not supported (expected {FORMAT})")
    return Blob(manifest, arrays)


def restore(state: MemoryState, data_dir: Path) -> Blob | None:
    """Load the snapshot into an empty state and remove stale temporary files."""
    data_dir = Path(data_dir)
    for stale in data_dir.glob(f"{TMP_PREFIX}*") if data_dir.exists() else ():
        stale.unlink(missing_ok=True)
    blob = read_snapshot(data_dir)
    if blob is None:
        return None
    m, arrays = blob.manifest, blob.arrays

    def sub(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    for i, entry in enumerate(m["layouts"]):
        state.layouts[(entry["family"], entry["layout_key"])] = Atlas.from_state(entry["meta"], sub(f"L{i}/"))
    for i, entry in enumerate(m["families"]):
        state.families[entry["family"]] = Atlas.from_state(entry["meta"], sub(f"F{i}/"))
    state.bank.load_state(m["exemplars"], sub("X/"))
    state.version = int(m["memory_version"])
    state.episodes_ingested = int(m["episodes_ingested"])
    state.recent_ids.clear()
    state.recent_ids.update((k, None) for k in m["recent_ids"])
    state.retired_versions = {k: int(v) for k, v in m["retired_versions"].items()}
    return blob


def write_version_floor(data_dir: Path, version: int) -> None:
    """Atomically record that versions up to ``version`` may have been used (temp, fsync, rename, fsync dir)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f"{TMP_PREFIX}floor-{os.getpid()}-{time.monotonic_ns()}"
    with open(tmp, "w") as f:
        f.write(f"{int(version)}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, data_dir / VERSION_FLOOR_NAME)
    _fsync_dir(data_dir)


def read_version_floor(data_dir: Path) -> int:
    path = Path(data_dir) / VERSION_FLOOR_NAME
    if not path.exists():
        return 0
    text = path.read_text().strip()
    if not text.isdigit():
        raise ValueError(f"{path}: expected a version number, got {text[:40]!r}")
    return int(text)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
