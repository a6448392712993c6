"""Training: it learns, resumes exactly, stops on non-finite values, and keeps verified checkpoints."""

import csv
import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, file_size_limit_in_child, report_lines

import world_model
from world_model.atomic import NotWritable
from world_model.losses import LossConfig
from world_model.model import WorldModelConfig
from world_model.train import OptimConfig, TrainConfig, TrainingDiverged, run_dir, run_identity, train, warmup_cosine
from world_model.windows import WindowSampler

ROOT = Path(__file__).resolve().parents[1]


def tiny_train_config(tiny_data, out, **overrides) -> TrainConfig:
    cfg = TrainConfig(
        dataset=str(tiny_data[2]), world_model=WorldModelConfig(**TINY_MODEL), loss=LossConfig(inverse_dynamics_hidden=16),
        optim=OptimConfig(batch_size=8, warmup_steps=2), steps=6, log_every=1, monitor_every=3,
        checkpoint_every=3, monitor_clips=8, probe_frames=40, held_out_fraction=0.34, out=str(out),
    )
    return replace(cfg, **overrides)


def weights(folder):
    return world_model.load(folder).state_dict()


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_train_writes_checkpoints_logs_and_summary(tiny_data, tmp_path):
    folder = train(tiny_train_config(tiny_data, tmp_path / "run"), tiny_data[2], progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["step"] == 6
    final = summary["final"]
    # the probe's names and groups come from the dataset (the reacher's probe_groups)
    for key in ("rollout_err_1", "copy_last_err_1", "effective_rank", "dim_std", "probe_r2_joints",
                "probe_r2_fingertip", "probe_rmse_joints", "probe_rmse_fingertip", "probe_r2_tip_x", "probe_r2"):
        assert key in final
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"loss"' in line]) == 6
    assert (folder / "metrics.csv").read_text().startswith("step,")
    for name in ("latest", "best"):
        assert isinstance(world_model.load(folder / name), world_model.WorldModel)
    # action_dim was left unset: training took the dataset's; the checkpoint names its dataset
    model = world_model.load(folder / "latest")
    assert model.cfg.image_size == 32 and model.cfg.action_dim == 2
    train_config = world_model.read_manifest(folder / "latest")["train_config"]
    assert set(train_config) == {"identity", "dataset"}
    assert train_config["dataset"] == str(tiny_data[2].resolve())
    assert train_config["identity"]["data"] == json.loads((tiny_data[2] / "manifest.json").read_text())["identity"]
    # A finished run is reused, not trained again.
    assert train(tiny_train_config(tiny_data, tmp_path / "run"), tiny_data[2], progress=False) == folder


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    whole = train(tiny_train_config(tiny_data, tmp_path / "whole"), tiny_data[2], progress=False)

    real_sample = WindowSampler.sample
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # after the step-3 checkpoint and one more step that is lost
            raise KeyboardInterrupt
        return real_sample(self, *args, **kwargs)

    monkeypatch.setattr(WindowSampler, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(tiny_data, tmp_path / "cut"), tiny_data[2], progress=False)
    monkeypatch.setattr(WindowSampler, "sample", real_sample)
    assert json.loads((tmp_path / "cut" / "latest" / "checkpoint.json").read_text())["step"] == 3
    with pytest.raises(RuntimeError, match="resume=true"):
        train(tiny_train_config(tiny_data, tmp_path / "cut"), tiny_data[2], progress=False)
    resumed = train(tiny_train_config(tiny_data, tmp_path / "cut", resume=True), tiny_data[2], progress=False)

    a, b = weights(whole / "latest"), weights(resumed / "latest")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert folder_bytes(resumed / "latest") == folder_bytes(whole / "latest")  # the training state and manifest too
    # the rows logged after the step-3 checkpoint and before the kill (step 4) are not repeated:
    # the logs equal the uninterrupted run's but for the timing
    for name in ("metrics.jsonl", "metrics.csv"):
        assert untimed_rows(resumed / name) == untimed_rows(whole / name), name


def test_checkpoints_do_not_depend_on_the_global_rng_state_the_process_starts_with(tiny_data, tmp_path):
    # training draws from neither generator, but each checkpoint saves their states: unseeded,
    # they were the process's start-up entropy, and no two runs wrote the same training_state.pt
    folders = []
    for seed in (1, 2):
        random.seed(seed)
        np.random.seed(seed)
        folders.append(train(tiny_train_config(tiny_data, tmp_path / str(seed), steps=3), tiny_data[2], progress=False))
    assert folder_bytes(folders[0] / "latest") == folder_bytes(folders[1] / "latest")


def test_a_full_disk_during_a_save_stops_training_with_one_line_and_a_rerun_completes(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "world_model.train", f"dataset={tiny_data[2]}", f"out={out}",
            f"hydra.run.dir={tmp_path / 'hydra'}", "steps=6", "log_every=1", "monitor_every=3", "checkpoint_every=3",
            "monitor_clips=8", "probe_frames=40", "held_out_fraction=0.34", "optim.batch_size=8",
            "optim.warmup_steps=2", "loss.inverse_dynamics_hidden=16", "resume=true",
            *(f"world_model.{k}={v}" for k, v in TINY_MODEL.items())]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    # 20 kB: room for the config, the logs and hydra's files, not for a checkpoint's weights
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env,
                          preexec_fn=file_size_limit_in_child(20_000))
    assert done.returncode == 1
    assert report_lines(done.stderr) == [  # one line, no traceback
        f"error: training stopped at step 3: cannot write {out / 'best' / 'model.safetensors'} (File too large); the "
        "file is larger than its file system or the file size limit (`ulimit -f`) allows: raise the limit, then run "
        "the same command again with resume=true: no checkpoint was saved yet, so it starts over"], done.stderr[-3000:]
    assert not [p.name for p in out.iterdir() if p.is_dir()]  # no checkpoint, whole or partial
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["step"] == 6
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps == [1, 2, 3, 4, 5, 6]  # the rows of the failed run were dropped, not repeated


def untimed_rows(path):
    """The records of a metrics.jsonl or metrics.csv without samples_per_s (wall-clock timing)."""
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        with open(path, newline="") as f:
            records = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records]


def test_non_finite_loss_stops_training_naming_the_step(tiny_data, tmp_path):
    cfg = tiny_train_config(tiny_data, tmp_path / "nan", optim=OptimConfig(batch_size=8, lr=1e30, warmup_steps=1))
    with pytest.raises(TrainingDiverged, match=r"at step \d+"):
        train(cfg, tiny_data[2], progress=False)


def test_model_that_does_not_match_the_data_is_refused(tiny_data, tmp_path):
    cfg = tiny_train_config(tiny_data, tmp_path / "bad", world_model=WorldModelConfig(**{**TINY_MODEL, "image_size": 64}))
    with pytest.raises(ValueError, match=r"world_model\.image_size=64 but dataset .* has 32"):
        train(cfg, tiny_data[2], progress=False)
    cfg = tiny_train_config(tiny_data, tmp_path / "bad", world_model=WorldModelConfig(**{**TINY_MODEL, "action_dim": 3}))
    with pytest.raises(ValueError, match=r"world_model\.action_dim=3 but dataset .* has 2"):
        train(cfg, tiny_data[2], progress=False)
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_the_probe_term_trains_on_the_datasets_probe_targets(tiny_data, tmp_path):
    loss = LossConfig(inverse_dynamics_hidden=16, probe_weight=1.0)
    folder = train(tiny_train_config(tiny_data, tmp_path / "probe", loss=loss), tiny_data[2], progress=False)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    probe = [row["probe"] for row in rows if "probe" in row]
    assert len(probe) == 6 and all(np.isfinite(probe)) and probe[-1] < probe[0]
    # the held-out loss the best checkpoint is chosen by includes the term, on the held-out clips' targets
    assert all(np.isfinite(row["held_loss"]) for row in rows if "held_loss" in row)
    # another loss, another cached run
    cached = {w: tiny_train_config(tiny_data, "", loss=replace(loss, probe_weight=w), cache_root=str(tmp_path))
              for w in (0.0, 1.0)}
    assert run_dir(cached[0.0], tiny_data[2]) != run_dir(cached[1.0], tiny_data[2])
    # without the term the identity is as it was before the term existed, so cached models keep their names
    assert "probe_weight" not in run_identity(cached[0.0], {})["loss"]
    assert run_identity(cached[1.0], {})["loss"]["probe_weight"] == 1.0


def test_too_few_probe_frames_are_refused_before_training(tiny_data, tmp_path):
    cfg = tiny_train_config(tiny_data, tmp_path / "few", probe_frames=5)
    with pytest.raises(ValueError, match="probe_frames >= 10"):
        train(cfg, tiny_data[2], progress=False)
    assert not (tmp_path / "few").exists()  # refused before anything was written


def test_schedule_holds_the_peak_then_decays_over_the_last_fraction():
    plain = warmup_cosine(warmup=10, total=110, min_ratio=0.05)
    wsd = warmup_cosine(warmup=10, total=110, min_ratio=0.05, decay_fraction=0.3)
    assert plain(0) == wsd(0) == pytest.approx(0.1)  # same linear warm-up
    assert plain(40) < 0.9 and wsd(40) == 1.0 and wsd(80) == 1.0  # held until the last 30 steps
    assert 0.05 < wsd(95) < 1.0 and wsd(95) > plain(95)
    assert wsd(109) == pytest.approx(plain(109), abs=0.01) and wsd(110) == pytest.approx(0.05)
    assert all(wsd(s) >= wsd(s + 1) for s in range(10, 110))  # never rises after warm-up


def test_decay_fraction_outside_its_range_is_refused(tiny_data, tmp_path):
    cfg = tiny_train_config(tiny_data, tmp_path / "wsd", optim=OptimConfig(decay_fraction=0.0))
    with pytest.raises(ValueError, match="decay_fraction"):
        train(cfg, tiny_data[2], progress=False)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_held_out_fraction_outside_0_1_is_refused_before_anything_is_written(tiny_data, tmp_path, fraction):
    cfg = tiny_train_config(tiny_data, tmp_path / "split", held_out_fraction=fraction)
    with pytest.raises(ValueError, match=rf"held_out_fraction={fraction}: it must lie in \(0, 1\).*held-out episodes"):
        train(cfg, tiny_data[2], progress=False)
    assert not (tmp_path / "split").exists()


@pytest.mark.parametrize("name, value", [("steps", 0), ("optim.batch_size", 0), ("log_every", 0),
                                         ("monitor_every", -1), ("checkpoint_every", 0)])
def test_sizes_below_one_are_refused_before_anything_is_written(tiny_data, tmp_path, name, value):
    cfg = tiny_train_config(tiny_data, tmp_path / "sizes")
    if name == "optim.batch_size":
        cfg = replace(cfg, optim=replace(cfg.optim, batch_size=value))
    else:
        cfg = replace(cfg, **{name: value})
    with pytest.raises(ValueError, match=rf"^{name}={value}: it must be at least 1$"):
        train(cfg, tiny_data[2], progress=False)
    assert not (tmp_path / "sizes").exists()


def test_a_sampler_over_no_episode_says_so(tiny_data):
    from world_model.dataset import Dataset

    with pytest.raises(ValueError, match="no episode to draw clips from"):
        WindowSampler(Dataset(tiny_data[2]), np.arange(0), 3)


def test_a_read_only_cache_is_one_line_before_training(tiny_data, tmp_path, read_only):
    cache = tmp_path / "cache"
    cache.mkdir()
    read_only(cache)
    cfg = tiny_train_config(tiny_data, cache / "models" / "run")
    with pytest.raises(NotWritable, match=rf"^cannot write the world model's run folder: {cache}, where "
                                          rf"{cache}/models/run would be made, is not writable \(you have no write "
                                          r"permission there\); pass cache_root=<a folder you can write to> "
                                          r"\(or out=FOLDER\); a read-only cache serves only the models it already holds$"):
        train(cfg, tiny_data[2], progress=False)
    assert list(cache.iterdir()) == []  # the check left nothing behind
