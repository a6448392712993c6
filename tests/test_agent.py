"""The agent: evaluation episodes, records that replay in plain dm_control, reports, and an end-to-end smoke run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from agent.configurator import Configurator, TaskSettings
from agent.costs import ActionSmoothness, GoalEnergy, aim, build_cost
from agent.episode import run_episodes
from agent.episode_record import replay_matches
from agent.eval_summary import summarize, wilson_interval
from agent.policies import RandomPolicy, ZeroPolicy
from agent.protocols import make_episodes
from envs.reacher.goals import joint_errors

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env_batch():
    batch = [envs.make("reacher", image_size=16, action_repeat=5) for _ in range(3)]
    yield batch
    for e in batch:
        e.close()


def test_state_goal_episodes_follow_the_protocol(env_batch):
    specs = make_episodes(env_batch[0], "state", 3, seed=0)
    assert [s.budget for s in specs] == [50] * 3 and all(s.goal_kind == "state" for s in specs)
    assert all(s.env == "reacher" for s in specs)
    assert specs[0].seed != specs[1].seed
    assert make_episodes(env_batch[0], "state", 3, seed=0) == specs  # reproducible
    assert [s.budget for s in make_episodes(env_batch[0], "state", 3, seed=0, budget=20)] == [20] * 3
    for spec in specs:
        start = np.asarray(spec.options["physics_state"])
        # mid-motion start, and the goal is a real pose some way along the trajectory
        assert np.abs(start[2:]).max() > 0
        assert np.abs(joint_errors(start[:2], spec.options["goal_qpos"])).max() > 0
        # the sim state one decision before the start ([6]: physics state, target) and the action from it
        assert len(spec.previous_state) == 6 and len(spec.previous_action) == 2
        assert spec.previous_state[4:] == spec.options["target_pos"]
    with pytest.raises(ValueError, match="unknown goal kind 'joints'"):
        make_episodes(env_batch[0], "joints", 1, seed=0)


def test_records_replay_in_plain_dm_control(env_batch):
    specs = make_episodes(env_batch[0], "state", 2, seed=1)
    records, traces = run_episodes(env_batch, specs, RandomPolicy(seed=0), keep_frames=1)
    assert len(traces) == 1 and len(traces[0]) == 10  # one entry per decision of the kept episode
    for record, env in zip(records, env_batch):
        assert len(record["actions"]) == 50  # one per control step
        assert record["final_state"] == env.get_sim_state().tolist() and len(record["final_state"]) == 6
        assert record["final_distance"] == record["distances"]["max_joint_error"]  # a state goal's distance
        json.dumps(record)  # a records.jsonl line
        again = envs.replay(record)
        assert again["final_state"] == record["final_state"]  # bit for bit
        assert again["success"] == record["success"]
        assert again["distance"] == pytest.approx(record["final_distance"], abs=1e-12)
        assert replay_matches(record)
        tampered = dict(record, actions=[[a[0] * 0.5 + 0.1, a[1]] for a in record["actions"]])
        assert not replay_matches(tampered)  # the check is not vacuous
    tasks = make_episodes(env_batch[0], "task", 3, seed=2)
    for record in run_episodes(env_batch, tasks, ZeroPolicy())[0]:
        assert len(record["actions"]) == 100 and not np.any(record["actions"])
        assert envs.replay(record)["final_state"] == record["final_state"]
        assert record["final_distance"] == record["distances"]["fingertip_distance"]  # a task goal's distance
        assert replay_matches(record)


def test_a_replayed_goal_is_reached_by_its_own_trajectory(env_batch):
    """The state goal really is 25 control steps along the held-out trajectory from the start."""
    spec = make_episodes(env_batch[0], "state", 1, seed=4)[0]
    rng = np.random.default_rng([7_340_033, 0, 4, 0])
    rng.integers(2**31 - 1)
    warmup = int(rng.integers(2, 11))
    for _ in range(warmup):
        rng.uniform(-1, 1, 2)
    env = env_batch[1]
    env.reset(seed=0, options=spec.options)
    for _ in range(5):
        env.step(rng.uniform(-1, 1, 2).astype(np.float32))
    # Not bit-exact: the original trajectory carried the solver's warm start into the start state.
    assert env.evaluate()["success"] and env.evaluate()["max_joint_error"] < 1e-6


def test_wilson_interval_known_values():
    low, high = wilson_interval(40, 50)
    assert low == pytest.approx(0.6696, abs=1e-3) and high == pytest.approx(0.8876, abs=1e-3)
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0
    # every interval holds its own rate, at 0 and n successes too (floating point once put 100/100's
    # upper bound below 1.0, a negative error bar on the results page's plot)
    for n in range(1, 301):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0, (k, n, low, high)
    row = summarize([{"success": True, "success_any": True, "final_distance": 0.1, "plan_ms": [10.0, 30.0], "wall_s": 1.0},
                     {"success": False, "success_any": True, "final_distance": 0.3, "plan_ms": [20.0, 0.0], "wall_s": 3.0}])
    assert row["success_rate"] == 0.5 and row["plan_ms_mean"] == pytest.approx(20.0) and row["wall_s_per_episode"] == 2.0
    assert row["success_any_rate"] == 1.0 and row["ci95_any"][1] == 1.0  # the anchors' rule counts both


def test_goal_energy_weights_the_last_step_and_costs_compose():
    z = torch.zeros(1, 2, 3, 4)  # [B, N, H, D]
    z[0, 1, -1] = 1.0  # candidate 1 ends one unit away from the goal in every dimension
    energy = GoalEnergy(last_weight=1.0, step_weight=0.0)
    assert energy(z, None, torch.zeros(1, 4)).tolist() == [[0.0, 1.0]]
    assert energy(z, None, torch.ones(1, 4)).tolist() == [[1.0, 0.0]]  # the goal is an argument, not state
    actions = torch.zeros(1, 2, 3, 2)
    actions[0, 0, 1] = 1.0
    assert ActionSmoothness()(z, actions, None)[0, 0] > 0 and ActionSmoothness()(z, actions, None)[0, 1] == 0
    cost = build_cost({"goal": 2.0, "action_magnitude": 0.0, "action_smoothness": 1.0},
                      {"metric": "l2", "last_weight": 1.0, "step_weight": 0.0})
    assert set(cost.terms) == {"goal", "action_smoothness"}
    assert cost(z, actions, torch.zeros(1, 4))[0, 1] == pytest.approx(2.0)
    assert aim(cost, torch.zeros(1, 4))(z, actions).tolist() == cost(z, actions, torch.zeros(1, 4)).tolist()


def test_configurator_clips_the_horizon_at_the_budget(env_batch):
    settings = {"state": TaskSettings(), "task": TaskSettings(budget=20)}
    configurator = Configurator(settings, env_batch[0])  # action_repeat 5
    setup = configurator.setup("state")  # the budget is the goal kind's own: 50 control steps
    assert setup.budget == 50 and setup.decisions == 10
    assert [setup.horizon_at(d) for d in (0, 5, 7, 9)] == [5, 5, 3, 1]
    assert configurator.setup("task").decisions == 4  # a configured budget replaces the env's
    assert configurator.setup("state", budget=15).decisions == 3  # and an explicit one both
    with pytest.raises(ValueError, match="unknown goal kind"):
        configurator.setup("joints")
    repeat_3 = envs.make("reacher", image_size=16, action_repeat=3)
    with pytest.raises(ValueError, match="multiple"):
        Configurator(settings, repeat_3).setup("state")
    repeat_3.close()
    with pytest.raises(ValueError, match="offers"):  # one entry per goal kind the env offers
        Configurator({"state": TaskSettings()}, env_batch[0])


def test_agent_run_smoke(tmp_path):
    """The whole pipeline on a tiny config writes records, a summary and a video."""
    out = tmp_path / "run"
    args = [
        sys.executable, "-m", "agent.run", "env=reacher", "env.image_size=32", f"cache_root={tmp_path / 'cache'}",
        "data.episodes=4", "data.steps=12", "data.workers=1", "data.episodes_per_shard=2",
        "steps=4", "optim.batch_size=4", "monitor_every=4", "probe_frames=20", "monitor_clips=4",
        "world_model.dim=16", "world_model.stem_channels=8", "world_model.encoder_width=16",
        "world_model.encoder_depth=1", "world_model.predictor_width=32", "world_model.predictor_depth=1",
        "eval.episodes=2", "eval.videos=1", "planner.samples=16", "planner.iterations=2", "planner.elites=4",
        "configurator.task.budget=20", "critic.steps=20", "critic.batch_size=16",
        "critic.hidden=16", "critic.dim=4", "decoder.width=8", "decoder.steps=5", "decoder.episodes=2",
        "decoder.eval_windows=4", "decoder.horizon=2", "eval.video_size=64", f"hydra.run.dir={out}",
        # risk-averse planning on one goal kind: the predictor ensemble is fitted and read by its cost
        "configurator.state.disagreement_weight=1.0", "ensemble.steps=5", "ensemble.width=16", "ensemble.heads=2",
        "ensemble.depth=1",
        # and the readout cost on the other: the probe readout is fitted and read by its cost
        "configurator.task.readout_weight=1.0", "readout.steps=5", "readout.hidden=8", "readout.rollout=1",
        # whose planner also starts from the action prior, fitted for it
        "configurator.task.warm_start=prior", "prior.steps=5", "prior.hidden=8",
    ]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "success" in done.stdout and "replay with the simulator alone: 0 of" in done.stdout
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 2 * 3  # 2 goal kinds x 2 episodes x (planner, random, zero)
    assert all(r["replay_matches"] for r in records if r["policy"] == "planner")
    assert all(envs.replay(r)["final_state"] == r["final_state"] for r in records)  # baselines too
    assert {(r["goal_kind"], r["budget"]) for r in records} == {("state", 50), ("task", 20)}
    summary = json.loads((out / "summary.json").read_text())
    assert "critic_s" in summary["timings"]  # protocol (b) plans with the reach critic by default
    assert "ensemble_s" in summary["timings"]
    assert len(list((tmp_path / "cache" / "ensembles").glob("reacher-*/ensemble.json"))) == 1
    assert "readout_s" in summary["timings"]
    assert len(list((tmp_path / "cache" / "readouts").glob("reacher-*/readout.json"))) == 1
    assert "prior_s" in summary["timings"]
    assert len(list((tmp_path / "cache" / "priors").glob("reacher-*/prior.json"))) == 1
    # the critic was fitted on the dataset the model was trained on, the one this run collected
    assert Path(summary["dataset"]).parent == tmp_path / "cache" / "datasets"
    assert json.loads((Path(summary["checkpoint"]) / "checkpoint.json").read_text())["train_config"]["dataset"] == \
        str(Path(summary["dataset"]).resolve())
    assert len(list((tmp_path / "cache" / "critics").glob("reacher-*/critic.json"))) == 1
    assert {(r["protocol"], r["policy"]) for r in summary["rows"]} == {
        (p, q) for p in ("state", "task") for q in ("planner", "random", "zero")
    }
    assert "decoder_s" in summary["timings"]  # the videos' imagined panel needs the pixel decoder
    decoder = json.loads(next((tmp_path / "cache" / "decoders").glob("reacher-*/decoder.json")).read_text())
    assert {"held_out_mse", "held_out_psnr", "prediction_mse", "prediction_psnr"} <= set(decoder["stats"])
    videos = sorted((out / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["state-00.mp4", "task-00.mp4"] and videos[0].stat().st_size > 1000
    import imageio.v2 as imageio

    reader = imageio.get_reader(videos[0])  # real | imagined | ensemble spread | goal of 64 px, every control step at 50 fps
    assert reader.count_frames() == 51 and reader.get_data(0).shape == (112, 256, 3)
    assert reader.get_meta_data()["fps"] == pytest.approx(50)
    reader.close()


def test_coarse_energy_scale_says_which_way_to_move_when_fine_tokens_do_not_overlap():
    grid = (8, 2)
    goal = torch.zeros(1, 8, 8, 2)
    goal[0, 0, 0] = 1.0  # the "arm" in the top-left cell
    near, far = torch.zeros(8, 8, 2), torch.zeros(8, 8, 2)
    near[0, 1] = 1.0  # one cell to the right: no overlap with the goal, same 2x2 block
    far[7, 7] = 1.0  # the opposite corner
    z = torch.stack([near, far]).reshape(1, 2, 1, -1)  # [B, N, H, D]
    fine, multi = GoalEnergy(scales=(1,), grid=grid)(z, None, goal.reshape(1, -1)), GoalEnergy(
        scales=(1, 2), grid=grid)(z, None, goal.reshape(1, -1))
    assert fine[0, 0] == fine[0, 1]  # flat: the fine energy cannot tell them apart
    assert multi[0, 0] < multi[0, 1]
    with pytest.raises(ValueError, match="spatial"):
        GoalEnergy(scales=(1, 2))
