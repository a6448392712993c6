"""The planner's records through every goal source (the final goal, with the critic, the landmark
graph, hierarchical, hierarchical over the graph) on the dot env of the tests with a tiny random
model: run at two commits and compare, to show that a refactor of the planning wing changed no record.

    python benchmarks/planning_records.py OUT.json      # from the repository root, at each commit

Written for issue 27 (2026-12-05): 85ae361 (before the goal sources) and the commit after it give
identical records (docs/NOTEBOOK.md). `NEW` spells the settings for either side of that change.
"""

import json
import sys
import types
from pathlib import Path

sys.path[:0] = [".", "tests"]  # the checkout this runs from, and the dot env of its tests

import torch
from conftest import TINY_MODEL
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf, open_dict
from test_fake_env import DotEnv, replay

import agent.evaluate as ev
import envs
import world_model
from agent.configurator import TaskSettings
from agent.critic import CriticConfig, ReachCritic
from agent.landmarks import LandmarkConfig, build_graph
from agent.run_config import RunConfig
from world_model.macro import MacroConfig, MacroModel

NEW = "goal_source" in TaskSettings.__dataclass_fields__
CASES = ("flat", "critic", "graph", "hier", "hier-graph")
SMALL = {"samples": 8, "iterations": 2, "elites": 2}


def config(case: str):
    """The run config of one case: 4 episodes of 10 decisions, a small CEM, macro steps of 2."""
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    planner = "hierarchical" if "hier" in case else "cem"
    with initialize_config_dir(config_dir=str(Path.cwd() / "configs"), version_base="1.3"):
        cfg = compose("run", overrides=["eval.episodes=4", "eval.batch=2", "eval.videos=0", f"planner={planner}",
                                        "macro.k=2"])
    with open_dict(cfg):
        cfg.env = OmegaConf.create({"name": "dot", "image_size": 32})
        overrides = {"cem": SMALL}
        if planner == "hierarchical":
            overrides = {"hierarchical": ({**SMALL, "subgoal_search": {"high_horizon": 2, "planner": SMALL}} if NEW
                                          else {"low": SMALL, "high": SMALL, "high_horizon": 2})}
        reach = {**OmegaConf.to_container(cfg.configurator["state"]), "planner": overrides, "horizon": 2, "budget": 20,
                 "critic_weight": 0.5 if case in ("critic", "hier", "hier-graph") else 0.0, "subgoal_critic_weight": 0.3}
        if "graph" in case:
            reach["goal_source" if NEW else "subgoals"] = "graph"
            reach["subgoal_ahead"] = 2.0
        cfg.configurator = OmegaConf.create({"reach": reach})
    return cfg


def main() -> None:
    out_file = Path(sys.argv[1])
    work = out_file.with_suffix(".d")
    work.mkdir(exist_ok=True)
    torch.set_num_threads(1)
    envs.REGISTRY["dot"] = (DotEnv, {}, types.SimpleNamespace(replay=replay))
    torch.manual_seed(0)
    wm = world_model.WorldModel(world_model.WorldModelConfig(**TINY_MODEL, action_dim=3)).eval()
    with torch.no_grad():  # an untrained model ignores actions (zero-initialised layers): randomise every weight
        for p in wm.parameters():
            p.normal_(0, 0.3 if p.ndim > 1 else 0.05)
        d = wm.encode(torch.zeros(1, 1, 32, 32, 3, dtype=torch.uint8)).shape[-1]
    world_model.save(work / "model", wm, step=0)
    torch.manual_seed(1)
    critic = ReachCritic(d, CriticConfig()).eval()
    macro = MacroModel(d, 3, MacroConfig(k=2, width=32, depth=1, heads=2)).eval()
    graph, _ = build_graph(torch.randn(6, 12, d), LandmarkConfig(stride=1, neighbours=4))
    records = {}
    for case in CASES:
        folder = work / case
        ev.evaluate(config(case), wm, [DotEnv(), DotEnv()], torch.device("cpu"), folder, work / "model", critic=critic,
                    macro=macro if "hier" in case else None, landmarks=graph if "graph" in case else None,
                    progress=False)
        rows = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
        records[case] = [{k: v for k, v in r.items() if k not in ("plan_ms", "wall_s")} for r in rows]  # not clocks
    out_file.write_text(json.dumps(records, sort_keys=True))


if __name__ == "__main__":
    main()
