"""A new env family needs nothing outside its folder and its two config files: a fake family,
written here against envs/base.py alone, runs through collection, training, the critic and an
evaluation episode of `agent.run`, and its records replay through `envs.replay`."""

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf, open_dict

import envs
import world_model
from envs.base import EpisodeSpec, GoalEnv, GoalKind
from world_model.dataset import Dataset

ROOT = Path(__file__).resolve().parents[1]
STEP = 0.2  # how far one control step moves the dot per unit of action


def move(pos: np.ndarray, action: np.ndarray, low: float = -0.5, high: float = 0.5) -> np.ndarray:
    """One control step of the dot: shared by the env and its replay, as a family's simulator is."""
    return np.clip(pos + STEP * np.clip(action[:2], low, high), -1.0, 1.0)


class DotEnv(GoalEnv):
    """A dot in a square; a 3-d action in [-0.5, 0.5] (the third number does nothing), so nothing
    downstream may assume 2-d actions in [-1, 1]."""

    goal_kinds = {"reach": GoalKind(budget=6, success="dot within 0.3 of the goal", doc="random start and goal")}
    probe_groups = {"position": ("x", "y")}
    metadata = {"render_modes": []}

    def __init__(self, image_size: int = 32, action_repeat: int = 2):
        self.name, self.image_size, self.action_repeat = "dot", image_size, action_repeat
        self.default_goal_kind = "reach"
        self.control_timestep = 0.05
        frame = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = spaces.Dict({"pixels": frame, "goal": frame,
                                              "proprio": spaces.Box(-1, 1, (2,), np.float32)})
        self.action_space = spaces.Box(-0.5, 0.5, (3,), np.float32)
        self.pos, self.goal = np.zeros(2), np.zeros(2)

    def _draw(self, pos):
        img = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        x, y = ((np.asarray(pos) + 1) / 2 * (self.image_size - 3)).astype(int) + 1
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
        return img

    def _obs(self):
        return {"pixels": self._draw(self.pos), "goal": self._draw(self.goal), "proprio": self.pos.astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        self.pos = np.asarray(options.get("start", self.np_random.uniform(-1, 1, 2)), np.float64)
        self.goal = np.asarray(options.get("goal", self.np_random.uniform(-1, 1, 2)), np.float64)
        self._reached = False
        return self._obs(), self.evaluate()

    def step(self, action):
        for _ in range(self.action_repeat):
            self.pos = move(self.pos, np.asarray(action, np.float64))
            self._reached = self._reached or self.evaluate()["success"]
        return self._obs(), 0.0, False, False, self.evaluate()

    def reached(self):
        return self._reached

    def evaluate(self):
        distance = float(np.linalg.norm(self.pos - self.goal))
        return {"success": distance < 0.3, "distance": distance}

    def get_sim_state(self):
        return self.pos.copy()

    def set_sim_state(self, state):
        self.pos = np.asarray(state, np.float64).copy()

    def render_sim_state(self, state):
        return self._draw(state)

    def probe_targets(self):
        return self.pos.astype(np.float32)

    def behaviour_policy(self, rng, **settings):
        return types.SimpleNamespace(act=lambda obs: rng.uniform(-0.5, 0.5, 3).astype(np.float32))

    def sample_episode(self, goal_kind, rng):
        start, goal = rng.uniform(-0.6, 0.6, 2), rng.uniform(-0.6, 0.6, 2)
        return EpisodeSpec(self.name, goal_kind, int(rng.integers(1000)), {"start": start.tolist(), "goal": goal.tolist()},
                           self.goal_kinds[goal_kind].budget)


def replay(record):
    """The family's replay: its simulator alone (here, `move`)."""
    pos, goal = np.asarray(record["options"]["start"], np.float64), np.asarray(record["options"]["goal"])
    reached = False
    for action in record["actions"]:
        pos = move(pos, np.asarray(action, np.float64))
        reached = reached or float(np.linalg.norm(pos - goal)) < 0.3
    distance = float(np.linalg.norm(pos - goal))
    return {"final_state": pos.tolist(), "success": distance < 0.3, "success_any": reached, "distance": distance}


@pytest.fixture
def dot_family(monkeypatch):
    monkeypatch.setitem(envs.REGISTRY, "dot", (DotEnv, {}, types.SimpleNamespace(replay=replay)))


def test_a_new_family_runs_through_the_whole_pipeline(dot_family, tmp_path, capsys):
    from agent.run import run
    from agent.run_config import RunConfig

    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("run", overrides=[
            f"cache_root={tmp_path / 'cache'}", "steps=6", "monitor_every=3", "checkpoint_every=3", "refit.steps=0",
            "probe_frames=20", "probe_held_frames=5", "optim.batch_size=4", "optim.warmup_steps=2",
            "world_model.token_dim=1", "world_model.encoder_width=16", "world_model.predictor_width=16",
            "world_model.stem_channels=8", "loss.inverse_dynamics_hidden=8", "critic.steps=5", "critic.batch_size=16",
            "eval.episodes=2", "eval.videos=1", "planner.samples=8", "planner.iterations=2", "decoder.width=8",
            "decoder.steps=5", "decoder.episodes=2", "decoder.eval_windows=4", "decoder.horizon=2", "eval.video_size=32",
        ])
    with open_dict(cfg):
        # What configs/env/dot.yaml, configs/data/dot.yaml and configs/configurator/dot.yaml would hold.
        cfg.env = OmegaConf.create({"name": "dot", "image_size": 32})
        cfg.data = OmegaConf.merge(cfg.data, {"behaviour": {}, "episodes": 8, "steps": 10, "episodes_per_shard": 4,
                                              "workers": 1})
        reacher_state = OmegaConf.to_container(cfg.configurator["state"])
        cfg.configurator = OmegaConf.create({"reach": {**reacher_state, "planner": {"cem": {"elites": 2}},
                                                       "horizon": 2, "critic_weight": 0.5}})
    out = tmp_path / "out"
    out.mkdir()
    run(cfg, out)

    summary = json.loads((out / "summary.json").read_text())
    assert {r["policy"] for r in summary["rows"]} == {"planner", "random", "zero"}
    assert summary["replay_failures"] == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(r["env"] == "dot" for r in records)
    assert all(len(r["actions"]) == 6 and len(r["actions"][0]) == 3 for r in records)  # 6 control steps of 3-d actions
    assert all(-0.5 <= a <= 0.5 for r in records for step in r["actions"] for a in step)
    assert (out / "videos" / "reach-00.mp4").exists()  # with the imagined panel: the fake family needs no more
    manifest = json.loads(next((tmp_path / "cache" / "datasets").glob("dot-*/manifest.json")).read_text())
    assert manifest["env"]["probe_groups"] == {"position": ["x", "y"]}
    assert manifest["arrays"]["actions"]["row_shape"] == [3]

    # Every planner of configs/planner plans on the new family through the same run, on the
    # trained checkpoint (the hierarchical one fits its level-2 predictor first).
    planners = sorted(p.stem for p in (ROOT / "configs" / "planner").glob("*.yaml"))
    for name in planners:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            each = compose("run", overrides=[
                f"cache_root={tmp_path / 'cache'}", f"planner={name}", f"checkpoint={summary['checkpoint']}",
                "eval.episodes=2", "eval.videos=0", "eval.baselines=[]", "critic.steps=5", "critic.batch_size=16",
                "refit.steps=0", "macro.k=2", "macro.width=16", "macro.depth=1", "macro.steps=5", "macro.batch_size=8",
            ])
        with open_dict(each):
            each.env, each.data, each.configurator = cfg.env, cfg.data, cfg.configurator
        folder = tmp_path / f"eval-{name}"
        folder.mkdir()
        run(each, folder)
        rows = json.loads((folder / "summary.json").read_text())["rows"]
        assert [r["policy"] for r in rows] == ["planner"] and rows[0]["episodes"] == 2, name
    assert any((tmp_path / "cache" / "macros").glob("dot-*/macro.json"))

    # Subgoals from the landmark graph of the same checkpoint's training frames (built and cached
    # once): a flat planner's goal, the hierarchical planner's high-level goal.
    for name in ("cem", "hierarchical"):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            graph = compose("run", overrides=[
                f"cache_root={tmp_path / 'cache'}", f"checkpoint={summary['checkpoint']}", f"planner={name}",
                "eval.episodes=2", "eval.videos=0", "eval.baselines=[]", "critic.steps=5", "critic.batch_size=16",
                "refit.steps=0", "landmarks.neighbours=3", "macro.k=2", "macro.width=16", "macro.depth=1", "macro.steps=5",
                "macro.batch_size=8",
            ])
        with open_dict(graph):
            graph.env, graph.data = cfg.env, cfg.data
            graph.configurator = OmegaConf.merge(cfg.configurator, {"reach": {
                "goal_source": "graph", "subgoal_ahead": 2, "subgoal_critic_weight": 0.5}})
        (tmp_path / f"graph-{name}").mkdir()
        capsys.readouterr()
        run(graph, tmp_path / f"graph-{name}")
        rows = json.loads((tmp_path / f"graph-{name}" / "summary.json").read_text())["rows"]
        assert [r["policy"] for r in rows] == ["planner"] and rows[0]["episodes"] == 2
        built = list((tmp_path / "cache" / "landmarks").glob("dot-*/landmarks.json"))
        assert len(built) == 1, name  # built for cem, loaded for hierarchical
        assert ("landmark graph:" in capsys.readouterr().out) == (name == "cem"), name  # the line of a build

    # A predictor refitted on the checkpoint's frozen latents (world_model/refit.py) replaces its own:
    # fitted and cached once, then loaded; a refitted checkpoint passed back is not refitted again.
    refit = ["refit.steps=3", "refit.from_model=false", "refit.width=16", "refit.depth=1", "refit.heads=2", "refit.rollout=2",
             "refit.batch_size=8", "refit.probe_rows=50"]

    def evaluating(checkpoint, *overrides):
        """The run config of a 2-episode evaluation of `checkpoint` with the refit above and `overrides`."""
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            again = compose("run", overrides=[
                f"cache_root={tmp_path / 'cache'}", f"checkpoint={checkpoint}", "eval.episodes=2", "eval.videos=0",
                "eval.baselines=[]", "critic.steps=5", "critic.batch_size=16", *refit, *overrides])
        with open_dict(again):
            again.env, again.data, again.configurator = cfg.env, cfg.data, cfg.configurator
        return again

    refitted = None  # the third run passes the refitted checkpoint the first two made and loaded
    for attempt in range(3):
        (tmp_path / f"refit-{attempt}").mkdir()
        capsys.readouterr()
        run(evaluating(refitted if attempt == 2 else summary["checkpoint"]), tmp_path / f"refit-{attempt}")
        done = json.loads((tmp_path / f"refit-{attempt}" / "summary.json").read_text())
        assert ("refitted predictor:" in capsys.readouterr().out) == (attempt == 0), attempt
        refitted = done["checkpoint"]
        assert refitted.startswith(str(tmp_path / "cache" / "refits" / "dot-")) and done["replay_failures"] == 0
        assert world_model.load(refitted).cfg.predictor_width == 16

    # Episodes the planner plays with the refit train it on (agent/onpolicy.py): they are written as a
    # dataset whose frames are drawn from its states, the model trained on them is cached and names
    # them, and a checkpoint trained so already is not trained again.
    tuned = None
    for attempt in range(3):
        (tmp_path / f"onpolicy-{attempt}").mkdir()
        capsys.readouterr()
        run(evaluating(tuned if attempt == 2 else refitted, "onpolicy.episodes=3", "onpolicy.steps=3",
                       "onpolicy.episodes_per_shard=2"), tmp_path / f"onpolicy-{attempt}")
        out = capsys.readouterr().out
        assert ("planner's own episodes:" in out) == ("on the planner's own episodes:" in out) == (attempt == 0), out
        tuned = json.loads((tmp_path / f"onpolicy-{attempt}" / "summary.json").read_text())["checkpoint"]
        assert tuned.startswith(str(tmp_path / "cache" / "refits" / "dot-")) and tuned != refitted
    model, manifest = world_model.checkpoint.load_with_manifest(tuned)
    base, base_manifest = world_model.checkpoint.load_with_manifest(refitted)
    entry = manifest["train_config"]["refit"]
    assert entry["of"] == base_manifest["files"]["model.safetensors"]["sha256"] and "onpolicy" not in entry["previous"]
    assert not torch.equal(model.predictor.state_dict()["out.weight"], base.predictor.state_dict()["out.weight"])
    for name, value in base.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name
    played = Dataset(entry["onpolicy"]["episodes"])
    assert played.num_episodes == 3 and played.episode_lengths.tolist() == [4, 4, 4]  # the start + 3 decisions
    dot = DotEnv()
    for e in range(3):
        episode = played.episode(e)
        assert all(np.array_equal(frame, dot._draw(state)) for frame, state in zip(episode.frames, episode.states))
        stepped = [move(move(state, a), a) for state, a in zip(episode.states[:-1], episode.actions[:-1].astype(np.float64))]
        assert np.array_equal(episode.states[1:], np.stack(stepped))  # each row the action after it, repeated twice
        assert not episode.actions[-1].any() and episode.actions[:-1].any()
