"""The typed schema of `python -m agent.run` (configs/run.yaml is checked against it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.configurator import ConfiguratorConfig
from agent.critic import CriticConfig
from world_model.train import TrainConfig


@dataclass
class EvalConfig:
    """What is evaluated and how."""

    episodes: int = 50
    """Episodes per protocol (the same episodes for the planner and each baseline)."""
    seed: int = 0
    """Seeds the evaluation episodes (held out from every dataset)."""
    protocols: list[str] = field(default_factory=lambda: ["state", "task"])
    """"state" (protocol a: joint-pose goals) and/or "task" (protocol b: dm_control's target)."""
    baselines: list[str] = field(default_factory=lambda: ["random", "zero"])
    """Baselines run on the same episodes: "random" and/or "zero" (doing nothing)."""
    videos: int = 3
    """Planner episodes per protocol written as mp4."""
    batch: int = 50
    """Episodes stepped and planned together (one batched planner call per decision)."""
    verify_replay: bool = True
    """Replay every planner record in plain dm_control and check it reaches the reported outcome."""


@dataclass
class RunConfig(TrainConfig):
    """`python -m agent.run` settings: the training settings, plus planning and evaluation."""

    stage: str = "all"
    """collect, train, eval, or all."""
    checkpoint: str | None = None
    """Evaluate this world-model checkpoint folder instead of training one."""
    planner: Any = field(default_factory=lambda: {"_target_": "planners.cem.CEM"})
    """Planner to instantiate (configs/planner); the configurator sets horizon and budget."""
    configurator: ConfiguratorConfig = field(default_factory=ConfiguratorConfig)
    """Per-env planning settings per goal kind (configs/configurator)."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """The reach critic trained on the world model's latents (configs/critic), used by the
    protocols whose configurator entry gives it a weight."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""
