"""Training: it learns, resumes exactly, stops on non-finite values, and keeps verified checkpoints."""

import json
from dataclasses import replace

import pytest
import torch

import world_model
from world_model.losses import LossConfig
from world_model.model import WorldModelConfig
from world_model.train import OptimConfig, TrainConfig, TrainingDiverged, train, warmup_cosine
from world_model.windows import WindowSampler

from conftest import TINY_MODEL


def tiny_train_config(tiny_data, out, **overrides) -> TrainConfig:
    env, data = tiny_data
    cfg = TrainConfig(
        env=env, data=data, world_model=WorldModelConfig(**TINY_MODEL), loss=LossConfig(inverse_dynamics_hidden=16),
        optim=OptimConfig(batch_size=8, warmup_steps=2), steps=6, log_every=1, monitor_every=3,
        checkpoint_every=3, monitor_clips=8, probe_frames=40, held_out_fraction=0.34, out=str(out),
    )
    return replace(cfg, **overrides)


def weights(folder):
    return world_model.load(folder).state_dict()


def test_train_writes_checkpoints_logs_and_summary(tiny_data, tmp_path):
    folder = train(tiny_train_config(tiny_data, tmp_path / "run"), progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["step"] == 6
    final = summary["final"]
    for key in ("rollout_err_1", "copy_last_err_1", "effective_rank", "dim_std", "probe_r2_joints"):
        assert key in final
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"loss"' in line]) == 6
    assert (folder / "metrics.csv").read_text().startswith("step,")
    for name in ("latest", "best"):
        assert isinstance(world_model.load(folder / name), world_model.WorldModel)
    # A finished run is reused, not trained again.
    assert train(tiny_train_config(tiny_data, tmp_path / "run"), progress=False) == folder


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    whole = train(tiny_train_config(tiny_data, tmp_path / "whole"), progress=False)

    real_sample = WindowSampler.sample
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # after the step-3 checkpoint and one more step that is lost
            raise KeyboardInterrupt
        return real_sample(self, *args, **kwargs)

    monkeypatch.setattr(WindowSampler, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(tiny_data, tmp_path / "cut"), progress=False)
    monkeypatch.setattr(WindowSampler, "sample", real_sample)
    assert json.loads((tmp_path / "cut" / "latest" / "checkpoint.json").read_text())["step"] == 3
    with pytest.raises(RuntimeError, match="resume=true"):
        train(tiny_train_config(tiny_data, tmp_path / "cut"), progress=False)
    resumed = train(tiny_train_config(tiny_data, tmp_path / "cut", resume=True), progress=False)

    a, b = weights(whole / "latest"), weights(resumed / "latest")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_stops_training_naming_the_step(tiny_data, tmp_path):
    cfg = tiny_train_config(tiny_data, tmp_path / "nan", optim=OptimConfig(batch_size=8, lr=1e30, warmup_steps=1))
    with pytest.raises(TrainingDiverged, match=r"at step \d+"):
        train(cfg, progress=False)


def test_model_that_does_not_match_the_data_is_refused(tiny_data, tmp_path):
    cfg = tiny_train_config(tiny_data, tmp_path / "bad", world_model=WorldModelConfig(**{**TINY_MODEL, "image_size": 64}))
    with pytest.raises(ValueError, match="32px"):
        train(cfg, progress=False)


def test_too_few_probe_frames_are_refused_before_training(tiny_data, tmp_path):
    cfg = tiny_train_config(tiny_data, tmp_path / "few", probe_frames=5)
    with pytest.raises(ValueError, match="probe_frames >= 10"):
        train(cfg, progress=False)
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
        train(cfg, progress=False)
