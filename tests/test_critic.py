"""The reach critic: learns a distance that grows with how far apart states are, from transitions
alone; its cost module, checkpoints and configuration errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, file_size_limit, flip_last_byte
from omegaconf import OmegaConf

import world_model
from agent.costs import CriticDistance, build_cost
from agent.critic import CriticConfig, ReachCritic, fit_critic, load_critic, save_critic
from agent.run import fitted_for
from world_model.atomic import NotWritable, WriteError
from world_model.checkpoint import CheckpointError
from world_model.dataset import DatasetError
from world_model.model import WorldModel, WorldModelConfig

ROOT = Path(__file__).resolve().parents[1]

FAST = CriticConfig(dim=8, hidden=64, steps=600, batch_size=256, lr=3e-3)


def _walks(episodes: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1-D position doing bounded random walks, seen through a non-linear 12-D "encoder".
    Returns latents [E, T, 12] and positions [E, T]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(episodes, steps)
    x[:, 0] = torch.rand(episodes, generator=g) * 2 - 1
    for t in range(1, steps):
        x[:, t] = (x[:, t - 1] + 0.08 * torch.randn(episodes, generator=g)).clamp(-1, 1)
    freqs = torch.arange(1, 7, dtype=torch.float32)
    z = torch.cat([torch.sin(x[..., None] * freqs), torch.cos(x[..., None] * freqs)], -1)  # [E, T, 12]
    return z, x


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_critic_distance_tracks_true_distance_and_respects_the_step_bound():
    torch.manual_seed(0)
    z, _ = _walks(64, 40, seed=0)
    z_held, x_held = _walks(16, 40, seed=1)
    critic, stats = fit_critic(z, z_held, FAST, progress=False)
    assert stats["held_out_step"] < 1.05  # one step of the video moves the embedding by at most ~1
    a, b = z_held.reshape(-1, 12), x_held.reshape(-1)
    i, j = torch.randint(len(a), (2000,)), torch.randint(len(a), (2000,))
    with torch.no_grad():
        d = critic.distance(a[i], a[j]).numpy()
    true = (b[i] - b[j]).abs().numpy()
    assert _spearman(d, true) > 0.8  # monotone in the real distance, which the critic never saw
    # An untrained critic of the same shape does not have that property.
    fresh = type(critic)(12, FAST)
    with torch.no_grad():
        assert _spearman(fresh.distance(a[i], a[j]).numpy(), true) < _spearman(d, true) - 0.2


def test_critic_cost_prefers_candidates_ending_nearer_the_goal_and_round_trips(tmp_path):
    z, _ = _walks(32, 30, seed=2)
    critic, stats = fit_critic(z, z[:4], FAST, progress=False)
    goal_x = torch.tensor([0.5])
    cands = torch.tensor([0.45, -0.8])  # two candidate plans' final positions
    freqs = torch.arange(1, 7, dtype=torch.float32)
    emb = lambda v: torch.cat([torch.sin(v[..., None] * freqs), torch.cos(v[..., None] * freqs)], -1)
    zs = emb(cands).reshape(1, 2, 1, 12).expand(1, 2, 3, 12)  # [B, N, H, D]
    cost = CriticDistance(critic)
    with torch.no_grad():
        c = cost(zs, torch.zeros(1, 2, 3, 2), emb(goal_x))
    assert c.shape == (1, 2) and c[0, 0] < c[0, 1]

    save_critic(tmp_path / "c", critic, stats)
    again = load_critic(tmp_path / "c")
    assert torch.equal(again.distance(zs[0, :, 0], zs[0, :, 1]), critic.distance(zs[0, :, 0], zs[0, :, 1]))
    weights = tmp_path / "c" / "critic.safetensors"
    flip_last_byte(weights, 0xFF)
    with pytest.raises(CheckpointError, match="sha256"):
        load_critic(tmp_path / "c")
    assert json.loads((tmp_path / "c" / "critic.json").read_text())["config"]["dim"] == FAST.dim


def test_a_critic_weight_without_a_critic_is_one_clear_error():
    weights = {"goal": 1.0, "critic": 0.3, "action_magnitude": 0.0, "action_smoothness": 0.0}
    energy = {"metric": "l2", "last_weight": 1.0, "step_weight": 0.1, "scales": (1,)}
    with pytest.raises(ValueError, match="critic"):
        build_cost(weights, energy)
    assert "critic" not in build_cost({**weights, "critic": 0.0}, energy).terms


def test_critic_reduce_min_scores_the_closest_approach_along_the_plan():
    class Identity(torch.nn.Module):
        def embed(self, z):
            return z

    goal = torch.zeros(1, 2)
    # Two candidates [B=1, N=2, H=3, D=2]: one passes through the goal and drifts away, one ends
    # nearer the goal but never reaches it.
    z = torch.tensor([[[[2.0, 0], [0, 0], [3, 0]], [[2, 0], [1.5, 0], [1, 0]]]])
    last, closest = CriticDistance(Identity(), "last"), CriticDistance(Identity(), "min")
    assert last(z, None, goal).argmin().item() == 1 and closest(z, None, goal).argmin().item() == 0
    torch.testing.assert_close(closest(z, None, goal), torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="critic reduce"):
        CriticDistance(Identity(), "mean")


def flip_one_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def tiny_wm(tmp_path):
    """An untrained world model that fits the tiny dataset, its checkpoint folder and its weights' sha256."""
    wm = WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=2))
    world_model.save(tmp_path / "ckpt", wm, step=0)
    return wm, tmp_path / "ckpt", world_model.read_manifest(tmp_path / "ckpt")["files"]["model.safetensors"]["sha256"]


def test_the_critic_refuses_a_dataset_with_a_flipped_byte(tiny_data, tiny_wm, tmp_path):
    # The reported case: sizes unchanged, one episode's length became about 2.8e14 frames.
    root = shutil.copytree(tiny_data[2], tmp_path / "data")
    flip_one_byte(root / "shard-00001" / "episode_starts.npy", -2)
    cfg = OmegaConf.create({"eval": {"goal_kinds": ["task"]}, "configurator": {"task": {"critic_weight": 0.3}},
                            "critic": {"steps": 2, "batch_size": 4, "hidden": 8, "dim": 2},
                            "cache_root": str(tmp_path / "cache")})
    with pytest.raises(DatasetError, match=r"shard-00001/episode_starts\.npy has sha256 .* delete .* collect it again"):
        fitted_for("critic", cfg, tiny_wm[0], tiny_wm[2], root, torch.device("cpu"), progress=False)
    assert not (tmp_path / "cache" / "critics").exists()


def test_the_probe_benchmark_refuses_a_dataset_with_a_flipped_byte(tiny_data, tiny_wm, tmp_path):
    # A pixel, not an episode start: with a size check alone that is read silently (an episode
    # start would make the benchmark list 2.8e14 rows and exhaust memory instead).
    root = shutil.copytree(tiny_data[2], tmp_path / "data")
    flip_one_byte(root / "shard-00000" / "frames.npy", -5)
    args = [sys.executable, "benchmarks/probe_depth.py", "--checkpoint", str(tiny_wm[1]), "--dataset", str(root),
            "--frames", "10", "--held-frames", "4", "--mlp-steps", "0"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0 and "shard-00000/frames.npy has sha256" in done.stderr, done.stdout + done.stderr


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_held_out_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(ValueError, match=rf"^critic\.held_out_fraction={fraction}: it must lie in \(0, 1\), because "
                                         r"the critic's held-out statistics use the last episodes; 0\.1 is the default$"):
        CriticConfig(held_out_fraction=fraction)


def test_agent_run_refuses_a_critic_held_out_fraction_of_0_before_collecting(tmp_path):
    args = [sys.executable, "-m", "agent.run", "env=reacher", "critic.held_out_fraction=0",
            f"cache_root={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0 and "critic.held_out_fraction=0.0: it must lie in (0, 1)" in done.stderr
    assert not (tmp_path / "cache").exists()


def test_the_probe_benchmark_refuses_a_held_out_fraction_of_0(tiny_data, tiny_wm):
    args = [sys.executable, "benchmarks/probe_depth.py", "--checkpoint", str(tiny_wm[1]), "--dataset",
            str(tiny_data[2]), "--held-out-fraction", "0"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        "--held-out-fraction=0.0: it must lie in (0, 1), because the probes are scored on held-out episodes (the "
        "last ones); 0.1 is the default")


def test_a_read_only_cache_refuses_fitting_the_critic_but_serves_a_fitted_one(tiny_data, tiny_wm, tmp_path, read_only):
    cfg = OmegaConf.create({"eval": {"goal_kinds": ["task"]}, "configurator": {"task": {"critic_weight": 0.3}},
                            "critic": {"steps": 2, "batch_size": 4, "hidden": 8, "dim": 2},
                            "cache_root": str(tmp_path / "cache")})
    (tmp_path / "cache").mkdir()
    fitted = fitted_for("critic", cfg, tiny_wm[0], tiny_wm[2], tiny_data[2], torch.device("cpu"), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    read_only(tmp_path / "cache")
    read_only(empty)
    served = fitted_for("critic", cfg, tiny_wm[0], tiny_wm[2], tiny_data[2], torch.device("cpu"), progress=False)
    for a, b in zip(fitted.state_dict().values(), served.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(NotWritable, match=rf"^cannot write the critic: {empty}, where {empty}/critics/reacher-\w+ "
                                          r"would be made, is not writable \(you have no write permission there\); "
                                          r"pass cache_root=<a folder you can write to>, or set "
                                          r"configurator.<goal kind>.critic_weight=0$"):
        fitted_for("critic", OmegaConf.merge(cfg, {"cache_root": str(empty)}), tiny_wm[0], tiny_wm[2], tiny_data[2],
                   torch.device("cpu"), progress=False)
    assert list(empty.iterdir()) == []


def test_a_failed_save_is_one_line_and_leaves_no_critic_behind(tmp_path):
    folder = tmp_path / "critic"
    critic = ReachCritic(12, CriticConfig(dim=4, hidden=64))  # about 21 kB of weights
    with file_size_limit(4096), pytest.raises(WriteError) as caught:
        save_critic(folder, critic, {})
    assert str(caught.value) == (
        f"cannot write {folder / 'critic.safetensors'} (File too large); the file is larger than its file system or "
        "the file size limit (`ulimit -f`) allows: raise the limit, then run the same command again: the critic is "
        "fitted again")
    assert list(folder.iterdir()) == []  # no partial file, and no critic.json: the next run fits it again
    save_critic(folder, critic, {})
    assert torch.equal(load_critic(folder).net[0].weight, critic.net[0].weight)
