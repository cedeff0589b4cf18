"""The run directory: resolved config, one log per role, checkpoints, coordinator state, plots, summary."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from atlasrl.config import RunConfig, dump_config


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def create(cls, cfg: RunConfig) -> RunDir:
        root = cfg.run.run_dir or cfg.run.runs_dir / f"{cfg.run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        rd = cls(Path(root).resolve())
        for d in (rd.logs, rd.checkpoints, rd.coordinator_state, rd.memory_data, rd.plots, rd.eval):
            d.mkdir(parents=True, exist_ok=True)
        (rd.root / "config.yaml").write_text(dump_config(cfg))
        return rd

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def coordinator_state(self) -> Path:
        return self.root / "coordinator"

    @property
    def memory_data(self) -> Path:
        return self.root / "memory"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    def write_json(self, name: str, data) -> Path:
        path = self.root / name
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        return path

    def append_jsonl(self, name: str, record: dict) -> None:
        with open(self.root / name, "a") as f:
            f.write(json.dumps(record) + "\n")
