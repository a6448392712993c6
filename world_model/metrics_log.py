"""Metrics to the console, JSON lines and CSV (and TensorBoard when asked); no wandb needed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


class MetricsLog:
    """Appends one record per call to <folder>/<name>.jsonl and <name>.csv.

    The CSV header is fixed by the first record; later records with new keys go to the JSON lines
    only (they still reach TensorBoard).
    """

    def __init__(self, folder: str | Path, name: str = "metrics", tensorboard: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.folder / f"{name}.jsonl", "a")
        self.csv_path = self.folder / f"{name}.csv"
        self._csv_fields: list[str] | None = None
        if self.csv_path.exists() and self.csv_path.stat().st_size > 0:
            with open(self.csv_path) as f:
                self._csv_fields = next(csv.reader(f))
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError(f"tensorboard=true needs TensorBoard: `pip install tensorboard` ({err})") from None
            self.tb = SummaryWriter(str(self.folder / "tensorboard"))

    def log(self, step: int, record: dict[str, float]) -> None:
        row = {"step": step, **{k: (float(v) if isinstance(v, (int, float)) else v) for k, v in record.items()}}
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        if self._csv_fields is None:
            self._csv_fields = list(row)
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self._csv_fields)
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self._csv_fields])
        if self.tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, float) and math.isfinite(value):
                    self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
