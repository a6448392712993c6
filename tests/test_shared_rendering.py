"""Envs of one model file and frame size share one offscreen renderer (envs/_gl.py), and every
frame they render, observations and goal images alike, is byte for byte the frame a renderer of
the env's own model draws (what each env made for itself before)."""

import mujoco
import numpy as np
import pytest

import envs
from agent.protocols import make_episodes
from envs import _gl

SIZE = 32
# The families that render through envs/_gl.py's shared MuJoCo renderer (Push-T draws with OpenCV).
NAMES = sorted(n for n in envs.REGISTRY if hasattr(envs.REGISTRY[n][0], "_render_data"))


def _scene(env, which: str):
    """(model, data, camera, scene flags) an env of this family renders `which` ("pixels": the
    simulated state; "pose": the second MjData its goal images and render_sim_state pose)."""
    off = {mujoco.mjtRndFlag.mjRND_SHADOW: False, mujoco.mjtRndFlag.mjRND_REFLECTION: False}
    if hasattr(env, "physics"):  # the reacher family
        data = env.physics.data.ptr if which == "pixels" else env._goal_data
        flags = {flag: env.shadows for flag in off}
        return env.physics.model.ptr, data, "fixed", flags
    return env.model, env.data if which == "pixels" else env._pose_data, "top", off


class OwnRenderer:
    """The renderer each env made for itself before sharing: mujoco.Renderer on the env's model."""

    def __init__(self, env):
        model, _, self.camera, flags = _scene(env, "pixels")
        self.renderer = mujoco.Renderer(model, env.image_size, env.image_size)
        for flag, on in flags.items():
            self.renderer.scene.flags[flag] = on

    def frame(self, env, which: str) -> np.ndarray:
        model, data, camera, _ = _scene(env, which)
        assert model is self.renderer.model
        self.renderer.update_scene(data, camera=camera)
        return self.renderer.render()

    def close(self):
        _gl.close_renderer(self.renderer)


# Each batch shares one renderer; reacher and reacher-hard differ in their models (the target's
# size), which each render must draw from the env's own model.
BATCHES = {name: [name] * 3 for name in NAMES} | {"reacher+reacher-hard": ["reacher", "reacher-hard", "reacher"]}


@pytest.mark.parametrize("names", BATCHES.values(), ids=BATCHES.keys())
def test_shared_frames_are_those_of_each_envs_own_renderer(names):
    batch = [envs.make(name, image_size=SIZE) for name in names]
    own = []
    try:
        kinds = list(batch[0].goal_kinds)
        specs = [make_episodes(batch[0], kind, 2, seed=11) for kind in kinds]
        specs = [specs[i % len(kinds)][i // len(kinds)] for i in range(len(batch))]  # different goals and targets
        first = [env.reset(seed=s.seed, options=s.options)[0] for env, s in zip(batch, specs)]
        assert len({id(env._renderer) for env in batch}) == 1  # one renderer for the batch
        own = [OwnRenderer(env) for env in batch]  # after the first render: its model settings are in place
        if hasattr(batch[0], "target_pos"):  # the goal images depend on each env's own target
            assert len({tuple(env.target_pos) for env in batch}) == len(batch)
        goals = [o["goal"] for o in first]
        for env, mine, obs in zip(batch, own, first):
            np.testing.assert_array_equal(obs["pixels"], mine.frame(env, "pixels"))
        for env, mine, goal in zip(batch, own, goals):
            # the goal image again, now that every env has rendered in between: pose data to the goal
            env.render_sim_state(np.asarray(env.get_sim_state()))  # re-poses the pose data ...
            if hasattr(env, "render_qpos"):
                again = env.render_qpos(env.goal_qpos)
            else:
                again = env.render_position(env.goal_pos)
            np.testing.assert_array_equal(again, goal)  # ... and the goal is drawn as at reset
            np.testing.assert_array_equal(goal, mine.frame(env, "pose"))
        assert len({o["goal"].tobytes() for o in first}) == len(batch)  # the check is not vacuous
        rng = np.random.default_rng(0)
        for _ in range(3):  # stepped in lockstep, as the evaluation does
            for env, mine in zip(batch, own):
                obs = env.step(rng.uniform(env.action_space.low, env.action_space.high))[0]
                np.testing.assert_array_equal(obs["pixels"], mine.frame(env, "pixels"))
                posed = env.render_sim_state(env.get_sim_state())  # through the pose data
                np.testing.assert_array_equal(posed, mine.frame(env, "pose"))
    finally:
        for mine in own:
            mine.close()
        for env in batch:
            env.close()


def test_the_renderer_is_released_by_the_last_holder_and_made_again():
    batch = [envs.make("two-rooms", image_size=SIZE) for _ in range(3)]
    frames = [env.reset(seed=1)[0]["pixels"] for env in batch]
    shared = batch[0]._renderer
    assert shared.holders == 3 and shared.key in _gl._shared
    batch[0].close()
    batch[1].close()
    np.testing.assert_array_equal(batch[2].reset(seed=1)[0]["pixels"], frames[2])  # still open for the last
    batch[2].close()
    assert shared.key not in _gl._shared  # closed with its last holder
    again = envs.make("two-rooms", image_size=SIZE)
    np.testing.assert_array_equal(again.reset(seed=1)[0]["pixels"], frames[0])  # a new one, the same frames
    assert again._renderer is not shared
    again.close()


def test_the_skybox_the_reacher_leaves_out_is_never_in_its_cameras_view():
    """The reacher draws without dm_control's skybox (cheaper frames); its own renderer, which draws
    it, gives the same frames at 64 px, at poses over the whole joint range and targets anywhere."""
    env = envs.make("reacher", image_size=64)
    env.reset(seed=0)
    own = OwnRenderer(env)
    try:
        assert own.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX]
        rng = np.random.default_rng(0)
        for _ in range(20):
            env.reset(seed=int(rng.integers(1 << 30)))
            ours = env.render_qpos(np.array([rng.uniform(-np.pi, np.pi), rng.uniform(*env.wrist_range)]))
            np.testing.assert_array_equal(ours, own.frame(env, "pose"))
    finally:
        own.close()
        env.close()


def test_other_sizes_and_looks_get_their_own_renderer():
    a, b, c = (envs.make("reacher", image_size=SIZE), envs.make("reacher", image_size=SIZE + 8),
               envs.make("reacher", image_size=SIZE, shadows=True))
    for env in (a, b, c):
        env.reset(seed=0)
    assert len({id(a._renderer), id(b._renderer), id(c._renderer)}) == 3
    for env in (a, b, c):
        env.close()


def test_a_renderer_closed_while_another_is_current_leaves_the_other_intact():
    """Renderer.close frees GL objects in whichever context is current: closing one renderer after
    another rendered freed the other's framebuffers, and its next frames came out wrong."""
    small, large = envs.make("reacher", image_size=SIZE), envs.make("reacher", image_size=SIZE + 8)
    small.reset(seed=2)
    before = large.reset(seed=2)[0]["pixels"]  # large's context is current now
    small.close()  # closes the 32 px renderer, its last holder
    np.testing.assert_array_equal(large.reset(seed=2)[0]["pixels"], before)
    large.close()
