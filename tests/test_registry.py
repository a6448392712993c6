"""Every registered env keeps the contract of envs/base.py (as dm_control's suite tests check
every task): gymnasium's checker, seeded determinism, bit-exact replay of records with the
simulator alone, episodes of every goal kind, state get/set, probe targets."""

import dataclasses
import json

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from agent.episode import run_episodes
from agent.episode_record import replay_matches
from agent.policies import RandomPolicy, ZeroPolicy
from agent.protocols import make_episodes
from envs.base import GoalEnv, probe_names

NAMES = sorted(envs.REGISTRY)


@pytest.fixture(params=NAMES)
def env(request):
    e = envs.make(request.param, image_size=32)
    yield e
    e.close()


@pytest.mark.parametrize("name", NAMES)
def test_passes_gymnasium_checker(name):
    e = envs.make(name, image_size=32, render_mode="rgb_array")
    check_env(e, skip_render_check=False)
    e.close()


def test_declares_the_interface(env):
    assert isinstance(env, GoalEnv) and env.name in envs.REGISTRY
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == obs["goal"].shape == (32, 32, 3) == (env.image_size, env.image_size, 3)
    assert {"success", "distance"} <= set(info) and isinstance(info["success"], bool)
    assert env.probe_targets().shape == (len(probe_names(env.probe_groups)),)
    assert env.goal_kinds and all(k.budget % env.action_repeat == 0 for k in env.goal_kinds.values())
    assert 0 < env.control_timestep < 1  # seconds per control step: the videos' real-time rate


def test_same_seed_same_frames_other_seed_other_frames(env):
    other = envs.make(env.name, image_size=32)
    a, _ = env.reset(seed=5)
    b, _ = other.reset(seed=5)
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    for action in np.random.default_rng(0).uniform(env.action_space.low, env.action_space.high, (4, *env.action_space.shape)):
        a = env.step(action)[0]
        b = other.step(action)[0]
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    np.testing.assert_array_equal(env.get_sim_state(), other.get_sim_state())
    c, _ = other.reset(seed=6)
    assert not np.array_equal(env.reset(seed=5)[0]["pixels"], c["pixels"])
    other.close()


def test_sim_state_round_trip_and_render_without_side_effects(env):
    env.reset(seed=1)
    for _ in range(3):
        env.step(env.action_space.sample())
    state, frame = env.get_sim_state(), env.render_sim_state(env.get_sim_state())
    env.step(env.action_space.high)
    moved = env.get_sim_state()
    again = env.render_sim_state(state)
    np.testing.assert_array_equal(env.get_sim_state(), moved)  # rendering a state changes nothing
    np.testing.assert_array_equal(again, frame)
    env.set_sim_state(state)
    np.testing.assert_array_equal(env.get_sim_state(), state)


def test_episodes_of_every_goal_kind_are_reproducible_and_json(env):
    for kind, spec in env.goal_kinds.items():
        episodes = make_episodes(env, kind, 2, seed=3)
        assert episodes == make_episodes(env, kind, 2, seed=3)
        assert episodes[0] != episodes[1] and all(e.budget == spec.budget and e.goal_kind == kind for e in episodes)
        json.dumps([dataclasses.asdict(e) for e in episodes])


@pytest.mark.parametrize("policy", [RandomPolicy, ZeroPolicy])
def test_records_replay_bit_exactly_with_the_simulator_alone(env, policy):
    for kind in env.goal_kinds:
        spec = make_episodes(env, kind, 1, seed=4)[0]
        (record,), _ = run_episodes([env], [spec], policy())
        assert len(record["actions"]) == spec.budget  # one action per control step
        assert record["final_state"] == env.get_sim_state().tolist()
        assert replay_matches(record), f"{env.name}/{kind}: replay differs"
        tampered = dict(record, actions=[list(np.asarray(a) * 0.5 + 0.1) for a in record["actions"]])
        assert not replay_matches(tampered)  # the check is not vacuous
        assert not replay_matches(dict(record, success_any=not record["success_any"]))  # both rules are checked
        assert record["success_any"] or not record["success"]  # success at the end is success at a step



def test_a_record_re_simulates_one_control_step_at_a_time_at_another_size(env):
    """What a video does (agent/video.py): the same family at its own frame size, action_repeat
    1, stepped through the record's control-step actions, ends in the recorded state."""
    kind = next(iter(env.goal_kinds))
    (record,), _ = run_episodes([env], make_episodes(env, kind, 1, seed=2), RandomPolicy())
    view = envs.make(env.name, image_size=48, action_repeat=1)
    obs, _ = view.reset(seed=record["seed"], options=record["options"])
    assert obs["pixels"].shape == obs["goal"].shape == (48, 48, 3)
    for action in record["actions"]:
        view.step(np.asarray(action))
    assert view.get_sim_state().tolist() == record["final_state"]
    view.close()
