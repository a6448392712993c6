"""A killed evaluation, run again into its folder, runs only the chunks it had not recorded and ends
with the records and summary of an uninterrupted one; stale rows and torn lines never survive, and
a folder of another evaluation is refused.

The dot env of test_fake_env and an untrained tiny model keep every evaluation well under a second.
"""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL, file_size_limit
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf, open_dict
from test_fake_env import DotEnv, replay

import agent.evaluate as evaluate_module
import envs
import world_model
from agent.eval_folder import EvaluationFolderError, RecordStore
from agent.protocols import chunk_seed
from agent.run_config import RunConfig
from world_model.atomic import WriteError

ROOT = Path(__file__).resolve().parents[1]
EPISODES, BATCH = 5, 2  # chunks of episodes [0, 1], [2, 3], [4]: 3 per policy, 9 in all
CHUNK_SIZES = [2, 2, 1] * 3  # in the order they run: planner, random, zero
CLOCK = {"plan_ms", "wall_s"}  # wall-clock fields of a record: the only ones a rerun may change
ROW_CLOCK = {"plan_ms_mean", "plan_ms_p95", "wall_s_per_episode"}  # and of a summary row


def make_cfg(cache: Path, *overrides: str):
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("run", overrides=[f"cache_root={cache}", f"eval.episodes={EPISODES}", f"eval.batch={BATCH}",
                                        "eval.videos=1", *overrides])
    with open_dict(cfg):
        cfg.env = OmegaConf.create({"name": "dot", "image_size": 32})
        reach = {**OmegaConf.to_container(cfg.configurator["state"]), "planner": {"cem": {"samples": 8, "iterations": 2, "elites": 2}},
                 "horizon": 2, "critic_weight": 0.0, "readout_weight": 0.0}
        cfg.configurator = OmegaConf.create({"reach": reach})
    return cfg


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The dot family registered, a saved tiny model, and the records of an uninterrupted evaluation."""
    root = tmp_path_factory.mktemp("resume")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits, 10x slower on a shared 2-core machine
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(envs.REGISTRY, "dot", (DotEnv, {}, types.SimpleNamespace(replay=replay)))
        torch.manual_seed(0)
        wm = world_model.WorldModel(world_model.WorldModelConfig(**TINY_MODEL, action_dim=3)).eval()
        world_model.save(root / "model", wm, step=0)
        w = types.SimpleNamespace(root=root, wm=wm, checkpoint=root / "model", envs=[DotEnv() for _ in range(BATCH)])
        w.evaluate = lambda out, *overrides: evaluate_module.evaluate(
            make_cfg(root / "cache", *overrides), w.wm, w.envs, torch.device("cpu"), out, w.checkpoint, progress=False)
        w.reference = root / "reference"
        w.evaluate(w.reference)
        yield w
    torch.set_num_threads(threads)


@pytest.fixture
def calls(monkeypatch):
    """The chunks run_episodes runs, as (policy name, first episode seed); set .fail_at = n to raise
    on the n-th call (0-based), as a kill there would stop the evaluation."""
    real = evaluate_module.run_episodes
    log = types.SimpleNamespace(made=[], fail_at=None)

    def counted(envs_, specs, policy, keep=0, bar=None):
        if len(log.made) == log.fail_at:
            raise KeyboardInterrupt("killed")
        log.made.append((policy.name, specs[0].seed))
        return real(envs_, specs, policy, keep, bar)

    monkeypatch.setattr(evaluate_module, "run_episodes", counted)
    return log


def records(folder: Path) -> list[str]:
    """records.jsonl's lines, each without its wall-clock fields (key order kept)."""
    return [json.dumps({k: v for k, v in json.loads(line).items() if k not in CLOCK})
            for line in (folder / "records.jsonl").read_text().splitlines()]


def rows(folder: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ROW_CLOCK}
            for row in json.loads((folder / "summary.json").read_text())["rows"]]


def logged_rows(folder: Path) -> tuple[int, int]:
    """Rows in results.jsonl and results.csv (the header not counted)."""
    return (len((folder / "results.jsonl").read_text().splitlines()),
            len((folder / "results.csv").read_text().splitlines()) - 1)


@pytest.mark.parametrize("killed_at", [1, 4])  # after the planner's first chunk; part way through "random"
def test_a_resumed_evaluation_ends_as_an_uninterrupted_one(world, calls, tmp_path, killed_at):
    out = tmp_path / "out"
    calls.fail_at = killed_at
    with pytest.raises(KeyboardInterrupt):
        world.evaluate(out)
    assert len(records(out)) == sum(CHUNK_SIZES[:killed_at])  # every chunk that ended is on disk at once
    video = out / "videos" / "reach-00.mp4"
    written = video.stat().st_mtime_ns  # with the planner's first chunk, before its records

    calls.made, calls.fail_at = [], None
    world.evaluate(out)
    assert len(calls.made) == 9 - killed_at  # only the chunks not recorded ran
    assert records(out) == records(world.reference)  # same episodes, actions, outcomes, order
    assert rows(out) == rows(world.reference)
    assert json.loads((out / "summary.json").read_text())["replay_failures"] == 0
    assert logged_rows(out) == (3, 3)
    assert video.stat().st_mtime_ns == written  # not written again


def test_chunks_draw_their_own_randomness(world):
    lines = [json.loads(line) for line in records(world.reference)]
    random = [r["actions"] for r in lines if r["policy"] == "random"]
    assert random[0] != random[2]  # chunk 1's first episode does not repeat chunk 0's actions
    seeds = {chunk_seed(0, kind, first) for kind in (0, 1) for first in (0, 2, 4)}
    assert len(seeds) == 6  # nor does any chunk's planner noise, in any goal kind


def test_a_rerun_of_a_finished_evaluation_runs_nothing_and_adds_no_rows(world, calls, tmp_path):
    out = tmp_path / "out"
    world.evaluate(out)
    before = (out / "records.jsonl").read_bytes()
    calls.made = []
    world.evaluate(out)
    assert logged_rows(out) == (3, 3)  # rebuilt, not appended to
    assert calls.made == []
    assert (out / "records.jsonl").read_bytes() == before
    assert rows(out) == rows(world.reference)


def test_a_torn_last_line_is_dropped_and_its_chunk_runs_again(world, calls, tmp_path, capsys):
    out = tmp_path / "out"
    calls.fail_at = 1
    with pytest.raises(KeyboardInterrupt):
        world.evaluate(out)
    # a kill during the append of the planner's second chunk: one whole line, then half of one
    chunk = (world.reference / "records.jsonl").read_text().splitlines()[2:4]
    with open(out / "records.jsonl", "a") as f:
        f.write(chunk[0] + "\n" + chunk[1][: len(chunk[1]) // 2])

    calls.made, calls.fail_at = [], None
    world.evaluate(out)
    assert "dropped a torn last line and 1 record(s) of unfinished chunks" in capsys.readouterr().out
    assert len(calls.made) == 8  # the torn chunk again, and the 7 never begun
    assert records(out) == records(world.reference)
    assert logged_rows(out) == (3, 3)


def test_a_full_disk_during_an_append_is_one_line_and_the_torn_chunk_runs_again(tmp_path, capsys):
    def chunk(first):
        return [{"goal_kind": "reach", "policy": "planner", "episode": i, "pad": "x" * 50} for i in (first, first + 1)]

    store = RecordStore(tmp_path, episodes=4, batch=2)
    store.append("reach", "planner", 0, chunk(0))
    whole = (tmp_path / "records.jsonl").stat().st_size
    with file_size_limit(whole + 150), pytest.raises(WriteError) as caught:  # one record and a half of the next
        store.append("reach", "planner", 2, chunk(2))
    store.close()
    assert str(caught.value) == (
        f"cannot write {tmp_path / 'records.jsonl'} (File too large); the file is larger than its file system or the "
        f"file size limit (`ulimit -f`) allows: raise the limit, then run the same command again with "
        f"hydra.run.dir={tmp_path}: it keeps the finished chunks and runs the others")
    assert (tmp_path / "records.jsonl").stat().st_size == whole + 150  # the torn chunk is on disk ...
    again = RecordStore(tmp_path, episodes=4, batch=2)  # ... and a rerun drops it and runs that chunk again
    assert "dropped a torn last line and 1 record(s) of unfinished chunks" in capsys.readouterr().out
    assert again.get("reach", "planner", 0) == chunk(0) and again.get("reach", "planner", 2) is None
    again.append("reach", "planner", 2, chunk(2))
    again.close()
    assert [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()] == chunk(0) + chunk(2)


def test_a_folder_of_another_evaluation_is_refused_with_one_line(world, tmp_path):
    with pytest.raises(EvaluationFolderError, match=r"\(eval differ") as refused:
        world.evaluate(world.reference, "eval.seed=1")
    assert "\n" not in str(refused.value) and "new output folder" in str(refused.value)
    with pytest.raises(EvaluationFolderError, match=r"\(planner differ"):
        world.evaluate(world.reference, "planner.init_std=0.3")

    lone = tmp_path / "lone"  # records without evaluation.json: nothing says what made them
    lone.mkdir()
    (lone / "records.jsonl").write_text((world.reference / "records.jsonl").read_text())
    with pytest.raises(EvaluationFolderError, match="no evaluation.json"):
        world.evaluate(lone)

    altered = tmp_path / "altered"  # a whole line that is not a record is not a kill's doing
    altered.mkdir()
    (altered / "evaluation.json").write_text((world.reference / "evaluation.json").read_text())
    (altered / "records.jsonl").write_text("not json\n")
    with pytest.raises(EvaluationFolderError, match="line 1 .* is not an episode record"):
        world.evaluate(altered)


def test_a_refused_folder_is_byte_identical_before_and_after(tmp_path):
    """From the command line: hydra writes .hydra/ into the output folder before agent.run starts;
    a run refused there (another evaluation's folder, or a bad setting) puts it back as it was."""
    torch.manual_seed(0)
    world_model.save(tmp_path / "model", world_model.WorldModel(world_model.WorldModelConfig(
        **TINY_MODEL, action_dim=2)), step=0)
    folder = tmp_path / "eval"
    args = [sys.executable, "-m", "agent.run", "env=reacher", "env.image_size=32", "stage=eval",
            f"checkpoint={tmp_path / 'model'}", f"cache_root={tmp_path / 'cache'}", "eval.goal_kinds=[state]",
            "eval.episodes=1", "eval.baselines=[]", "eval.videos=0", "planner.samples=8", "planner.iterations=2",
            "planner.elites=2", "configurator.state.readout_weight=0", "refit.steps=0",
            f"hydra.run.dir={folder}"]  # no dataset to fit the readout or the refit on
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    def contents() -> dict:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    before = contents()
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "records.jsonl"} <= set(before)
    for change, line in (("eval.seed=1", "holds records of another evaluation"),
                         ("planner.samples=0", "samples must be at least 1")):
        refused = subprocess.run([*args, change], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                                 env=env)
        assert refused.returncode == 1 and line in refused.stderr, refused.stderr[-3000:]
        assert contents() == before, change  # before: .hydra/ described the refused run
