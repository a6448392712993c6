"""The planner's own episodes as training video for the refitted predictor.

The behaviour video shows the scripted policy's moves, not the planner's, so the predictor is least
tested where the planner leans on it: on the plans it chooses. Here the planner plays episodes of a
goal kind with the refitted model, on starts and goals drawn from a stream no evaluation uses
(agent/protocols.py ONPOLICY_STREAM), each episode is re-simulated from its record with frames, and
the predictor goes on training with a share of every batch drawn from them
(world_model/refit.py finetune_refit). One round of what DAgger does for a policy, done for the
model (docs/NOTEBOOK.md, "The planner's own pushes").

The episodes are written as a dataset (world_model/dataset.py: frames, actions, states, probe
targets; one frame per decision, from the start to the end of the budget) under
cache_root/onpolicy, and the fine-tuned model under cache_root/refits, each cached by what made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from agent.collect import env_facts, versions, write_failure, write_shard
from agent.episode import run_episodes
from agent.evaluate import chunk_policy, plan_grid
from agent.protocols import ONPOLICY_STREAM, make_episodes
from world_model.dataset import MANIFEST, SCHEMA_VERSION, write_json_atomic
from world_model.fitted import check_at_least_one, check_positive


@dataclass
class OnPolicyConfig:
    """The planner's own episodes and the refitted predictor's training on them (after the refit)."""

    episodes: int = 0
    """Episodes the planner plays with the refitted model before evaluating; 0: none, the refit plans
    as it was fitted."""
    goal_kind: str | None = None
    """The goal kind they play; None: the env's default (env.default_goal_kind)."""
    seed: int = 0
    """Seeds their starts and goals (from ONPOLICY_STREAM, which no evaluation draws from)."""
    episodes_per_shard: int = 50
    """Episodes per shard of the dataset they are written as."""
    steps: int = 800
    """Optimiser steps the refitted predictor goes on training for, from its weights."""
    fraction: float = 0.5
    """Share of every batch's windows drawn from the planner's episodes (the rest from the video the
    world model was trained on)."""
    lr: float = 3.0e-4
    """Peak learning rate of that training (linear warm-up, then cosine decay to 0 at `steps`)."""
    warmup_steps: int = 50
    """Steps of linear warm-up."""

    def __post_init__(self):
        check_at_least_one(self, "onpolicy", ("episodes_per_shard", "steps"))
        check_positive(self, "onpolicy", ("lr",))
        if self.episodes < 0 or self.seed < 0 or self.warmup_steps < 0:
            raise ValueError(f"onpolicy.episodes={self.episodes}, onpolicy.seed={self.seed} and "
                             f"onpolicy.warmup_steps={self.warmup_steps} must be at least 0")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"onpolicy.fraction={self.fraction} must be in (0, 1]: the share of each batch drawn "
                             "from the planner's episodes")


def play(cfg, wm, envs: list, modules: dict, goal_kind: str, setup, ocfg: OnPolicyConfig, device: torch.device,
         progress: bool = True) -> list[dict]:
    """The records (agent/episode_record.py) of ocfg.episodes episodes of `goal_kind` that the
    planner of `cfg` plays with `wm`, the fitted `modules` (as evaluate gets them) and the goal
    kind's PlanSetup `setup` (the configurator's), len(envs) at a time, on ONPOLICY_STREAM's starts
    and goals."""
    env0 = envs[0]
    specs = make_episodes(env0, goal_kind, ocfg.episodes, ocfg.seed, setup.budget, stream=ONPOLICY_STREAM)
    space = env0.action_space
    bounds = tuple(torch.as_tensor(b, dtype=torch.float32, device=device) for b in (space.low, space.high))  # [A] each
    kind_index, grid = list(env0.goal_kinds).index(goal_kind), plan_grid(wm)
    records = []
    with tqdm(total=-(-len(specs) // len(envs)) * setup.decisions, desc=f"{goal_kind}/planner's own episodes",
              unit="decision", disable=not progress) as bar:
        for first in range(0, len(specs), len(envs)):
            policy = chunk_policy(cfg, "planner", first, kind_index, wm, setup, grid, device, modules, bounds)
            records += run_episodes(envs, specs[first : first + len(envs)], policy, 0, bar)[0]
    return records


def replayed_episode(env, record: dict) -> dict:
    """The episode of `record` re-simulated in `env` with its frames, as agent/collect.py
    record_episode returns one: frames [T + 1, H, W, 3], actions [T + 1, A] (the last row 0),
    proprio [T + 1, P], states [T + 1, S], probe [T + 1, K] (T: the record's decisions), extras.
    Refuses a record that does not end in its recorded state."""
    repeat = record["action_repeat"]
    actions = np.asarray(record["actions"], np.float32)[::repeat]  # [T, A]: the record unrolls each decision
    obs, _ = env.reset(seed=record["seed"], options=record["options"])
    rows = {"frames": [obs["pixels"]], "proprio": [obs["proprio"]], "states": [env.get_sim_state()],
            "probe": [env.probe_targets()]}
    for action in actions:
        obs = env.step(action)[0]
        for key, value in (("frames", obs["pixels"]), ("proprio", obs["proprio"]), ("states", env.get_sim_state()),
                           ("probe", env.probe_targets())):
            rows[key].append(value)
    if not np.array_equal(env.get_sim_state(), np.asarray(record["final_state"])):
        raise ValueError(f"episode {record.get('episode')} of the planner's own does not replay to its recorded final "
                         f"state in {env.name}; its simulator is not deterministic, set onpolicy.episodes=0")
    return {"frames": np.stack(rows["frames"]),
            "actions": np.concatenate([actions, np.zeros_like(actions[:1])]),
            "proprio": np.stack(rows["proprio"]).astype(np.float32),
            "states": np.stack(rows["states"]).astype(np.float64),
            "probe": np.stack(rows["probe"]).astype(np.float32),
            "extras": env.episode_extras()}


def write_dataset(folder: Path, settings: dict, env, records: list[dict], identity: dict,
                  episodes_per_shard: int) -> Path:
    """The records' episodes re-simulated in `env` (made with `settings`) and written as a complete
    dataset at `folder` (world_model/dataset.py), its manifest recording `identity`."""
    success = float(np.mean([r["success"] for r in records]))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "identity": identity,
        "env": env_facts(settings),
        "collect": {"episodes": len(records), "steps": len(records[0]["actions"]) // records[0]["action_repeat"],
                    "seed": identity["onpolicy"]["seed"], "episodes_per_shard": episodes_per_shard,
                    "behaviour": {"planner": identity["planner"], "success": success}},
        "versions": versions(),
        "arrays": {},
        "shards": [],
        "complete": True,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_failure(folder, err) from err
    for first in range(0, len(records), episodes_per_shard):
        episodes = [replayed_episode(env, r) for r in records[first : first + episodes_per_shard]]
        entry = write_shard(folder, f"shard-{first // episodes_per_shard:05d}", episodes, first)
        manifest["arrays"] = entry.pop("shapes")
        manifest["shards"].append(entry)
    write_json_atomic(folder / MANIFEST, manifest)  # last: a dataset with a manifest is whole
    return folder
