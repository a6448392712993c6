"""The environment contract: gymnasium API, determinism, exact replay, goals and success."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.reacher.goals import JOINT_TOLERANCE, fingertip_xy, joint_errors, reach_qpos

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env():
    e = envs.make("reacher", image_size=32, action_repeat=5)
    yield e
    e.close()


def test_passes_gymnasium_checker():
    e = envs.make("reacher", image_size=32, render_mode="rgb_array")
    check_env(e, skip_render_check=False)
    e.close()


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=re.escape("valid names: " + ", ".join(envs.names()))):  # every registered one
        envs.make("reacher-easy")
    with pytest.raises(ValueError, match="no setting"):
        envs.make("reacher", imagesize=32)


def test_shadows_are_a_rendering_choice_only(env):
    shaded = envs.make("reacher", image_size=32, action_repeat=5, shadows=True)
    a, _ = env.reset(seed=3)
    b, _ = shaded.reset(seed=3)
    assert not np.array_equal(a["pixels"], b["pixels"])  # the flag reaches the renderer
    np.testing.assert_array_equal(env.get_physics_state(), shaded.get_physics_state())
    for action in np.random.default_rng(1).uniform(-1, 1, (3, 2)):
        env.step(action)
        shaded.step(action)
    np.testing.assert_array_equal(env.get_physics_state(), shaded.get_physics_state())
    shaded.close()


def test_a_lower_camera_shows_the_arm_larger_and_in_full():
    """camera_height moves dm_control's fixed top camera: at 0.64 m the outstretched arm spans more pixels
    than at dm_control's 0.75 m and still ends inside the frame; a height that would cut it off is refused."""
    def arm_columns(height: float) -> tuple[int, int]:
        env = envs.make("reacher", image_size=64, camera_height=height)
        env.reset(seed=0)
        frame = env.render_qpos(np.array([0.0, 0.0])).astype(int)  # arm along +x from the frame's centre
        env.close()
        row = frame[frame.shape[0] // 2 - 3: frame.shape[0] // 2 + 4]
        xs = np.nonzero(((row[..., 0] - row[..., 2]) > 80).any(0))[0]  # the arm's yellow: red far above blue
        return int(xs.min()), int(xs.max())

    (_, far), (_, far_low) = arm_columns(0.75), arm_columns(0.64)
    assert far_low > far + 3 and far_low < 63
    with pytest.raises(ValueError, match="camera_height=0.5 m"):
        envs.make("reacher", camera_height=0.5)


def test_shapes_and_dtypes(env):
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == obs["goal"].shape == (32, 32, 3)
    assert obs["pixels"].dtype == obs["goal"].dtype == np.uint8
    assert obs["proprio"].shape == (4,) and obs["proprio"].dtype == np.float32
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float) and not terminated and not truncated
    assert {"success", "distance", "fingertip_distance", "max_joint_error"} <= set(info)
    assert info["distance"] == info["fingertip_distance"]  # the default goal kind is the task
    assert env.get_sim_state().shape == (6,) and env.probe_targets().shape == (6,)


def test_same_seed_same_frames_other_seed_other_frames(env):
    other = envs.make("reacher", image_size=32, action_repeat=5)
    c, _ = other.reset(seed=8)
    a, _ = env.reset(seed=7)
    b, _ = other.reset(seed=7)
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    np.testing.assert_array_equal(a["goal"], b["goal"])
    assert not np.array_equal(a["pixels"], c["pixels"])
    for action in np.random.default_rng(0).uniform(-1, 1, (5, 2)):
        a, *_ = env.step(action)
        b, *_ = other.step(action)
        np.testing.assert_array_equal(a["pixels"], b["pixels"])
    other.close()


def test_time_limit_truncates():
    e = envs.make("reacher", image_size=16, action_repeat=5, time_limit=20)
    e.reset(seed=0)
    truncations = [e.step(np.zeros(2))[3] for _ in range(4)]
    assert truncations == [False, False, False, True]
    e.close()


def _run(env, actions):
    for action in actions:
        env.step(action)
    return env.get_physics_state()


def test_replay_from_start_state_is_exact(env):
    env.reset(seed=3)
    for action in np.random.default_rng(1).uniform(-1, 1, (7, 2)):  # start mid-motion
        env.step(action)
    start, target, sim_state = env.get_physics_state(), env.target_pos, env.get_sim_state()
    np.testing.assert_array_equal(sim_state, np.r_[start, target])  # [6]: physics state, then target x, y
    actions = np.random.default_rng(2).uniform(-1, 1, (30, 2))
    final = _run(env, actions)

    fresh = envs.make("reacher", image_size=32, action_repeat=5)
    fresh.reset(seed=99, options={"physics_state": start, "target_pos": target})
    np.testing.assert_array_equal(fresh.target_pos, target)
    assert np.array_equal(_run(fresh, actions), final)  # bit for bit
    # set_sim_state is the same full state: the same replay, bit for bit
    fresh.reset(seed=98)
    fresh.set_sim_state(sim_state)
    np.testing.assert_array_equal(fresh.get_sim_state(), sim_state)
    assert np.array_equal(_run(fresh, actions), final)
    with pytest.raises(ValueError, match="6 numbers"):
        fresh.set_sim_state(start)
    fresh.close()


def test_replay_in_plain_dm_control(env):
    """A record (start state, target, per-control-step actions) replays without this project."""
    from dm_control import suite

    env.reset(seed=5)
    start, target = env.get_physics_state(), env.target_pos
    actions = np.random.default_rng(3).uniform(-1, 1, (10, 2))
    final = _run(env, actions)

    dm_env = suite.load("reacher", "easy", task_kwargs={"random": 0})
    dm_env.reset()
    with dm_env.physics.reset_context():
        dm_env.physics.set_state(start)
        dm_env.physics.named.model.geom_pos["target", "x"] = target[0]
        dm_env.physics.named.model.geom_pos["target", "y"] = target[1]
    for action in np.repeat(actions, env.action_repeat, axis=0):  # one per control step
        dm_env.step(action)
    assert np.array_equal(dm_env.physics.get_state(), final)
    fingertip_to_target = np.linalg.norm(dm_env.physics.finger_to_target())
    assert fingertip_to_target == pytest.approx(env.evaluate()["fingertip_distance"], abs=1e-12)


def test_forward_kinematics_matches_simulator(env):
    for seed in range(5):
        env.reset(seed=seed)
        np.testing.assert_allclose(fingertip_xy(env.qpos), env.fingertip(), atol=1e-9)


def test_probe_targets_follow_the_env_kinematics(env):
    """probe_targets() is sin/cos of each joint, then the fingertip x, y in metres, in probe_groups order."""
    assert [n for names in env.probe_groups.values() for n in names] == [
        "sin_shoulder", "cos_shoulder", "sin_wrist", "cos_wrist", "tip_x", "tip_y"]
    env.reset(seed=0)
    target = env.target_pos
    qpos = np.array([[0.0, 0.0], [np.pi / 2, 0.0], [0.3, -1.2]])
    targets = []
    for q in qpos:
        env.set_sim_state(np.r_[q, 0.0, 0.0, target])
        targets.append(env.probe_targets())
        np.testing.assert_allclose(targets[-1][4:], env.fingertip(), atol=1e-6)  # the simulator's own fingertip
    targets = np.stack(targets)
    assert targets.shape == (3, 6) and targets.dtype == np.float32
    np.testing.assert_allclose(targets[0, 4:], [0.24, 0.0], atol=1e-6)
    np.testing.assert_allclose(targets[:, 4:], fingertip_xy(qpos), atol=1e-6)
    np.testing.assert_allclose(targets[2, :4], [np.sin(0.3), np.cos(0.3), np.sin(-1.2), np.cos(-1.2)], atol=1e-6)


def test_joint_errors_wrap_around_the_circle():
    goal = np.array([np.pi - 0.01, 0.0])
    np.testing.assert_allclose(joint_errors(np.array([-np.pi + 0.02, 0.03]), goal), [0.03, 0.03], atol=1e-12)
    np.testing.assert_allclose(joint_errors(np.array([np.pi - 0.01 + 4 * np.pi, 0.0]), goal), [0, 0], atol=1e-9)


def test_state_goal_success_on_constructed_states(env):
    goal = np.array([np.pi - 0.01, 0.5])
    env.reset(seed=0, options={"goal_kind": "state", "goal_qpos": goal})
    target = env.target_pos
    cases = [
        ([-np.pi + 0.02, 0.5 + 0.04], True),  # shoulder 0.03 rad away across the +-pi seam
        ([-np.pi + 0.05, 0.5], False),  # 0.06 rad across the seam
        ([np.pi - 0.01, 0.5 - JOINT_TOLERANCE - 1e-3], False),
        ([np.pi - 0.01 + 2 * np.pi, 0.5], True),  # a full extra turn is the same pose
    ]
    for qpos, expected in cases:
        env.set_sim_state(np.r_[qpos, 0.0, 0.0, target])
        info = env.evaluate()
        assert info["success"] is expected, qpos
        assert info["distance"] == info["max_joint_error"]  # a state goal's distance is the joint error


def test_state_goal_needs_qpos_and_renders_that_pose(env):
    with pytest.raises(ValueError, match="goal_qpos"):
        env.reset(seed=0, options={"goal_kind": "state"})
    goal = np.array([1.0, -0.5])
    obs, info = env.reset(seed=0, options={"goal_kind": "state", "goal_qpos": goal})
    np.testing.assert_array_equal(obs["goal"], env.render_qpos(goal))
    assert not info["success"]


@pytest.mark.parametrize("goal_kind", ["state", "task"])
def test_the_rule_judged_from_probe_targets_is_the_rule_of_evaluate(env, goal_kind):
    """probe_reached reads the joints back from their sin and cos (shoulder across the +-pi seam included) and
    the fingertip from its x, y: on pose pairs about the tolerance it agrees with evaluate(), and half the
    tolerance judges fewer pairs, never one the rule rejects."""
    rng = np.random.default_rng(1)
    now, goal, truth, strict = [], [], [], []
    for _ in range(80):
        q_goal = np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-2.0, 2.0)])
        q_now = q_goal + rng.normal(0, 0.045 if goal_kind == "state" else 0.2, 2)
        env.reset(seed=0, options={"goal_kind": "state", "goal_qpos": q_goal} if goal_kind == "state" else
                  {"goal_kind": "task", "target_pos": fingertip_xy(q_goal)})  # the fingertip of the goal pose
        env.set_sim_state(np.r_[q_goal, 0.0, 0.0, env.target_pos])
        goal.append(env.probe_targets())
        env.set_sim_state(np.r_[q_now, 0.0, 0.0, env.target_pos])
        now.append(env.probe_targets())
        truth.append(env.evaluate()["success"])
        distance = env.evaluate()["distance"]
        strict.append(distance <= (JOINT_TOLERANCE if goal_kind == "state" else env.success_radius) / 2)
    judged = env.probe_reached(goal_kind, np.array(now), np.array(goal), 1.0)
    assert 10 < sum(truth) < 70  # both sides of the boundary are tried
    assert judged.tolist() == truth
    half = env.probe_reached(goal_kind, np.array(now), np.array(goal), 0.5)
    assert half.tolist() == strict and sum(half) < sum(truth) and not np.any(half & ~judged)


@pytest.mark.parametrize("name, radius", [("reacher", 0.06), ("reacher-hard", 0.025)])
def test_task_goal_success_is_the_task_reward_criterion(name, radius):
    e = envs.make(name, image_size=16)
    obs, _ = e.reset(seed=4, options={"goal_kind": "task"})
    target = e.target_pos
    # The goal image is the arm posed by inverse kinematics with the fingertip on the target.
    np.testing.assert_allclose(fingertip_xy(e.goal_qpos), target, atol=1e-9)
    np.testing.assert_array_equal(obs["goal"], e.render_qpos(e.goal_qpos))
    assert e.success_radius == pytest.approx(radius)
    # Fingertip exactly on the target, then just inside and just outside the radius.
    e.set_sim_state(np.r_[e.goal_qpos, 0.0, 0.0, target])
    assert e.evaluate()["success"]
    sideways = np.array([-target[1], target[0]]) / np.linalg.norm(target)  # stays within reach
    for offset, expected in [(radius - 2e-3, True), (radius + 2e-3, False)]:
        beside = target + offset * sideways
        e.set_sim_state(np.r_[reach_qpos(beside, e.qpos, e.wrist_range), 0.0, 0.0, target])
        assert e.evaluate()["success"] is expected
        assert e.evaluate()["fingertip_distance"] == pytest.approx(offset, abs=1e-9)
        assert e.evaluate()["distance"] == e.evaluate()["fingertip_distance"]
    e.close()


def test_task_goal_keeps_the_fold_side_the_wrist_can_reach_directly():
    # Folded hard to one side, the arm must not be sent to the mirror fold: the wrist is limited
    # and would swing ~5 rad through straight, although the angles differ by ~1.2 rad mod 2 pi.
    start = np.array([-3.12, -2.69])
    target = fingertip_xy(np.array([-0.69, -2.39]))
    goal = reach_qpos(target, near=start, wrist_range=(-2.79, 2.79))
    np.testing.assert_allclose(fingertip_xy(goal), target, atol=1e-9)
    assert goal[1] < 0
    # An open arm goes to whichever fold is less total travel, shoulder counted on the circle.
    near = np.array([np.pi - 0.1, 0.2])
    goal = reach_qpos(fingertip_xy(np.array([-np.pi + 0.3, 1.0])), near=near, wrist_range=(-2.79, 2.79))
    np.testing.assert_allclose(goal, [-np.pi + 0.3, 1.0], atol=1e-9)


def test_unreachable_target_is_refused(env):
    with pytest.raises(ValueError, match="out of the arm's reach"):
        env.reset(seed=0, options={"target_pos": [0.3, 0.2]})


def test_bad_simulator_pair_gives_one_clear_line(monkeypatch):
    from importlib import metadata

    from envs import _versions

    real = metadata.version
    monkeypatch.setattr(_versions.metadata, "version", lambda n: "4.0.0" if n == "mujoco" else real(n))
    with pytest.raises(ImportError, match=r"pip install mujoco==3\.17\.0"):
        _versions.check_simulator_versions()


def test_gl_failure_says_what_to_set(monkeypatch):
    import mujoco

    from envs import _gl
    from envs._gl import RenderingUnavailable

    def broken(*args, **kwargs):
        raise RuntimeError("eglInitialize failed")

    monkeypatch.setattr(mujoco, "Renderer", broken)
    monkeypatch.setattr(_gl, "_shared", {})  # no renderer open that the env could share
    e = envs.make("reacher", image_size=16)
    with pytest.raises(RenderingUnavailable, match="MUJOCO_GL"):
        e.reset(seed=0)


def _with_gl(backend: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": backend, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.parametrize("backend", ["bogus", "disable"])
def test_help_works_whatever_mujoco_gl_says(backend):
    done = _with_gl(backend, ["agent.run", "--help"])
    assert done.returncode == 0 and "Powered by Hydra" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("backend, line", [
    ("bogus", "MUJOCO_GL='bogus' is not a rendering backend; set MUJOCO_GL to one of egl, osmesa, glfw"),
    ("disable", ("MUJOCO_GL=disable turns rendering off, but every env renders its observations; rendering is "
                 "needed here: on a headless Linux machine install EGL (Debian/Ubuntu: `apt-get install libegl1 "
                 "libgl1`) and set MUJOCO_GL=egl, or install OSMesa (`apt-get install libosmesa6`) and set "
                 "MUJOCO_GL=osmesa")),
])
def test_collecting_without_a_rendering_backend_says_what_to_set(backend, line, tmp_path):
    done = _with_gl(backend, ["agent.collect", "env=reacher", "env.image_size=16", "data.episodes=1", "data.steps=2",
                              "data.workers=1", f"data.out={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'hydra'}"])
    assert done.returncode != 0 and line in done.stderr, done.stderr[-2000:]
    assert "set MUJOCO_GL=disable" not in done.stderr  # it used to suggest the very value that failed
    assert not (tmp_path / "data").exists()  # refused before anything was written
