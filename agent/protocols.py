"""Evaluation episodes: which start, goal and budget each episode of a goal kind has.

The env family decides how a goal kind's episodes are drawn (envs/base.py: sample_episode); this
file only hands each episode its own random stream, one that no dataset uses, so evaluation
episodes are held out from training: datasets draw from np.random.default_rng([data.seed, i]),
episodes from [EVAL_STREAM, index of the goal kind, eval.seed, i], and the episodes the planner plays
to collect its own video (agent/onpolicy.py) from [ONPOLICY_STREAM, ...], so they are neither.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from envs import EpisodeSpec

EVAL_STREAM = 7_340_033
ONPOLICY_STREAM = 5_767_169


def make_episodes(env, goal_kind: str, count: int, seed: int, budget: int | None = None,
                  stream: int = EVAL_STREAM) -> list[EpisodeSpec]:
    """`count` episodes of `goal_kind` in `env` (it is stepped to find them); `budget` (control
    steps) replaces the goal kind's own when given; `stream`: EVAL_STREAM or ONPOLICY_STREAM."""
    kinds = list(env.goal_kinds)
    if goal_kind not in kinds:
        raise ValueError(f"unknown goal kind {goal_kind!r} for env {env.name}; it offers {', '.join(kinds)}")
    specs = [
        env.sample_episode(goal_kind, np.random.default_rng([stream, kinds.index(goal_kind), seed, i]))
        for i in range(count)
    ]
    return specs if budget is None else [dataclasses.replace(s, budget=budget) for s in specs]


def chunk_seed(seed: int, goal_kind_index: int, first: int) -> int:
    """The seed of the chunk of evaluation episodes of a goal kind that starts at episode `first`
    (planner noise, random baseline): from these three alone, so a chunk plays out the same whether
    the chunks before it ran in this process or in an earlier, killed one."""
    return int(np.random.SeedSequence([seed, goal_kind_index, first]).generate_state(1)[0])
