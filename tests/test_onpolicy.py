"""The planner's own episodes as video (agent/onpolicy.py): a record is re-simulated into the rows a
dataset holds, frame for state, and one that does not end where it says is refused; bad settings
are refused in one line. The whole stage through agent.run: tests/test_fake_env.py."""

import numpy as np
import pytest

from agent.episode_record import make_record
from agent.onpolicy import OnPolicyConfig, replayed_episode
from agent.protocols import ONPOLICY_STREAM, make_episodes
from envs.pusht import PushTEnv


def test_a_record_is_re_simulated_into_dataset_rows_frame_for_state():
    env = PushTEnv(image_size=32)
    spec = make_episodes(env, "push", 1, seed=0, stream=ONPOLICY_STREAM)[0]
    env.reset(seed=spec.seed, options=spec.options)
    actions = np.random.default_rng(0).uniform(-1, 1, (spec.budget // env.action_repeat, 2)).astype(np.float32)
    for action in actions:
        env.step(action)
    record = make_record(spec, env, actions, np.zeros(len(actions)), "planner", 0.0)
    rows = replayed_episode(PushTEnv(image_size=32), record)
    assert rows["frames"].shape == (len(actions) + 1, 32, 32, 3) and rows["probe"].shape == (len(actions) + 1, 6)
    assert np.array_equal(rows["actions"][:-1], actions) and not rows["actions"][-1].any()
    assert np.array_equal(rows["states"][-1], record["final_state"])
    assert all(np.array_equal(frame, env.render_sim_state(state)) for frame, state in zip(rows["frames"], rows["states"]))
    assert not np.array_equal(rows["frames"][0], rows["frames"][-1])  # the random pushes moved the agent
    record["final_state"][0] += 1e-9  # one that does not end where it says
    with pytest.raises(ValueError, match="does not replay"):
        replayed_episode(PushTEnv(image_size=32), record)


def test_on_policy_episodes_are_drawn_apart_from_evaluation_episodes():
    env = PushTEnv(image_size=32)
    played = make_episodes(env, "push", 3, seed=0, stream=ONPOLICY_STREAM)
    evaluated = make_episodes(env, "push", 3, seed=0)
    assert all(p.options["start_state"] != e.options["start_state"] for p in played for e in evaluated)


@pytest.mark.parametrize("bad", [{"episodes": -1}, {"steps": 0}, {"lr": 0.0}, {"fraction": 0.0}, {"fraction": 1.5},
                                 {"episodes_per_shard": 0}, {"warmup_steps": -1}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="onpolicy"):
        OnPolicyConfig(**bad)
