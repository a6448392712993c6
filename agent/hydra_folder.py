"""What hydra writes into an existing output folder before a run starts, put back when the run fails.

Hydra writes .hydra/config.yaml, hydra.yaml and overrides.yaml (and creates <job name>.log) in the
output folder before `agent.run` is called, so a run into another evaluation's folder
(hydra.run.dir=FOLDER), refused there in one line, used to leave that folder describing the refused
run instead of the one that made its records. `KeepFolderRecord` (a hydra callback, configs/run.yaml:
hydra.callbacks) reads those files of an existing folder when the run starts; `restore` puts them
back, byte for byte, and removes what hydra added, when the run then fails. A run that fails in a
new folder keeps hydra's files: they say how it was started. Covered: a single run, and the jobs of
a multirun launched in this process (hydra's basic launcher), whose folders are read when the
multirun starts; a job a launcher starts in another process (Slurm) is not covered.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra.experimental.callback import Callback

from world_model.atomic import write_bytes_atomic

RECORD = ".hydra"
_KEPT: dict[Path, tuple[dict[str, bytes] | None, set[str]]] = {}  # folder -> (.hydra files, names in the folder)


def remember(folder: Path) -> None:
    """Reads the .hydra files of `folder` and the names it holds, if it exists and holds anything."""
    folder = Path(folder).resolve()
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    record = folder / RECORD
    files = {p.name: p.read_bytes() for p in record.iterdir() if p.is_file()} if record.is_dir() else None
    _KEPT[folder] = (files, {p.name for p in folder.iterdir()})


def restore(folder: Path, job_name: str) -> None:
    """Puts back what `remember` read of `folder`: its .hydra files as they were (none, if it had
    no .hydra), and removes the <job_name>.log hydra created there. Nothing for a folder not read."""
    folder = Path(folder).resolve()
    if folder not in _KEPT:
        return
    files, names = _KEPT.pop(folder)
    record = folder / RECORD
    if files is None:
        shutil.rmtree(record, ignore_errors=True)
    else:
        for path in record.iterdir():
            if path.name not in files:
                path.unlink()
        for name, data in files.items():
            if not (record / name).is_file() or (record / name).read_bytes() != data:
                write_bytes_atomic(record / name, data)
    log = folder / f"{job_name}.log"
    if log.name not in names:
        log.unlink(missing_ok=True)


class KeepFolderRecord(Callback):
    """Hydra callback: reads the run's output folder (or a multirun's job folders) before hydra writes there."""

    def on_run_start(self, config, **kwargs) -> None:
        remember(Path(config.hydra.run.dir))

    def on_multirun_start(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        if sweep.is_dir():
            for folder in sweep.iterdir():
                remember(folder)
