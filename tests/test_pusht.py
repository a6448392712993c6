"""The Push-T family: gym-pusht's physics unchanged under our relative actions, exact state
get/set, both success rules, the drawing, and a behaviour policy that pushes the block."""

import math

import numpy as np
import pytest
from conftest import record_behaviour_actions
from shapely.geometry import Point

import envs
from envs.pusht import PushTEnv, replay
from envs.pusht.behaviour import COG, EDGE_NORMALS, EDGE_STARTS, OUTLINE, BehaviourConfig, ScriptedPusher
from envs.pusht.draw import draw
from envs.pusht.env import TARGET_AGENT, TARGET_POSE
from envs.pusht.replay import (
    ACTION_SCALE,
    Sim,
    control_step,
    get_state,
    make_sim,
    outcome,
    pose,
    set_state,
    t_polygon,
)

SIZE = 64


@pytest.fixture
def env():
    e = PushTEnv(image_size=SIZE)
    yield e
    e.close()


def test_our_steps_are_gym_pushts_steps_toward_the_displaced_target():
    """The physics is gym-pusht's own: its env reset to a state and stepped with the absolute
    targets our relative actions name ends where ours does, bit for bit."""
    theirs = Sim(obs_type="state")
    theirs.reset(options={"reset_to_state": [200.0, 150.0, 260.0, 300.0, 0.4]})  # its own reset (steps once)
    ours = make_sim()
    set_state(ours, get_state(theirs))
    np.testing.assert_array_equal(pose(ours), pose(theirs))
    rng = np.random.default_rng(0)
    for action in rng.uniform(-1, 1, (40, 2)):
        target = np.clip(np.asarray(theirs.agent.position) + ACTION_SCALE * action, 0, 512)
        obs = theirs.step(target)[0]
        control_step(ours, action)
    np.testing.assert_array_equal(pose(ours), pose(theirs))
    assert obs[:4].tolist() == pose(ours)[:4].tolist()  # gym-pusht's own observation says the same


def test_a_held_action_moves_the_agent_at_about_80_px_per_second():
    sim = make_sim()
    set_state(sim, [100.0, 100.0, 0, 0, 400.0, 400.0, 0.0, 0, 0, 0])
    for _ in range(20):  # 2 s
        control_step(sim, [1.0, 0.0])
    x0 = sim.agent.position[0]
    for _ in range(10):  # 1 s more, at steady speed
        control_step(sim, [1.0, 0.0])
    assert sim.agent.position[0] - x0 == pytest.approx(81.4, rel=0.02)  # the PD target is 20 px ahead all along
    assert sim.agent.position[1] == pytest.approx(100.0, abs=1e-6)


def test_state_get_set_is_exact_although_pymunk_stores_the_centre_of_gravity():
    sim, rng = make_sim(), np.random.default_rng(1)
    for _ in range(500):
        state = np.concatenate([rng.uniform(20, 490, 2), rng.normal(0, 30, 2), rng.uniform(60, 450, 2),
                                rng.uniform(-20, 20, 1), rng.normal(0, 5, 2), rng.normal(0, 1, 1)])
        set_state(sim, state)
        assert get_state(sim).tolist() == state.tolist()
    # The origin pymunk reports is the CoG less the rotated offset: the T's body origin.
    set_state(sim, [0, 0, 0, 0, 300.0, 200.0, math.pi / 2, 0, 0, 0])
    assert np.allclose(pose(sim)[2:4], [300.0 + 45.0, 200.0])  # cog (0, 45) turned by 90 degrees


def test_push_success_needs_positions_within_20_px_and_the_angle_within_pi_over_9():
    goal = np.array([100.0, 100.0, 250.0, 250.0, 0.3])
    assert outcome("push", goal, goal)["success"]
    near = goal + [10, 0, 0, 10, 0]  # L2 over the four positions: 14.1
    assert outcome("push", near, goal)["success"] and outcome("push", near, goal)["distance"] == pytest.approx(200**0.5)
    assert not outcome("push", goal + [15, 0, 0, 15, 0], goal)["success"]  # 21.2 px
    assert not outcome("push", goal + [0, 0, 0, 0, math.pi / 9 + 0.01], goal)["success"]
    assert outcome("push", goal + [0, 0, 0, 0, 2 * math.pi - 0.1], goal)["success"]  # angles wrap


def test_t_success_is_coverage_of_the_target_above_95_percent():
    target = np.array([*TARGET_AGENT, *TARGET_POSE])
    at = outcome("T", np.array([0.0, 0.0, *TARGET_POSE]), target)  # the agent's place does not count
    assert at["success"] and at["distance"] == pytest.approx(0.0, abs=1e-9)
    off = outcome("T", np.array([0.0, 0.0, TARGET_POSE[0] + 10, TARGET_POSE[1], TARGET_POSE[2]]), target)
    assert not off["success"] and 0.05 < off["distance"] < 0.5


def test_the_rule_judged_from_probe_targets_is_the_rule_judged_from_poses(env):
    """probe_reached turns (agent, block centre of gravity, cos, sin) back into poses with the block's origin:
    on state pairs about the 20 px / pi/9 boundary it agrees with outcome(), and a smaller scale judges fewer,
    never one the rule rejects. Two-rooms cannot judge its rule from its probe targets and says so."""
    rng = np.random.default_rng(0)
    now, goal, truth, strict = [], [], [], []
    for _ in range(60):
        a = np.array([*rng.uniform(100, 400, 2), 0, 0, *rng.uniform(150, 350, 2), rng.uniform(-3, 3), 0, 0, 0])
        b = a + np.concatenate([rng.normal(0, 8, 2), [0, 0], rng.normal(0, 8, 2), rng.normal(0, 0.25, 1), [0, 0, 0]])
        targets, poses = [], []
        for state in (a, b):
            env.set_sim_state(state)
            targets.append(env.probe_targets())
            poses.append(pose(env.sim))
        now.append(targets[0]), goal.append(targets[1])
        truth.append(outcome("push", *poses)["success"])
        strict.append(outcome("push", *poses, scale=0.5)["success"])
    judged = env.probe_reached("push", np.array(now), np.array(goal), 1.0)
    assert 10 < sum(truth) < 50  # both sides of the boundary are tried
    assert judged.tolist() == truth
    half = env.probe_reached("push", np.array(now), np.array(goal), 0.5)
    assert half.tolist() == strict and sum(half) < sum(truth) and not np.any(half & ~judged)
    rooms = envs.make("two-rooms")
    with pytest.raises(ValueError, match="hold_within=0"):
        rooms.probe_reached("rooms", np.zeros((1, 2)), np.zeros((1, 2)), 1.0)
    rooms.close()


def test_any_step_success_when_the_goal_is_passed_and_left(env):
    """The agent sweeps through its goal position with the block untouched: the push rule holds
    for a moment (any step) but not at the end; env and replay agree on both."""
    from agent.episode_record import make_record
    from envs import EpisodeSpec

    start = [100.0, 100.0, 0, 0, 400.0, 400.0, 0.0, 0, 0, 0]
    env.reset(seed=0, options={"goal_kind": "push", "start_state": start})
    goal = pose(env.sim) + [60.0, 0, 0, 0, 0]  # the agent 60 px to the right, the block as it is
    options = {"goal_kind": "push", "start_state": start, "goal": goal.tolist()}
    env.reset(seed=0, options=options)
    assert not env.reached()
    for _ in range(10):
        env.step(np.array([1.0, 0.0]))
    assert env.reached() and not env.evaluate()["success"]
    record = make_record(EpisodeSpec("pusht", "push", 0, options, 50), env, np.tile([1.0, 0.0], (10, 1)),
                         np.zeros(10), "test", 0.0)
    assert record["success_any"] and not record["success"]
    again = replay(record)
    assert again["success_any"] and not again["success"] and again["final_state"] == record["final_state"]


def test_frames_show_the_block_and_agent_and_follow_sub_pixel_moves():
    p = np.array([100.0, 400.0, 256.0, 256.0, 0.0])
    frame = draw(p, SIZE)
    blue = (frame[..., 2] > 180) & (frame[..., 0] < 120)
    rows, cols = np.nonzero(blue)
    assert abs(cols.mean() - 100 / 8) < 1 and abs(rows.mean() - 400 / 8) < 1  # image x, y = board x, y / 8
    grey = (np.abs(frame.astype(int) - [119, 136, 153]).sum(-1) < 30)
    assert 60 < grey.sum() < 110  # the T: 120 x 30 + 30 x 90 board px = 98 px of a 64 px frame
    moved = draw(p + [0, 0, 4.0, 0, 0], SIZE)  # half a pixel
    assert np.abs(moved.astype(int) - frame).sum() > 500
    assert draw(p, SIZE).tolist() == frame.tolist()  # deterministic


def test_the_goal_image_is_the_goal_pose_drawn_in_the_same_scene(env):
    obs, _ = env.reset(seed=3, options={"goal_kind": "T"})
    np.testing.assert_array_equal(obs["goal"], draw(np.array([*TARGET_AGENT, *TARGET_POSE]), SIZE))
    spec = env.sample_episode("push", np.random.default_rng(0))
    obs, _ = env.reset(seed=spec.seed, options=spec.options)
    np.testing.assert_array_equal(obs["goal"], draw(np.asarray(spec.options["goal"]), SIZE))
    np.testing.assert_array_equal(obs["pixels"], env.render_sim_state(np.asarray(spec.options["start_state"])))


def test_push_goals_are_where_replaying_the_behaviour_leads(env, monkeypatch):
    actions = record_behaviour_actions(env, monkeypatch)
    spec = env.sample_episode("push", np.random.default_rng(2))
    goal_actions = actions[-25 // env.action_repeat:]
    assert 4 + 5 <= len(actions) <= 20 + 5 and spec.budget == 50
    assert np.array_equal(spec.previous_action, actions[-6])  # the action that led to the start
    _, info = env.reset(seed=spec.seed, options=spec.options)
    assert not info["success"]
    for action in goal_actions:
        *_, info = env.step(action)
    assert pose(env.sim).tolist() == spec.options["goal"] and info["success"]


def test_the_outline_normals_point_out_of_the_t():
    t = t_polygon(np.array([0, 0, 0, 0, 0.0]))
    ends = np.roll(OUTLINE, -1, axis=0)
    for start, end, normal in zip(EDGE_STARTS, ends, EDGE_NORMALS):
        middle = (start + end) / 2
        assert not t.contains(Point(*(middle + 2 * normal))) and t.contains(Point(*(middle - 2 * normal)))
    assert tuple(PushTEnv(image_size=32).sim.block.center_of_gravity) == tuple(COG)  # gym-pusht's, which the pusher circles


def test_the_scripted_pusher_moves_the_block_further_than_random_actions(env):
    moved = {"pusher": 0, "random": 0}
    for i in range(6):
        for who in moved:
            rng = np.random.default_rng([9, i])
            obs, _ = env.reset(seed=i)
            policy = env.behaviour_policy(rng) if who == "pusher" else None
            block = obs["proprio"][2:5].copy()
            for _ in range(60):
                action = policy.act(obs) if policy else rng.uniform(-1, 1, 2)
                obs = env.step(action)[0]
            moved[who] += float(np.linalg.norm(obs["proprio"][2:4] - block[:2]))
    assert moved["pusher"] > 2 * moved["random"] and moved["pusher"] / 6 > 80  # px per episode (measured 122 vs 42)


def test_bad_settings_and_options_are_refused(env):
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"goal_pos": [1, 2]})
    with pytest.raises(ValueError, match="goal must be 5 finite numbers"):
        env.reset(options={"goal": [1, 2]})
    with pytest.raises(ValueError, match="push_fraction"):
        ScriptedPusher(BehaviourConfig(push_fraction=2.0), np.random.default_rng(0))
    with pytest.raises(ValueError, match="behaviour settings"):
        env.behaviour_policy(np.random.default_rng(0), speeed=[0, 1])
    with pytest.raises(ValueError, match="finite"):
        env.reset(seed=0)
        env.step(np.array([np.nan, 0.0]))
    fresh = envs.make("pusht", image_size=32)
    with pytest.raises(RuntimeError, match="reset"):
        fresh.step(np.zeros(2))
    assert not fresh.evaluate()["success"]
