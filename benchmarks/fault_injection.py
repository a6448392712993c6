"""Fault injection: every stage of the pipeline SIGKILLed at random moments and run out of file
size, then compared with an uninterrupted run of the same config (issue 14).

    python benchmarks/fault_injection.py [--kills 10] [--save-kills 10] [--seed 0] [--out outputs/fault_injection]

Not part of the test suite (about 7 minutes on 2 busy cores before the landmarks stage and the
concurrent case were added). On a tiny reacher config it runs five stages, each through the command
a user types:

    collect   python -m agent.run stage=collect                    dataset shards + manifest
    train     python -m agent.run stage=train                      world-model checkpoints (resume=true)
    critic    python -m agent.run stage=eval eval.goal_kinds=[task] eval.episodes=1 ...
                                                                   the reach critic is fitted first
    landmarks the critic's command, configurator.task.goal_source=graph
                                                                   the landmark graph is fitted first
    eval      python -m agent.run stage=eval hydra.run.dir=...     records, results, summary

First an uninterrupted reference run gives each stage's work time W: the seconds from its first
progress bar on stderr (imports, config, loading done) to the last write of its output (the
dataset manifest, the run's summary.json, critic.json, records.jsonl). Then, in the same folder (the
reference is moved aside first, so paths recorded in manifests are equal), each stage is run

  1. once under a file-size limit (RLIMIT_FSIZE set in preexec_fn, SIGXFSZ ignored) half the
     size of the stage's largest file (a quarter of records.jsonl for eval): it must fail with one line starting "error:" (no traceback),
     and leave nothing half-written that a reader would take as valid;
  2. for train only, --save-kills times killed inside a checkpoint save: the folder is polled
     every millisecond and the process group is SIGKILLed a random 0-30 ms after a new
     .latest.tmp-* / .best.tmp-* folder appears; for landmarks only (its fit lasts a fraction of a
     second, which random kills rarely hit), killed twice at fixed points inside the fit: the child
     SIGKILLs itself once the graph is built and before it is saved, then once its weights file is
     written and before its manifest (KILL_IN_FIT patches the two functions, no hook in the code);
  3. --kills times SIGKILLed at random moments: K moments drawn (seeded) uniformly over the work
     the stage had left, p_1 < ... < p_K in (done * W, 0.9 W); run i is killed p_i - done_i * W
     seconds after its first progress bar (at once when that is negative), done_i being the share
     of the work on disk when it starts (shards listed, checkpoint step, records kept weighted by
     their episodes' reference wall time), so the
     kills sweep the stage's work from start to end (start-up is timed out: on 2 busy cores it
     varies by more than a tiny stage's work);
  4. once more without faults: it must complete.

Every rerun is the same command; a rerun that fails (a resume that refuses) is reported. After
each kill the folders are inspected: a kill that left a partial write (a temporary file or
folder, a checkpoint's .prev, a critic without its manifest, a torn records line) is counted, and
for training whether it landed inside a checkpoint save. Finally the dataset, the run folder
(checkpoints, logs), the critic and the evaluation folder are compared file by file with the
reference: byte-identical, or equal once the wall-clock fields named in the report are masked,
or different. Last, two processes are started together on an empty cache (concurrent_case): both
must end well, one must have waited for the other, and the cache must hold one dataset, model,
critic and graph, identical to the reference's. Writes <out>/fault_injection.json and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's packages, not an installed copy

# A config small enough that all of it runs in about 7 minutes on 2 shared cores.
TINY = [
    "env=reacher", "env.image_size=32",
    "data.episodes=16", "data.steps=20", "data.episodes_per_shard=2", "data.workers=1",
    "steps=120", "checkpoint_every=5", "log_every=5", "monitor_every=20", "optim.batch_size=4",
    "optim.warmup_steps=5", "probe_frames=20", "probe_held_frames=5", "monitor_clips=4",
    "world_model.dim=16", "world_model.token_dim=2", "world_model.stem_channels=8", "world_model.encoder_width=16",
    "world_model.encoder_depth=1", "world_model.encoder_heads=2", "world_model.predictor_width=32",
    "world_model.predictor_depth=1", "world_model.predictor_heads=2",
    "critic.steps=1500", "critic.batch_size=16", "critic.hidden=32", "critic.dim=4",
    "eval.episodes=6", "eval.batch=2", "eval.videos=0",
    "planner.samples=16", "planner.iterations=2", "planner.elites=4", "configurator.task.budget=20",
]
def setting(name: str) -> str:
    return next(o.split("=", 1)[1] for o in TINY if o.startswith(name + "="))


STAGES = ("collect", "train", "critic", "landmarks", "eval")
# The landmarks stage: the critic's command with the task's subgoals taken from the landmark graph,
# which is fitted (and cached) before its one-episode evaluation starts.
GRAPH = ["configurator.task.goal_source=graph", "configurator.task.subgoal_ahead=2",
         "configurator.task.subgoal_critic_weight=0.5", "landmarks.neighbours=3"]
# A child that SIGKILLs itself at a fixed point of the landmark graph's fit (random kills rarely
# land in it: on the tiny config it takes a fraction of a second): "build" once the graph is built,
# before it is saved; "save" once its weights file is written, before its manifest.
KILL_IN_FIT = """
import os, signal, sys
where = sys.argv.pop(1)
import agent.landmarks, world_model.fitted
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "build":
    fit = agent.landmarks.fit_landmarks
    agent.landmarks.fit_landmarks = lambda *a, **k: (fit(*a, **k), die())[0]
else:
    write = world_model.fitted.write_bytes_atomic
    def write_then_die(path, data):
        write(path, data)
        if path.name == "landmarks.safetensors":
            die()
    world_model.fitted.write_bytes_atomic = write_then_die
import runpy
runpy.run_module("agent.run", run_name="__main__")  # as `python -m agent.run`: hydra finds configs/ from the file
"""
# Fields that hold wall-clock durations or rates: the only ones two runs may legitimately differ in.
CLOCK = {"plan_ms", "wall_s", "plan_ms_mean", "plan_ms_p95", "wall_s_per_episode", "samples_per_s",
         "encode_s", "train_s", "build_s", "timings"}
TMP = re.compile(r"^\..*\.tmp$|^\..*\.tmp-[0-9a-f]+$|\.tmp$|\.prev$")
SAVE_TMP = re.compile(r"^\.(latest|best)\.tmp-[0-9a-f]+$")


def stage_args(stage: str, work: Path) -> list[str]:
    """The command of `stage`, writing under `work`."""
    base = [sys.executable, "-m", "agent.run", *TINY, f"cache_root={work / 'cache'}"]
    if stage in ("collect", "train"):
        return [*base, f"stage={stage}", f"hydra.run.dir={work / ('hydra-' + stage)}"]
    if stage in ("critic", "landmarks"):  # fitted (and cached) before this one-episode evaluation starts
        return [*base, "stage=eval", "eval.goal_kinds=[task]", "eval.episodes=1", "eval.batch=1",
                "eval.baselines=[]", *(GRAPH if stage == "landmarks" else []), f"hydra.run.dir={work / (stage + '-run')}"]
    return [*base, "stage=eval", f"hydra.run.dir={work / 'eval'}"]


class Layout:
    """Where each stage's output lies under a work folder (names taken from the reference)."""

    def __init__(self, work: Path, names: dict[str, str]):
        self.work = work
        self.dataset = work / "cache" / "datasets" / names["dataset"]
        self.run = work / "cache" / "models" / names["run"]
        self.critic = work / "cache" / "critics" / names["critic"]
        self.landmarks = work / "cache" / "landmarks" / names["landmarks"]
        self.eval = work / "eval"

    def output(self, stage: str) -> Path:
        return {"collect": self.dataset, "train": self.run, "critic": self.critic, "landmarks": self.landmarks,
                "eval": self.eval}[stage]


def only_child(folder: Path) -> str:
    """The one cache entry in `folder` (its lock file, world_model/cache_lock.py, aside)."""
    children = [p.name for p in folder.iterdir() if not p.name.endswith(".lock")]
    if len(children) != 1:
        raise RuntimeError(f"expected one folder in {folder}, found {children}")
    return children[0]


# ----------------------------------------------------------------------------- running
def child_env(threads: int) -> dict:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.setdefault("MUJOCO_GL", "egl")
    # one torch thread: on a shared 2-core machine a second one mostly spins (and the reference and
    # the faulted runs must use the same count for bit-equal floats)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def file_size_limit(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


class Runner:
    """Starts stage commands (each in its own process group), logs their output under logs/."""

    def __init__(self, logs: Path, threads: int):
        self.logs, self.env, self.count = logs, child_env(threads), 0
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, stage: str, work: Path, tag: str, limit: int | None = None, args: list[str] | None = None):
        """Starts the stage's command (or `args`, a command of its own)."""
        self.count += 1
        name = f"{self.count:03d}-{stage}-{tag}"
        out, err = open(self.logs / f"{name}.out", "w"), open(self.logs / f"{name}.err", "w")  # noqa: SIM115
        proc = subprocess.Popen(args or stage_args(stage, work), cwd=ROOT, env=self.env, stdout=out, stderr=err,
                                start_new_session=True,  # this process starts no threads
                                preexec_fn=file_size_limit(limit) if limit else None)  # noqa: PLW1509
        proc.files, proc.name, proc.started = (out, err), name, time.perf_counter()
        return proc

    def finish(self, proc, kill_after_work: float | None = None, timeout: float = 900) -> dict:
        """Wait for `proc`, SIGKILLing its process group `kill_after_work` seconds after its work
        began (its first progress bar on stderr), or `timeout` seconds after it started."""
        err, killed, proc.work_started = self.logs / f"{proc.name}.err", False, None
        while proc.poll() is None:
            now = time.perf_counter()
            if proc.work_started is None and BAR.search(err.read_text(errors="replace")):
                proc.work_started, proc.work_started_wall = now, time.time()
            due = kill_after_work is not None and proc.work_started is not None and now - proc.work_started >= kill_after_work
            if due or now - proc.started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                killed = True
                break
            time.sleep(0.005)
        return self._done(proc, killed)

    def kill_now(self, proc) -> dict:
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return self._done(proc, killed)

    def _done(self, proc, killed: bool) -> dict:
        seconds = time.perf_counter() - proc.started
        for f in proc.files:
            f.close()
        out = (self.logs / f"{proc.name}.out").read_text(errors="replace")
        err = (self.logs / f"{proc.name}.err").read_text(errors="replace")
        started = getattr(proc, "work_started", None)
        return {"log": proc.name, "killed": killed, "rc": proc.returncode, "seconds": round(seconds, 2),
                "work_began_s": None if started is None else round(started - proc.started, 2),
                "work_began_at": getattr(proc, "work_started_wall", None),
                "notes": notes(out + "\n" + err), "stderr": err}

    def run(self, stage: str, work: Path, tag: str, limit: int | None = None, timeout: float = 900) -> dict:
        """Run to the end (a run still going after `timeout` seconds is killed and reported so)."""
        return self.finish(self.start(stage, work, tag, limit), timeout=timeout)


BAR = re.compile(r"\d+%\|")  # a tqdm progress bar: the stage's work has begun


NOTE = re.compile(r"resuming .*|.*does not verify.*|.*dropped .*|.*already (complete|trained).*|interrupted.*")


def notes(text: str) -> list[str]:
    """What a run said about what it found on disk (resumed, restored, dropped)."""
    found = []
    for line in re.split(r"[\r\n]", text):
        m = NOTE.search(line)
        if m and m.group(0).strip() not in found:
            found.append(m.group(0).strip()[:200])
    return found


def error_lines(stderr: str) -> list[str]:
    """The error report of a failed run, without progress bars: every non-empty stderr line
    that is not a tqdm bar (a line a bar was left on is cut at "error:")."""
    lines = []
    for line in re.split(r"[\r\n]", stderr):
        if "error:" in line:
            line = line[line.index("error:"):]
        elif re.search(r"\d+%\|", line) or not line.strip():
            continue
        lines.append(line.rstrip())
    return lines


# ----------------------------------------------------------------------------- the state on disk
def progress(stage: str, lay: Layout, totals: dict) -> float:
    """Share of the stage's work that a rerun keeps (0..1)."""
    if stage == "collect":
        manifest = lay.dataset / "manifest.json"
        if not manifest.exists():
            return 0.0
        return len(json.loads(manifest.read_text())["shards"]) / totals["shards"]
    if stage == "train":
        from world_model.checkpoint import newest_verified, read_manifest

        newest = newest_verified(lay.run / "latest")
        return 0.0 if newest is None else read_manifest(newest)["step"] / totals["steps"]
    if stage in ("critic", "landmarks"):
        return float((lay.output(stage) / f"{stage}.json").exists())
    # weighted by each episode's wall time in the reference: a planner episode takes longer than a baseline's
    kept = complete_records(lay.eval / "records.jsonl", totals)
    weights = totals["episode_s"]
    return sum(weights[record_key(r)] for r in kept) / sum(weights.values())


def record_key(record: dict) -> str:
    return f"{record['goal_kind']}/{record['policy']}/{record['episode']}"


def complete_records(path: Path, totals: dict) -> list[dict]:
    """Records of records.jsonl that belong to finished chunks (what a resumed evaluation keeps)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data[: data.rfind(b"\n") + 1].splitlines()
    batch, episodes, chunks = totals["batch"], totals["episodes"], {}
    for line in lines:
        r = json.loads(line)
        chunks.setdefault((r["goal_kind"], r["policy"], r["episode"] - r["episode"] % batch), []).append(r)
    return [r for (_, _, first), rs in chunks.items() if len(rs) == min(batch, episodes - first) for r in rs]


def partial_writes(stage: str, lay: Layout, totals: dict) -> dict[str, int]:
    """What a kill left half-done in the stage's output folder: temporary files and folders,
    a checkpoint's .prev, a critic's weights without their manifest, a torn or unfinished chunk
    of records; each with a fingerprint (modification time or size), so that what an earlier kill
    left, still there, is told from what this one left."""
    folder = lay.output(stage)
    if not folder.exists():
        return {}
    left = {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if TMP.search(p.name)}
    weights = folder / f"{stage}.safetensors"
    if stage in ("critic", "landmarks") and weights.exists() and not (folder / f"{stage}.json").exists():
        left[f"{stage}.safetensors without {stage}.json"] = weights.stat().st_mtime_ns
    if stage == "eval" and (folder / "records.jsonl").exists():
        data = (folder / "records.jsonl").read_bytes()
        if data and not data.endswith(b"\n"):
            left["records.jsonl: torn last line"] = len(data)
        whole = data.count(b"\n")
        kept = len(complete_records(folder / "records.jsonl", totals))
        if whole > kept:
            left[f"records.jsonl: {whole - kept} record(s) of an unfinished chunk"] = len(data)
    return left


def new_partial_writes(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """The partial writes in `after` that `before` (taken when the run started) did not hold."""
    return [name for name, mark in after.items() if before.get(name) != mark]


def in_save(left: list[str]) -> bool:
    """Whether a kill's leftovers show it landed inside a checkpoint save (its temporary folder,
    or a .prev kept until the new folder is in place)."""
    return any(SAVE_TMP.match(p.split("/")[0]) or p.split("/")[0] in ("latest.prev", "best.prev") for p in left)


def half_written_check(stage: str, lay: Layout) -> str | None:
    """None when what a failed run left is either whole or recognisably unfinished; else what a
    reader would wrongly take as valid."""
    from world_model.checkpoint import CheckpointError, newest_verified, verify
    from world_model.dataset import Dataset, DatasetError

    if stage == "collect" and (lay.dataset / "manifest.json").exists():
        manifest = json.loads((lay.dataset / "manifest.json").read_text())
        if manifest["complete"]:
            try:
                Dataset(lay.dataset)
            except DatasetError as e:
                return f"a complete dataset that does not verify: {e}"
        for shard in manifest["shards"]:  # every listed shard must match its sha256
            for name, record in shard["files"].items():
                path = lay.dataset / shard["name"] / name
                if not path.exists() or path.stat().st_size != record["bytes"]:
                    return f"{path} is listed in the manifest but is missing or of another size"
    if stage == "train":
        for name in ("latest", "best"):
            folder = lay.run / name
            if folder.exists():
                try:
                    verify(folder)
                except CheckpointError as e:
                    if newest_verified(folder) is None:
                        return f"{name}/ does not verify and no .prev does: {e}"
    if stage == "critic" and (lay.critic / "critic.json").exists():
        from agent.critic import load_critic

        try:
            load_critic(lay.critic)
        except CheckpointError as e:
            return f"critic.json present but the critic does not load: {e}"
    if stage == "landmarks" and (lay.landmarks / "landmarks.json").exists():
        from agent.landmarks import load_landmarks

        try:
            load_landmarks(lay.landmarks)
        except CheckpointError as e:
            return f"landmarks.json present but the graph does not load: {e}"
    return None


# ----------------------------------------------------------------------------- comparison
def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: value}


def _key_names(path: str) -> set[str]:
    return set(re.split(r"[.\[\]]+", path)) - {""}


def _json_docs(path: Path) -> list | None:
    """A JSON file as [doc], JSON lines as [doc per line], a CSV as [row dict per row]; None if not text data."""
    text = path.read_text(errors="strict")
    if path.suffix == ".json":
        return [json.loads(text)]
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines()]
    if path.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    return None


def compare_file(a: Path, b: Path, moved: tuple[str, str] | None = None) -> tuple[str, list[str]]:
    """("bytes", []) when equal, ("masked", differing wall-clock fields) when only those differ,
    ("differ", what differs) otherwise. moved: (b's root, a's root): paths b records under its own
    folder count as equal to a's (a run in another folder records other paths)."""
    if a.read_bytes() == b.read_bytes():
        return "bytes", []
    if moved and a.read_bytes() == b.read_bytes().replace(moved[0].encode(), moved[1].encode()):
        return "masked", ["paths under the run's own folder"]
    try:
        docs_a, docs_b = _json_docs(a), _json_docs(b)
    except (UnicodeDecodeError, json.JSONDecodeError):
        docs_a = docs_b = None
    if docs_a is None or docs_b is None:
        return "differ", [f"{a.stat().st_size} vs {b.stat().st_size} bytes, binary"]
    if len(docs_a) != len(docs_b):
        return "differ", [f"{len(docs_a)} vs {len(docs_b)} records/rows"]
    clock, other = set(), []
    for i, (x, y) in enumerate(zip(docs_a, docs_b)):
        fa, fb = _flat(x), _flat(y)
        for key in sorted(fa.keys() | fb.keys()):
            if fa.get(key, "<absent>") == fb.get(key, "<absent>"):
                continue
            names = _key_names(key)
            if names & CLOCK:
                clock.add(next(n for n in re.split(r"[.\[\]]+", key) if n in CLOCK))
            else:
                other.append(f"line {i + 1}: {key}: {fa.get(key, '<absent>')!r} vs {fb.get(key, '<absent>')!r}"[:240])
    if other:
        return "differ", other[:5] + ([f"... {len(other) - 5} more"] if len(other) > 5 else [])
    return "masked", sorted(clock)


def compare_folders(ref: Path, got: Path, moved: tuple[str, str] | None = None) -> dict:
    files_a = {str(p.relative_to(ref)) for p in ref.rglob("*") if p.is_file()}
    files_b = {str(p.relative_to(got)) for p in got.rglob("*") if p.is_file()}
    result = {"files": len(files_a), "bytes_identical": [], "masked": {}, "differ": {},
              "only_in_reference": sorted(files_a - files_b), "only_in_faulted": sorted(files_b - files_a)}
    for name in sorted(files_a & files_b):
        kind, detail = compare_file(ref / name, got / name, moved)
        if kind == "bytes":
            result["bytes_identical"].append(name)
        else:
            result[kind][name] = detail
    if result["differ"] or result["only_in_reference"] or result["only_in_faulted"]:
        result["identical"] = "no"
    else:
        result["identical"] = "bytes" if not result["masked"] else "masked"
    return result


# ----------------------------------------------------------------------------- the stages
def largest_file(folder: Path) -> tuple[str, int]:
    sizes = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    name = max(sizes, key=sizes.get)
    return name, sizes[name]


def fault_stage(stage: str, runner: Runner, lay: Layout, ref: dict, totals: dict, args, rng: random.Random) -> dict:
    """Run `stage` under a file-size limit, with --save-kills (train) and --kills SIGKILLs, then to the end."""
    result = {"stage": stage, "attempts": [], "refused": []}
    # 1. a file-size limit below the largest file the stage writes
    target, size = ref["largest"]
    limit = size // 4 if stage == "eval" else size // 2  # eval: a quarter, so that most chunks are left to kill
    run = runner.run(stage, lay.work, "fsize", limit=limit)
    lines = error_lines(run["stderr"])
    half = half_written_check(stage, lay)
    result["fsize"] = {
        "limit_bytes": limit, "largest_file": f"{target} ({size} bytes)", "rc": run["rc"],
        "error_lines": lines[:6], "one_line": len(lines) == 1 and lines[0].startswith("error:")
        and "Traceback" not in run["stderr"], "half_written_taken_as_valid": half, "log": run["log"],
        "left": list(partial_writes(stage, lay, totals)),
    }
    print(f"  {stage}: file-size limit {limit} B -> rc {run['rc']}: {lines[:2]}")

    def record(run: dict, kind: str, when: float | None, before: dict[str, int]) -> None:
        left = new_partial_writes(before, partial_writes(stage, lay, totals))
        entry = {"kind": kind, "at_s": None if when is None else round(when, 2), **{k: run[k] for k in (
            "log", "killed", "rc", "seconds", "notes")}, "left": left, "progress_after": round(progress(stage, lay, totals), 3)}
        if stage == "train":
            entry["in_save"] = in_save(left)
        if not run["killed"] and run["rc"] != 0:
            entry["error"] = error_lines(run["stderr"])[-3:]
            result["refused"].append(entry)
        result["attempts"].append(entry)
        state = "killed" if run["killed"] else f"exited {run['rc']}"
        print(f"  {stage}: {kind} {state} after {run['seconds']:.1f} s, progress {entry['progress_after']:.2f}"
              + (f", left {left}" if left else "") + (f"; {run['notes']}" if run["notes"] else ""))

    # 2. kills inside checkpoint saves
    if stage == "train":
        for _ in range(args.save_kills):
            before = {p.name for p in lay.run.iterdir()} if lay.run.exists() else set()
            partial = partial_writes(stage, lay, totals)
            proc = runner.start(stage, lay.work, "savekill")
            delay = rng.uniform(0.0, 0.03)
            while proc.poll() is None and time.perf_counter() - proc.started < 600:
                names = {e.name for e in os.scandir(lay.run)} if lay.run.exists() else set()
                if any(SAVE_TMP.match(n) for n in names - before):
                    time.sleep(delay)
                    break
                time.sleep(0.001)
            record(runner.kill_now(proc), "save-kill", None, partial)
    # 2b. kills at fixed points of the landmark graph's fit, too short for random kills to land in
    if stage == "landmarks":
        for where in ("build", "save"):
            partial = partial_writes(stage, lay, totals)
            command = [sys.executable, "-c", KILL_IN_FIT, where, *stage_args(stage, lay.work)[3:]]
            run = runner.finish(runner.start(stage, lay.work, f"kill-in-{where}", args=command))
            run["killed"] = run["rc"] == -signal.SIGKILL  # by itself, at the point named
            record(run, f"kill in {where}", None, partial)
    # 3. kills at random moments over the work left
    W = ref["work_s"]
    done0 = progress(stage, lay, totals)
    # to 0.9 W: a resumed run may work faster than the reference, and a kill after the end proves nothing
    moments = sorted(rng.uniform(done0 * W, 0.9 * W) for _ in range(args.kills))
    for moment in moments:
        done = progress(stage, lay, totals)
        delay = max(moment - done * W, 0.0)
        partial = partial_writes(stage, lay, totals)
        record(runner.finish(runner.start(stage, lay.work, "kill"), kill_after_work=delay), "kill", delay, partial)
    # 4. to the end
    partial = partial_writes(stage, lay, totals)
    run = runner.run(stage, lay.work, "final")
    record(run, "final", None, partial)
    result["completed"] = not run["killed"] and run["rc"] == 0 and progress(stage, lay, totals) == 1.0
    kills = [a for a in result["attempts"] if a["killed"]]
    result["kills"] = len(kills)
    result["kills_with_work_left"] = sum(1 for a in kills if a["progress_after"] < 1.0)
    result["resumes"] = len(result["attempts"])  # every run after the file-size failure or a kill resumed
    result["kills_leaving_partial_writes"] = sum(1 for a in kills if a["left"])
    if stage == "train":
        result["kills_in_save"] = sum(1 for a in kills if a.get("in_save"))
        result["save_kills_in_save"] = sum(1 for a in kills if a["kind"] == "save-kill" and a.get("in_save"))
    return result


# The file a stage writes last: its modification time ends the stage's work.
FINISHED = {"collect": "cache/datasets/*/manifest.json", "train": "cache/models/*/summary.json",
            "critic": "cache/critics/*/critic.json", "landmarks": "cache/landmarks/*/landmarks.json",
            "eval": "eval/records.jsonl"}


def reference_run(runner: Runner, work: Path) -> dict:
    """Each stage uninterrupted: its wall time, and W, the seconds from its first progress bar
    (start-up done) to the last write of its output (FINISHED; not the exit, which tears down)."""
    timings = {}
    for stage in STAGES:
        run = runner.run(stage, work, "reference")
        if run["rc"] != 0 or run["killed"] or run["work_began_s"] is None:
            raise SystemExit(f"error: the reference {stage} failed (logs/{run['log']}.err):\n" + run["stderr"][-2000:])
        finished = next(work.glob(FINISHED[stage])).stat().st_mtime
        timings[stage] = {"total_s": run["seconds"], "startup_s": run["work_began_s"],
                          "work_s": round(finished - run["work_began_at"], 2)}
        print(f"reference {stage}: {run['seconds']:.1f} s, start-up {run['work_began_s']:.1f} s, "
              f"work {timings[stage]['work_s']:.1f} s")
    return timings


def concurrent_case(runner: Runner, out: Path, reference: Path, names: dict) -> dict:
    """Two processes started together on one empty cache: the landmarks stage's command with stage=all
    (collect, train, fit the critic and the graph, evaluate), the second with threads=1, which shares
    every cache key. Both must end well, one must have waited for the other (world_model/cache_lock.py),
    and the cache must hold one dataset, model, critic and graph, each identical to the reference's."""
    work = out / "concurrent"
    command = [a for a in stage_args("landmarks", work) if a != "stage=eval" and not a.startswith("hydra.run.dir=")]
    procs = [runner.start("concurrent", work, tag, args=[*command, "stage=all", *extra, f"hydra.run.dir={work / tag}"])
             for tag, extra in (("first", []), ("second", ["threads=1"]))]
    runs = [runner.finish(proc) for proc in procs]
    said = "".join((runner.logs / f"{run['log']}.out").read_text() for run in runs)
    kinds = {"collect": "datasets", "train": "models", "critic": "critics", "landmarks": "landmarks"}
    entries = {kind: sorted(p.name for p in (work / "cache" / kind).iterdir() if not p.name.endswith(".lock"))
               for kind in kinds.values() if (work / "cache" / kind).exists()}
    expected = {kinds[stage]: [names[key]] for stage, key in (("collect", "dataset"), ("train", "run"),
                                                               ("critic", "critic"), ("landmarks", "landmarks"))}
    moved = (str(work), str(out / "work"))  # the reference's outputs record the paths of the work folder
    compare = {stage: compare_folders(Layout(reference, names).output(stage), Layout(work, names).output(stage), moved)
               for stage in kinds if entries == expected}
    result = {"rc": [run["rc"] for run in runs], "logs": [run["log"] for run in runs],
              "waited": "waiting for " in said, "entries": entries, "compare": compare}
    result["passed"] = (result["rc"] == [0, 0] and result["waited"] and entries == expected
                        and all(c["identical"] != "no" for c in compare.values()))
    print(f"concurrent: exit {result['rc']}, one waited: {result['waited']}, one of each entry: {entries == expected}, "
          "identical to the reference: " + ", ".join(f"{k} {c['identical']}" for k, c in compare.items()))
    return result


def table(results: list[dict], work: Path) -> str:
    """The per-stage figures as a markdown table (paths under the work folder shown as <work>)."""
    head = ("| stage | kills (work left) | in a checkpoint save | left a partial write | resumes | refused "
            "| file-size limit: the error | one line | final outputs identical | what differs |")
    rows = [head, "|" + "---|" * 10]
    for r in results:
        cmp_ = r["compare"]
        what = []
        for name, fields in cmp_["masked"].items():
            what.append(f"{name}: {', '.join(fields)}")
        for name, detail in cmp_["differ"].items():
            what.append(f"{name}: {'; '.join(detail)}")
        what += [f"only in reference: {n}" for n in cmp_["only_in_reference"]]
        what += [f"only in faulted: {n}" for n in cmp_["only_in_faulted"]]
        ident = {"bytes": f"yes, {cmp_['files']} files byte-identical",
                 "masked": f"yes, {len(cmp_['bytes_identical'])} of {cmp_['files']} files byte-identical, "
                           "the rest with wall-clock fields masked", "no": "**no**"}[cmp_["identical"]]
        err = (r["fsize"]["error_lines"] or ["(none)"])[-1].replace(str(work), "<work>")
        err = err if len(err) <= 150 else err[:147] + "..."
        save = f"{r['kills_in_save']} ({r['save_kills_in_save']} of the save-timed)" if "kills_in_save" in r else "-"
        rows.append(f"| {r['stage']} | {r['kills']} ({r['kills_with_work_left']}) | {save} | "
                    f"{r['kills_leaving_partial_writes']} | {r['resumes']} | {len(r['refused'])} | `{err[:160]}` | "
                    f"{'yes' if r['fsize']['one_line'] else '**no**'} | {ident} | {'; '.join(what) or '-'} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs at random moments per stage")
    parser.add_argument("--save-kills", type=int, default=10, help="extra training SIGKILLs timed inside a checkpoint save")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every run")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "fault_injection")
    args = parser.parse_args()
    start = time.perf_counter()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    work, reference, faulted = out / "work", out / "reference", out / "faulted"
    runner = Runner(out / "logs", args.threads)

    timings = reference_run(runner, work)
    names = {"dataset": only_child(work / "cache" / "datasets"), "run": only_child(work / "cache" / "models"),
             "critic": only_child(work / "cache" / "critics"), "landmarks": only_child(work / "cache" / "landmarks")}
    ref_lay = Layout(work, names)
    totals = {"shards": len(json.loads((ref_lay.dataset / "manifest.json").read_text())["shards"]),
              "steps": json.loads((ref_lay.run / "summary.json").read_text())["step"],
              "batch": int(setting("eval.batch")), "episodes": int(setting("eval.episodes")),
              "records": len((ref_lay.eval / "records.jsonl").read_text().splitlines()),
              "episode_s": {record_key(r): r["wall_s"] for r in map(json.loads, (ref_lay.eval / "records.jsonl")
                                                                    .read_text().splitlines())}}
    for stage in STAGES:
        timings[stage]["largest"] = largest_file(ref_lay.output(stage))
    os.replace(work, reference)

    lay = Layout(work, names)
    results = []
    for stage in STAGES:
        rng = random.Random(f"{args.seed}-{stage}")
        results.append(fault_stage(stage, runner, lay, timings[stage], totals, args, rng))
    os.replace(work, faulted)
    concurrent = concurrent_case(runner, out, reference, names)
    for r in results:
        r["compare"] = compare_folders(Layout(reference, names).output(r["stage"]),
                                       Layout(faulted, names).output(r["stage"]))
    wall = time.perf_counter() - start
    ok = all(r["completed"] and not r["refused"] and r["fsize"]["one_line"] and r["fsize"]["rc"] != 0
             and r["fsize"]["half_written_taken_as_valid"] is None and r["compare"]["identical"] != "no"
             and r["kills"] >= args.kills for r in results) and concurrent["passed"]
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "config": TINY, "kills": args.kills,
              "save_kills": args.save_kills, "seed": args.seed, "threads": args.threads, "cpus": os.cpu_count(),
              "reference": timings, "totals": totals, "wall_s": round(wall, 1), "passed": ok, "stages": results,
              "concurrent": concurrent}
    (out / "fault_injection.json").write_text(json.dumps(report, indent=1))
    print()
    print(table(results, work))
    print(f"\nwall time {wall / 60:.1f} min; {'PASSED' if ok else 'FAILED'}; report {out / 'fault_injection.json'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
