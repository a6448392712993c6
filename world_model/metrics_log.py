"""Metrics to the console, JSON lines and CSV (and TensorBoard when asked); no wandb needed."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from world_model.atomic import WriteError, write_bytes_atomic


class MetricsLog:
    """Appends one record per call to <folder>/<name>.jsonl and <name>.csv (rewrite_log replaces them whole).

    The CSV header is fixed by the first record; later records with new keys go to the JSON lines
    only (they still reach TensorBoard).

    resume_step=N (a run continuing from its step-N checkpoint) first drops the rows with step > N:
    they were logged after that checkpoint by the run that was killed, and the resumed run logs
    those steps again, so without this the logs would hold them twice. resume_step=0 starts the
    logs over; None (the default) keeps every row and appends.
    """

    def __init__(
        self, folder: str | Path, name: str = "metrics", tensorboard: bool = False, resume_step: int | None = None
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.folder / f"{name}.jsonl"
        self.csv_path = self.folder / f"{name}.csv"
        if resume_step is not None:
            self._truncate(resume_step)
        self.jsonl = open(self.jsonl_path, "a")  # noqa: SIM115 (held open for the run; close() closes it)
        self._csv_fields: list[str] | None = None
        if self.csv_path.exists() and self.csv_path.stat().st_size > 0:
            with open(self.csv_path, newline="") as f:
                self._csv_fields = next(csv.reader(f))
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError(f"tensorboard=true needs TensorBoard: `pip install tensorboard` ({err})") from None
            # purge_step hides the events a killed run wrote after its checkpoint, as _truncate drops its rows
            purge = None if resume_step is None else resume_step + 1
            self.tb = SummaryWriter(str(self.folder / "tensorboard"), purge_step=purge)

    def _truncate(self, last_step: int) -> None:
        """Rewrite both files (atomically, so a kill leaves the old or the new one) keeping the rows
        with step <= last_step. A row that does not parse (a line cut short by a kill) is dropped."""
        if self.jsonl_path.exists():
            kept = []
            for line in self.jsonl_path.read_text().splitlines():
                try:
                    step = json.loads(line)["step"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
                if isinstance(step, int) and step <= last_step:
                    kept.append(line + "\n")
            write_bytes_atomic(self.jsonl_path, "".join(kept).encode())
        if self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                table = list(csv.reader(f))
            header, body = (table[0], table[1:]) if table else ([], [])
            kept_rows = [row for row in body if len(row) == len(header) and _step_at_most(row[0], last_step)]
            out = io.StringIO()
            if kept_rows:  # with no row left the next record sets the header, as in a fresh run
                csv.writer(out).writerows([header, *kept_rows])
            write_bytes_atomic(self.csv_path, out.getvalue().encode())

    def log(self, step: int, record: dict[str, float]) -> None:
        """Append one row; a failed write (full disk) raises WriteError naming the file."""
        row = _row(step, record)
        try:
            self.jsonl.write(json.dumps(row) + "\n")
            self.jsonl.flush()
        except OSError as err:
            raise WriteError(self.jsonl_path, err) from err
        try:
            if self._csv_fields is None:
                self._csv_fields = list(row)
                with open(self.csv_path, "w", newline="") as f:
                    csv.writer(f).writerow(self._csv_fields)
            with open(self.csv_path, "a", newline="") as f:
                csv.writer(f).writerow([row.get(k, "") for k in self._csv_fields])
        except OSError as err:
            raise WriteError(self.csv_path, err) from err
        if self.tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, float) and math.isfinite(value):
                    self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def _step_at_most(text: str, last_step: int) -> bool:
    """Whether a CSV step cell holds a whole number <= last_step (a cell cut short by a kill does not)."""
    return text.isdigit() and int(text) <= last_step


def _row(step: int, record: dict) -> dict:
    """A logged row: the step first, then the record with its numbers as floats."""
    return {"step": step, **{k: (float(v) if isinstance(v, (int, float)) else v) for k, v in record.items()}}


def rewrite_log(folder: str | Path, name: str, records: list[dict]) -> None:
    """Replace <folder>/<name>.jsonl and <name>.csv (each atomically) by `records` as steps 1, 2, ...,
    in the format MetricsLog writes: for logs rebuilt whole from their source, never appended to."""
    rows = [_row(step, record) for step, record in enumerate(records, 1)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(folder / f"{name}.jsonl", "".join(json.dumps(row) + "\n" for row in rows).encode())
    out = io.StringIO()
    if rows:  # the header is the first row's keys, as in MetricsLog
        fields = list(rows[0])
        csv.writer(out).writerows([fields, *([row.get(k, "") for k in fields] for row in rows)])
    write_bytes_atomic(folder / f"{name}.csv", out.getvalue().encode())
