"""Evaluation protocols: which episodes are run (start state, target, goal, budget).

(a) state goal, after stable-worldmodel's reacher protocol (used for DINO-WM, PLDM and LeWM): a
    held-out trajectory of uniform random actions (one per decision, held for the action repeat);
    the start is a state along it, the goal the joint pose 25 control steps later; 50 control steps
    of budget; success when every joint is within 0.05 rad of the goal at the end.
(b) task goal: dm_control's own random start and target; the goal image shows the fingertip on the
    target; 100 control steps of budget; success is the task's reward criterion at the end.
Episodes draw from seed streams no dataset uses, so they are held out from training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Seed streams: datasets use np.random.default_rng([data.seed, i]); evaluation episodes use
# [EVAL_STREAM, protocol, eval.seed, i], which no dataset can produce.
EVAL_STREAM = 7_340_033
PROTOCOLS = {"state": 0, "task": 1}


@dataclass
class EpisodeSpec:
    """Everything that fixes one evaluation episode."""

    env: str
    seed: int
    goal_kind: str
    physics_state_start: list[float]
    target_pos: list[float]
    goal_qpos: list[float] | None
    budget: int  # control steps
    previous_qpos: list[float] | None = None  # pose one decision before the start, when known
    previous_action: list[float] | None = None  # the action that led from it to the start

    def reset_options(self) -> dict:
        options = {
            "goal_kind": self.goal_kind,
            "physics_state": np.asarray(self.physics_state_start),
            "target_pos": np.asarray(self.target_pos),
        }
        if self.goal_qpos is not None:
            options["goal_qpos"] = np.asarray(self.goal_qpos)
        return options


def _rng(protocol: str, seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([EVAL_STREAM, PROTOCOLS[protocol], seed, index])


def state_goal_episodes(env, count: int, seed: int, goal_offset: int = 25, budget: int = 50) -> list[EpisodeSpec]:
    """Protocol (a) on `env` (an envs.ReacherEnv; its action_repeat sets the decision length).

    goal_offset and budget are in control steps; goal_offset must be a multiple of the action repeat.
    """
    repeat = env.action_repeat
    if goal_offset % repeat:
        raise ValueError(f"goal_offset={goal_offset} is not a multiple of env.action_repeat={repeat}")
    specs = []
    for i in range(count):
        rng = _rng("state", seed, i)
        episode_seed = int(rng.integers(2**31 - 1))
        env.reset(seed=episode_seed)
        # Walk a random number of decisions first, so the start is mid-motion as on a trajectory.
        warmup = int(rng.integers(2, 11))
        previous_qpos, action = env.qpos, np.zeros(2, np.float32)
        for _ in range(warmup):
            previous_qpos = env.qpos
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            env.step(action)
        start, target = env.get_physics_state(), env.target_pos
        for _ in range(goal_offset // repeat):
            env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        specs.append(
            EpisodeSpec(
                env=env_name(env), seed=episode_seed, goal_kind="state", physics_state_start=start.tolist(),
                target_pos=target.tolist(), goal_qpos=env.qpos.tolist(), budget=budget,
                previous_qpos=previous_qpos.tolist(), previous_action=action.tolist(),
            )
        )
    return specs


def task_goal_episodes(env, count: int, seed: int, budget: int = 100) -> list[EpisodeSpec]:
    """Protocol (b) on `env`: dm_control's random start (at rest) and target."""
    specs = []
    for i in range(count):
        episode_seed = int(_rng("task", seed, i).integers(2**31 - 1))
        env.reset(seed=episode_seed)
        specs.append(
            EpisodeSpec(
                env=env_name(env), seed=episode_seed, goal_kind="task",
                physics_state_start=env.get_physics_state().tolist(), target_pos=env.target_pos.tolist(),
                goal_qpos=None, budget=budget,
            )
        )
    return specs


def env_name(env) -> str:
    return "reacher" if env.task == "easy" else "reacher-hard"


def make_episodes(protocol: str, env, count: int, seed: int, budget: int) -> list[EpisodeSpec]:
    if protocol == "state":
        return state_goal_episodes(env, count, seed, budget=budget)
    if protocol == "task":
        return task_goal_episodes(env, count, seed, budget=budget)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
