"""One process at a time builds a cache entry: a second one waits and then reuses it, so two
`agent.run` processes started together on one empty cache end with one dataset, one model and one of
each fitted module, filed under the weights it was fitted on."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore

from agent.critic import CriticConfig, critic_key
from agent.landmarks import LandmarkConfig, landmarks_key
from agent.run_config import RunConfig
from world_model.cache_lock import EntryBusy, building, lock_path
from world_model.checkpoint import read_manifest
from world_model.decoder import DecoderConfig, decoder_key
from world_model.plain import plain

ROOT = Path(__file__).resolve().parents[1]

HOLD = """
import sys, time
from pathlib import Path
from world_model.cache_lock import building
with building(Path(sys.argv[1]), "the thing"):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_builder_waits_for_the_first_or_refuses_naming_it(tmp_path, capsys):
    folder = tmp_path / "models" / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), "3"], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline() == "holding\n"
    with pytest.raises(EntryBusy, match=rf"^the thing at {folder} is being built by process {holder.pid} on \S+ "
                                        r"\(`-c .*`, since .*\); wait until it has finished"):
        with building(folder, "the thing", wait=False):
            pass
    start = time.perf_counter()
    with building(folder, "the thing"):
        waited = time.perf_counter() - start
    holder.wait()
    assert waited > 0.5  # it waited for the holder to finish
    assert capsys.readouterr().out.startswith(f"waiting for the thing at {folder}: process {holder.pid} on ")
    assert json.loads(lock_path(folder).read_text())["pid"] == os.getpid()  # the last holder's line
    with building(folder, "the thing", wait=False):  # a holder that exited, even killed, holds nothing
        pass


# A tiny reacher run that collects, trains, fits the critic, the landmark graph and the decoder, and evaluates.
TINY = [
    "env=reacher", "env.image_size=32", "data.episodes=8", "data.steps=20", "data.workers=1",
    "data.episodes_per_shard=2", "steps=20", "optim.batch_size=4", "log_every=2", "monitor_every=10",
    "checkpoint_every=5", "probe_frames=20", "monitor_clips=4", "world_model.dim=16", "world_model.stem_channels=8",
    "world_model.encoder_width=16", "world_model.encoder_depth=1", "world_model.predictor_width=32",
    "world_model.predictor_depth=1", "eval.goal_kinds=[task]", "eval.episodes=1", "eval.baselines=[]",
    "eval.videos=1", "eval.video_size=32", "planner.samples=8", "planner.iterations=2", "planner.elites=2",
    "configurator.task.budget=20", "configurator.task.goal_source=graph", "configurator.task.subgoal_ahead=2",
    "configurator.task.subgoal_critic_weight=0.5",  # the critic scores toward the graph's subgoal: it is fitted
    "landmarks.neighbours=3", "critic.steps=20", "critic.batch_size=16", "critic.hidden=16", "critic.dim=4",
    "decoder.width=8", "decoder.steps=5", "decoder.episodes=2", "decoder.eval_windows=4", "decoder.horizon=2",
    "refit.steps=0",  # the reacher's schedule refits its predictor; the modules below are keyed by the model itself
]


def test_two_runs_started_together_on_one_empty_cache_build_everything_once(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    # the second with threads=2, which leaves every cache key as it is (the reported case)
    runs = [subprocess.Popen([sys.executable, "-m", "agent.run", *TINY, f"cache_root={cache}", *extra,
                              f"hydra.run.dir={tmp_path / name}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for name, extra in (("a", []), ("b", ["threads=2"]))]
    done = [(run.communicate(timeout=600), run.returncode) for run in runs]
    for (out, err), code in done:
        assert code == 0, err[-3000:]
    said = done[0][0][0] + done[1][0][0]
    assert "waiting for " in said  # one found an entry the other was building, and waited for it

    def entries(kind: str) -> list[Path]:
        return [p for p in (cache / kind).iterdir() if not p.name.endswith(".lock")]

    assert {kind: len(entries(kind)) for kind in ("datasets", "models", "critics", "landmarks", "decoders")} == dict.fromkeys(
        ("datasets", "models", "critics", "landmarks", "decoders"), 1)
    run_folder = entries("models")[0]
    steps = [json.loads(line)["step"] for line in (run_folder / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps == list(range(2, 21, 2))  # trained once: before, steps repeated as both trained the folder
    # every fitted module is filed under the weights of the one model, with the keys a single run computes
    weights = read_manifest(run_folder / "latest")["files"]["model.safetensors"]["sha256"]
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("run", overrides=TINY)
    dataset = entries("datasets")[0].name
    assert entries("critics")[0].name == f"reacher-{critic_key(weights, dataset, CriticConfig(**plain(cfg.critic)))}"
    assert entries("landmarks")[0].name == \
        f"reacher-{landmarks_key(weights, dataset, LandmarkConfig(**plain(cfg.landmarks)))}"
    assert entries("decoders")[0].name == f"reacher-{decoder_key(weights, dataset, DecoderConfig(**plain(cfg.decoder)))}"
    for name in ("a", "b"):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["checkpoint"] == str(run_folder / "latest") and summary["replay_failures"] == 0
