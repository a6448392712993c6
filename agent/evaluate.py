"""Evaluation: every goal kind with the planner and the baselines on the same episodes; writes
records.jsonl, results.jsonl/csv, summary.json and videos into the run's output folder."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from agent.configurator import Configurator, TaskSettings, build_planner
from agent.costs import build_cost
from agent.episode import run_episodes
from agent.policies import PlanningPolicy, RandomPolicy, ZeroPolicy
from agent.protocols import make_episodes
from agent.records import replay_matches
from agent.report import summarize, table
from agent.video import decode_trace, write_episode_video
from world_model.encoder import GRID
from world_model.metrics_log import MetricsLog
from world_model.plain import plain


def check_model_fits_env(wm, env, checkpoint: Path) -> None:
    """One clear line when a checkpoint was trained for other frames or actions than env's."""
    if wm.cfg.image_size != env.image_size:
        raise ValueError(
            f"checkpoint {checkpoint} was trained on {wm.cfg.image_size}px frames but env {env.name} renders "
            f"{env.image_size}px; pass env.image_size={wm.cfg.image_size}"
        )
    if (wm.cfg.action_dim,) != env.action_space.shape:
        raise ValueError(f"checkpoint {checkpoint} takes {wm.cfg.action_dim}-d actions but env {env.name} has "
                         f"action shape {env.action_space.shape}; it was trained for another env")


def evaluate(cfg, wm, envs: list, device, out: Path, critic=None, macro=None, progress: bool = True,
             decoder=None) -> dict:
    """Runs each goal kind with the planner and the baselines on `envs` (one per batched
    episode, all alike); returns the summary (also written to out/summary.json). `macro` is the
    level-2 predictor a hierarchical planner needs; `decoder` (world_model/decoder.py) draws the
    imagined panel of the videos (none without it)."""
    env0 = envs[0]
    configurator = Configurator({k: TaskSettings(**v) for k, v in plain(cfg.configurator).items()}, env0)
    goal_kinds = list(cfg.eval.goal_kinds or env0.goal_kinds)
    baselines = {"random": lambda: RandomPolicy(cfg.eval.seed), "zero": ZeroPolicy}
    unknown = [b for b in cfg.eval.baselines if b not in baselines]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {sorted(baselines)}")
    batch = len(envs)
    grid = (GRID, wm.cfg.token_dim) if wm.cfg.representation == "tokens" else None
    log = MetricsLog(out, name="results")
    rows, records_path, replay_failures = [], out / "records.jsonl", 0
    with open(records_path, "w") as records_file:
        for goal_kind in goal_kinds:
            setup = configurator.setup(goal_kind, cfg.planner.get("name"))
            specs = make_episodes(env0, goal_kind, cfg.eval.episodes, cfg.eval.seed, setup.budget)
            planner = build_planner(plain(cfg.planner), setup)
            cost = build_cost(setup.cost_weights, setup.goal_energy, grid, critic)
            high_cost = None
            if hasattr(planner, "subgoal"):
                if macro is None:
                    raise ValueError(f"planner {cfg.planner.get('name')} plans with the level-2 predictor; pass macro=")
                # The high level scores the goal kind's full cost toward the final goal; the low
                # level's subgoal is k decisions away, where the goal energy alone is informative.
                high_cost, cost = cost, build_cost({**setup.cost_weights, "critic": 0.0}, setup.goal_energy, grid)
            policies = [PlanningPolicy(wm, planner, cost, setup, device, macro, high_cost, imagine=cfg.eval.videos)]
            policies += [baselines[b]() for b in cfg.eval.baselines]
            for policy in policies:
                chunks = -(-len(specs) // batch)
                bar = tqdm(total=chunks * setup.decisions, desc=f"{goal_kind}/{policy.name}", unit="decision",
                           disable=not progress)
                records, videos = [], []
                for first in range(0, len(specs), batch):
                    keep = cfg.eval.videos if (policy.name == "planner" and first == 0) else 0
                    chunk_records, frames = run_episodes(envs, specs[first : first + batch], policy, keep, bar)
                    records += chunk_records
                    videos += frames
                bar.close()
                for record in records:
                    if cfg.eval.verify_replay and policy.name == "planner":
                        record["replay_matches"] = replay_matches(record)
                        replay_failures += not record["replay_matches"]
                    records_file.write(json.dumps(record) + "\n")
                for i, trace in enumerate(videos):  # the kept episodes are the first ones
                    write_episode_video(out / "videos" / f"{goal_kind}-{i:02d}.mp4", records[i], cfg.eval.video_size,
                                        decode_trace(decoder, trace), trace)
                row = {"protocol": goal_kind, "env": env0.name, "policy": policy.name, **summarize(records)}
                rows.append(row)
                log.log(len(rows), {k: v for k, v in row.items() if not isinstance(v, list)})
    log.close()
    summary = {
        "env": env0.name,
        "device": str(device),
        "batch": batch,
        "replay_failures": replay_failures if cfg.eval.verify_replay else None,
        "rows": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(table(rows))
    if cfg.eval.verify_replay:
        print(f"replay with the simulator alone: {replay_failures} of the planner's records differ from their reported outcome")
    print(f"records: {records_path}\nsummary: {out / 'summary.json'}")
    return summary
