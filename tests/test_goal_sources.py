"""A goal source is one class and one config entry: a source written here, named by its dotted
path in the configurator's settings, runs through an evaluation with no edit anywhere else, and
the fitted modules it declares are what agent.run fits."""

import json
import types
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf, open_dict
from test_fake_env import DotEnv, replay

import envs
import world_model
from agent.configurator import Configurator, TaskSettings
from agent.evaluate import evaluate
from agent.goal_sources import FinalGoal, source_class
from agent.run import needed_modules
from agent.run_config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
CALLS: list[int] = []  # decisions at which Elsewhere was asked


class Elsewhere:
    """Aims at a fixed latent far from every frame's, whatever the goal: a source of this file
    that plainly steers the plans somewhere else than the goal image does."""

    needs = ()
    subgoal = True

    def __init__(self, setup):
        self.decisions = setup.decisions

    def reset(self, z_goal):
        self.z_goal = z_goal

    def goal(self, z_now, decision):
        CALLS.append(decision)
        return torch.full_like(z_now, 3.0)  # [B, D]


class NeedsTheGraph(Elsewhere):
    needs = ("landmarks",)

    def __init__(self, setup, landmarks):
        super().__init__(setup)


class NotASource:
    needs = ()


def _cfg(cache: Path, goal_source: str):
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("run", overrides=[f"cache_root={cache}", "eval.episodes=2", "eval.batch=2", "eval.videos=0",
                                        "eval.baselines=[]"])
    with open_dict(cfg):
        cfg.env = OmegaConf.create({"name": "dot", "image_size": 32})
        cfg.configurator = OmegaConf.create({"reach": {
            "planner": {"cem": {"samples": 8, "iterations": 2, "elites": 2}}, "horizon": 2, "goal_source": goal_source}})
    return cfg


@pytest.fixture
def dot(monkeypatch, tmp_path):
    monkeypatch.setitem(envs.REGISTRY, "dot", (DotEnv, {}, types.SimpleNamespace(replay=replay)))
    torch.manual_seed(0)
    wm = world_model.WorldModel(world_model.WorldModelConfig(**TINY_MODEL, action_dim=3)).eval()
    with torch.no_grad():  # an untrained model ignores actions (zero-initialised layers): randomise every weight
        for p in wm.parameters():
            p.normal_(0, 0.3 if p.ndim > 1 else 0.05)
    world_model.save(tmp_path / "model", wm, step=0)
    return types.SimpleNamespace(wm=wm, root=tmp_path)


def _planner_actions(folder: Path) -> list:
    return [r["actions"] for r in map(json.loads, (folder / "records.jsonl").read_text().splitlines())
            if r["policy"] == "planner"]


def test_a_source_defined_in_a_test_file_runs_through_an_evaluation(dot):
    name = f"{__name__}.Elsewhere"
    assert source_class(name) is Elsewhere
    CALLS.clear()
    run = lambda source, out: evaluate(_cfg(dot.root / "cache", source), dot.wm, [DotEnv(), DotEnv()],
                                       torch.device("cpu"), dot.root / out, dot.root / "model", progress=False)
    summary = run(name, "elsewhere")
    decisions = DotEnv.goal_kinds["reach"].budget // DotEnv().action_repeat
    assert CALLS == list(range(decisions))  # asked before every plan, with the decision index
    assert summary["replay_failures"] == 0
    run("final", "final")
    assert _planner_actions(dot.root / "elsewhere") != _planner_actions(dot.root / "final")  # it did steer the plans


def test_what_a_source_declares_is_what_agent_run_fits(dot):
    cfg = _cfg(dot.root / "cache", f"{__name__}.NeedsTheGraph")
    assert needed_modules(cfg, DotEnv()) == {"landmarks"}
    assert needed_modules(_cfg(dot.root / "cache", "final"), DotEnv()) == set()
    with open_dict(cfg):
        cfg.configurator.reach.subgoal_critic_weight = 0.5  # the low level scores toward the subgoal with the critic
    assert needed_modules(cfg, DotEnv()) == {"landmarks", "critic"}
    with pytest.raises(ValueError, match="need critic, landmarks; pass critic=, landmarks="):
        evaluate(cfg, dot.wm, [DotEnv()], torch.device("cpu"), dot.root / "out", dot.root / "model", progress=False)


def test_a_bad_source_name_is_refused_in_one_line():
    class Env:
        name, goal_kinds, action_repeat = "dot", {"reach": types.SimpleNamespace(budget=10)}, 5

    for name, says in [("nearest", "choose from"), ("tests.nowhere.Goal", "cannot be imported"),
                       (f"{__name__}.NotASource", "lacks subgoal, reset, goal")]:
        with pytest.raises(ValueError, match=says) as err:
            Configurator({"reach": TaskSettings(goal_source=name)}, Env()).setup("reach")
        assert "\n" not in str(err.value) and str(err.value).startswith("configurator.reach.goal_source=")
    assert source_class("final") is FinalGoal
