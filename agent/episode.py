"""The episode loop: B episodes in lockstep (observe, act, step), producing records and video traces."""

from __future__ import annotations

import time

import numpy as np

from agent.episode_record import make_record
from envs import EpisodeSpec


def run_episodes(envs, specs: list[EpisodeSpec], policy, keep_frames: int = 0, progress=None) -> tuple[list[dict], list]:
    """Runs len(specs) episodes, one per env, stepping them together so a planner can plan for
    all of them in one batched call.

    Returns the per-episode records and, for the first `keep_frames` episodes, the trace a video
    shows beside the re-simulated episode (agent/video.py): per decision a dict with the goal
    "energy" of the observation, the chosen plan's "plan_cost" and the "imagined" latent [D] of
    the frame its action should lead to, each present when the policy reports it.
    """
    if len(envs) < len(specs):
        raise ValueError(f"{len(specs)} episodes need as many envs, got {len(envs)}")
    envs = envs[: len(specs)]
    repeat = envs[0].action_repeat
    budgets = {s.budget for s in specs}
    if len(budgets) != 1 or next(iter(budgets)) % repeat:
        raise ValueError(f"episodes run together need one budget that is a multiple of action_repeat={repeat}")
    decisions = budgets.pop() // repeat
    start = time.perf_counter()
    obs = [env.reset(seed=s.seed, options=s.options)[0] for env, s in zip(envs, specs)]
    policy.reset(obs, specs, envs)
    actions = np.zeros((len(specs), decisions, *envs[0].action_space.shape), np.float32)  # [B, decisions, A]
    plan_ms = np.zeros(decisions)
    traces = [[] for _ in range(min(keep_frames, len(specs)))]
    for d in range(decisions):
        action, info = policy.act(obs, d)
        actions[:, d] = action
        plan_ms[d] = info["plan_ms"]
        for i, trace in enumerate(traces):
            trace.append({k: float(info[k][i]) for k in ("energy", "plan_cost") if k in info})
            if "imagined" in info:
                trace[-1]["imagined"] = info["imagined"][i, 0]  # [D]
        obs = [env.step(a)[0] for env, a in zip(envs, action)]
        if progress is not None:
            progress.update(1)
    wall = time.perf_counter() - start
    records = [
        make_record(spec, env, actions[i], plan_ms, policy.name, wall / len(specs))
        for i, (spec, env) in enumerate(zip(specs, envs))
    ]
    return records, traces
