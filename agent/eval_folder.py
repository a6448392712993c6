"""The records of one evaluation in its output folder, kept so that a killed evaluation resumes.

    <out>/evaluation.json   what was evaluated (checkpoint, env, eval, planner, configurator, ...),
                            written atomically before the first episode runs
    <out>/records.jsonl     one line per episode, appended a chunk at a time (the `eval.batch`
                            episodes run together), each chunk flushed and fsynced once it ends

A kill leaves every finished chunk on disk and at most a torn tail: a last line without its
newline, or the first lines of a chunk whose append was cut short. Reopening the folder drops that
tail (saying so), and the evaluation runs only the chunks that are not all recorded. A folder made
by another evaluation is refused, so records of two evaluations never mix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from world_model.atomic import WriteError, fsync_dir, write_bytes_atomic

IDENTITY = "evaluation.json"
RECORDS = "records.jsonl"


class EvaluationFolderError(ValueError):
    """An output folder holds records this evaluation cannot continue."""


def claim(out: Path, identity: dict) -> None:
    """Write out/evaluation.json, or check that the one there describes this same evaluation."""
    identity = json.loads(json.dumps(identity))  # tuples -> lists, as they read back
    path = out / IDENTITY
    if path.exists():
        found = json.loads(path.read_text())
        differ = sorted(k for k in identity.keys() | found.keys() if identity.get(k) != found.get(k))
        if differ:
            raise EvaluationFolderError(
                f"{out} holds records of another evaluation ({', '.join(differ)} differ from {path}); "
                "pass a new output folder (hydra.run.dir=...) or delete this one to start over"
            )
        return
    if (out / RECORDS).exists():
        raise EvaluationFolderError(
            f"{out / RECORDS} has no {IDENTITY} beside it (an older version or another tool wrote it), so it "
            "cannot be continued; pass a new output folder (hydra.run.dir=...)"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps(identity, indent=1).encode())


class RecordStore:
    """The finished chunks of out/records.jsonl, and appends of new ones.

    Episode i of a goal kind belongs to the chunk that starts at i - i % batch; a chunk counts as
    done when all its episodes (batch, fewer in the last chunk of `episodes`) are recorded.
    Records carry "goal_kind", "policy" and "episode" (the index among the goal kind's episodes).
    """

    def __init__(self, out: Path, episodes: int, batch: int):
        self.path, self.episodes, self.batch = out / RECORDS, episodes, batch
        self.done: dict[tuple[str, str, int], list[dict]] = {}  # (goal kind, policy, first episode) -> records
        if self.path.exists():
            self._load()
        # unbuffered: a failed append leaves nothing queued that a later flush could add
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as err:
            raise WriteError(self.path, err) from err
        fsync_dir(out)  # the file's creation is durable before any chunk is reported done

    def _chunk_size(self, first: int) -> int:
        return min(self.batch, self.episodes - first)

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        torn = data[end:]  # what follows the last newline: a line a kill cut short
        chunks: dict[tuple[str, str, int], list[tuple[bytes, dict]]] = {}
        seen = set()
        for number, line in enumerate(data[:end].splitlines(keepends=True), 1):
            try:
                record = json.loads(line)
                key = (record["goal_kind"], record["policy"], record["episode"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
                raise EvaluationFolderError(
                    f"line {number} of {self.path} is not an episode record ({e}); the file was altered, "
                    "pass a new output folder (hydra.run.dir=...)"
                ) from None
            if key in seen or not (isinstance(key[2], int) and 0 <= key[2] < self.episodes):
                raise EvaluationFolderError(
                    f"line {number} of {self.path} repeats or lies outside this evaluation's episodes {key}; the file "
                    "was altered, pass a new output folder (hydra.run.dir=...)"
                )
            seen.add(key)
            first = key[2] - key[2] % self.batch
            chunks.setdefault((key[0], key[1], first), []).append((line, record))
        kept, unfinished = [], 0
        for (kind, policy, first), lines in chunks.items():
            if len(lines) == self._chunk_size(first):
                self.done[(kind, policy, first)] = [record for _, record in lines]
                kept += [line for line, _ in lines]
            else:
                unfinished += len(lines)
        if torn or unfinished:
            dropped = ["a torn last line"] * bool(torn)
            dropped += [f"{unfinished} record(s) of unfinished chunks"] * bool(unfinished)
            print(f"{self.path}: dropped {' and '.join(dropped)}, left by a killed evaluation; those chunks run again")
            write_bytes_atomic(self.path, b"".join(kept))

    def get(self, goal_kind: str, policy: str, first: int) -> list[dict] | None:
        """The records of the chunk starting at episode `first`, or None when it is not done."""
        return self.done.get((goal_kind, policy, first))

    def append(self, goal_kind: str, policy: str, first: int, records: list[dict]) -> None:
        """Record a finished chunk durably (written, flushed and fsynced before this returns)."""
        if len(records) != self._chunk_size(first):
            raise ValueError(f"chunk at episode {first} has {len(records)} records, expected {self._chunk_size(first)}")
        data = memoryview(b"".join(json.dumps(r).encode() + b"\n" for r in records))
        try:
            while data:  # a write may take part of the data
                data = data[os.write(self.fd, data):]
            os.fsync(self.fd)
        except OSError as err:  # what got written is a torn chunk, which the rerun drops
            raise WriteError(self.path, err, then=f"run the same command again with hydra.run.dir={self.path.parent}: "
                             "it keeps the finished chunks and runs the others") from err
        self.done[(goal_kind, policy, first)] = records

    def close(self) -> None:
        os.close(self.fd)
