"""The probe readout learns the targets a dataset recorded from the latents, reads the world model's
predictions as well as encoded frames, round-trips, and its distance ranks plans by the targets;
the configurator's readout weight reaches the cost and asks for the readout, as holding at a goal the readout
finds met does."""

import math

import pytest
import torch
from conftest import flip_last_byte

import envs
from agent.configurator import Configurator, TaskSettings
from agent.costs import ReadoutDistance, build_cost
from agent.goal_sources import needs
from agent.readout import ReadoutConfig, errors, fit_readout, load_readout, predicted_rows, save_readout
from world_model.checkpoint import CheckpointError

D, K = 12, 4
MIX = torch.randn(K, D, generator=torch.Generator().manual_seed(3))
CFG = ReadoutConfig(hidden=64, steps=600, batch_size=256, rollout=0)


def scene(rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets y [N, K] (two positions, in units of 100) and latents z = tanh(y @ MIX) [N, D]: the
    targets are in the latent, but not linearly."""
    y = torch.rand(rows, K, generator=torch.Generator().manual_seed(seed)) * 100
    return torch.tanh(y / 100 @ MIX), y


@pytest.fixture(scope="module")
def fitted():
    z, y = scene(4000, seed=0)
    return fit_readout(z, y, CFG, progress=False)


def test_the_readout_reads_held_out_targets_and_round_trips(tmp_path, fitted):
    z, y = scene(500, seed=1)
    err = errors(fitted, z, y, {"first": ["a_x", "a_y"], "second": ["b_x", "b_y"]})
    assert set(err) == {"first", "second"}
    assert max(err.values()) < 5.0  # units of a 100-wide board; guessing the mean gives about 40
    save_readout(tmp_path / "r", fitted, {"encoded": err})
    again = load_readout(tmp_path / "r")
    assert torch.equal(again.targets(z), fitted.targets(z))
    flip_last_byte(tmp_path / "r" / "readout.safetensors")
    with pytest.raises(CheckpointError, match="sha256"):
        load_readout(tmp_path / "r")


def test_an_angle_pair_is_reported_in_degrees(fitted):
    z, y = scene(10, seed=2)
    cfg = ReadoutConfig(hidden=8, steps=1, rollout=0)
    angle = torch.tensor([[math.cos(0.3), math.sin(0.3)]]).repeat(10, 1)
    readout = fit_readout(z, torch.cat([y[:, :2], angle], dim=1), cfg, progress=False)
    readout.net[-1].weight.data.zero_()  # reads every row as the training mean: the angle 0.3 exactly
    readout.net[-1].bias.data.zero_()
    turned = torch.tensor([[math.cos(0.3 + 0.2), math.sin(0.3 + 0.2)]]).repeat(10, 1)
    err = errors(readout, z, torch.cat([y[:, :2], turned], dim=1), {"p": ["x", "y"], "angle": ["angle_cos", "angle_sin"]})
    assert err["angle_deg"] == pytest.approx(math.degrees(0.2), abs=1e-3)


def test_the_distance_is_zero_at_the_goal_and_ranks_plans_by_the_targets(fitted):
    z_goal, y_goal = scene(1, seed=4)
    # candidates [B=1, N=3, H=2, D]: the goal itself, then scenes 10 and 40 board units off the goal's targets
    off = [torch.tanh((y_goal + d) / 100 @ MIX) for d in (0.0, 10.0, 40.0)]
    z = torch.stack([torch.stack([o[0], o[0]]) for o in off])[None]
    cost = ReadoutDistance(fitted, last_weight=1.0, step_weight=0.0)(z, torch.zeros(1, 3, 2, 2), z_goal)
    assert cost.shape == (1, 3)
    assert cost[0, 0] < 0.01 < cost[0, 1] < cost[0, 2]
    # step weights: a plan that gets there only at the last step costs more with step_weight > 0
    late = torch.stack([off[2][0], off[0][0]])[None, None]  # [1, 1, 2, D]
    assert ReadoutDistance(fitted, 1.0, 0.5)(late, torch.zeros(1, 1, 2, 2), z_goal) > \
        ReadoutDistance(fitted, 1.0, 0.0)(late, torch.zeros(1, 1, 2, 2), z_goal) + 0.01


def test_predicted_rows_pair_each_prediction_with_the_frame_it_predicts():
    class Shift:  # a world model whose prediction of frame t + 1 is frame t's latent plus the action
        class cfg:
            history = 2

        def rollout(self, z_hist, actions, past):
            return z_hist[:, -1:] + torch.cumsum(actions, dim=1)  # [E, H, D]

    z = torch.cumsum(torch.ones(2, 9, 1), dim=1)  # frame t's latent is t + 1
    y = z * 10  # the target of frame t
    zp, yp = predicted_rows(Shift(), z, torch.ones(2, 9, 1), y, rollout=3, every=2)
    assert zp.shape == (2 * 3 * 3, 1)  # starts 1, 3, 5 (each with 3 frames left), 3 predictions each
    assert torch.equal(yp, zp * 10)  # exact predictions: each paired with its own frame's target
    with pytest.raises(ValueError, match="too short"):
        predicted_rows(Shift(), z[:, :3], torch.ones(2, 3, 1), y[:, :3], rollout=3, every=1)


def test_the_readout_weight_reaches_the_cost_and_asks_for_the_readout(fitted):
    env = envs.make("reacher", image_size=32)
    try:
        settings = {kind: TaskSettings() for kind in env.goal_kinds}
        plain = Configurator(settings, env).setup("state")
        settings["state"] = TaskSettings(readout_weight=2.0)
        weighted = Configurator(settings, env).setup("state")
    finally:
        env.close()
    assert "readout" not in needs(plain, {"name": "cem"})
    assert "readout" in needs(weighted, {"name": "cem"})
    held = Configurator({**settings, "state": TaskSettings(hold_within=0.8)}, env).setup("state")
    assert "readout" in needs(held, {"name": "cem"})  # the hold judges the frame with the readout
    rooms = envs.make("two-rooms", image_size=32)
    try:
        with pytest.raises(ValueError, match="env two-rooms cannot judge its success rule"):  # no probe_reached
            Configurator({k: TaskSettings(hold_within=0.8) for k in rooms.goal_kinds}, rooms).setup("rooms")
    finally:
        rooms.close()
    with pytest.raises(ValueError, match="readout_weight=0"):
        build_cost(weighted.cost_weights, weighted.goal_energy)  # a weight without a readout: one line
    cost = build_cost(weighted.cost_weights, weighted.goal_energy, readout=fitted)
    assert cost.terms["readout"][0] == 2.0


def test_group_weights_reach_the_cost_in_target_order_and_reweigh_the_plans(fitted):
    env = envs.make("pusht", image_size=32)  # probe groups agent (2), block (2), angle (2)
    try:
        settings = {kind: TaskSettings() for kind in env.goal_kinds}
        settings["push"] = TaskSettings(readout_weight=1.0, readout_groups={"block": 3.0})
        weighted = Configurator(settings, env).setup("push")
        assert Configurator({**settings, "push": TaskSettings(readout_weight=1.0)}, env).setup(
            "push").cost_weights["readout_targets"] is None  # no groups named: the plain mean, as before
        settings["push"] = TaskSettings(readout_weight=1.0, readout_groups={"blok": 3.0})
        with pytest.raises(ValueError, match=r"readout_groups names \['blok'\].*'agent', 'block', 'angle'"):
            Configurator(settings, env).setup("push")
        held = Configurator({**settings, "push": TaskSettings(hold_within=0.8)}, env).setup("push")
        assert held.hold_within == 0.8 and "readout" in needs(held, {"name": "cem"})  # holding reads, with no weight
        with pytest.raises(ValueError, match="hold_within=-0.5"):
            Configurator({**settings, "push": TaskSettings(hold_within=-0.5)}, env).setup("push")
    finally:
        env.close()
    assert weighted.cost_weights["readout_targets"] == [1.0, 1.0, 3.0, 3.0, 1.0, 1.0]
    # the test readout reads K = 4 targets: plans off the goal's first pair by 20 or its second pair by 15
    z_goal, y_goal = scene(1, seed=4)
    first = torch.tanh((y_goal + torch.tensor([20.0, 20.0, 0.0, 0.0])) / 100 @ MIX)
    second = torch.tanh((y_goal + torch.tensor([0.0, 0.0, 15.0, 15.0])) / 100 @ MIX)
    z = torch.stack([first, second])[None]  # [B=1, N=2, H=1, D]
    plain = ReadoutDistance(fitted)(z, torch.zeros(1, 2, 1, 2), z_goal)
    heavy = ReadoutDistance(fitted, target_weights=[1.0, 1.0, 4.0, 4.0])(z, torch.zeros(1, 2, 1, 2), z_goal)
    assert plain[0, 0] > plain[0, 1] and heavy[0, 0] < heavy[0, 1]  # weighing the second pair reverses the choice
    with pytest.raises(ValueError, match="one per probe target"):
        ReadoutDistance(fitted, target_weights=[1.0, 3.0])(z, torch.zeros(1, 2, 1, 2), z_goal)


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="readout.rollout"):
        ReadoutConfig(rollout=-1)
    with pytest.raises(ValueError, match="readout.held_out_fraction"):
        ReadoutConfig(held_out_fraction=1.0)
