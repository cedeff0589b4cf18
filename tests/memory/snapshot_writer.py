"""Child process for the crash test: restore, then apply an episode and snapshot, forever.

Prints "v <version>" after each completed snapshot. Frames are large random
images so each snapshot takes long enough for a SIGKILL to land mid-write.
"""
import sys
from pathlib import Path

import numpy as np

from atlasrl.memory import store
from atlasrl.memory.config import ExemplarConfig, MemoryConfig
from atlasrl.memory.episode import Episode
from atlasrl.memory.state import MemoryState


def main(data_dir: str) -> None:
    cfg = MemoryConfig(exemplars=ExemplarConfig(capacity_per_outcome=64, stored_side=512))
    state = MemoryState(cfg)
    store.restore(state, Path(data_dir))
    rng = np.random.default_rng(state.version)
    while True:
        n = state.version
        frames = [(t, rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)) for t in range(3)]
        ep = Episode(f"e{n}", "toy", "4x4", 4, 4, np.array([(0, 0), (0, 1), (1, 1)]), n % 2 == 0,
                     "success" if n % 2 == 0 else "hole", (3, 3), frames=frames)
        state.apply(ep)
        store.write_snapshot(Path(data_dir), store.capture(state))
        print(f"v {state.version}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
