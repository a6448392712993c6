"""The typed schema of `python -m agent.run` (configs/run.yaml is checked against it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.collect import DataConfig
from agent.configurator import TaskSettings
from agent.critic import CriticConfig
from agent.landmarks import LandmarkConfig
from agent.onpolicy import OnPolicyConfig
from agent.prior import PriorConfig
from agent.readout import ReadoutConfig
from world_model.decoder import DecoderConfig
from world_model.ensemble import EnsembleConfig
from world_model.macro import MacroConfig
from world_model.refit import RefitConfig
from world_model.train import TrainConfig


@dataclass
class EvalConfig:
    """What is evaluated and how."""

    episodes: int = 50
    """Episodes per goal kind (the same episodes for the planner and each baseline)."""
    seed: int = 0
    """Seeds the evaluation episodes (held out from every dataset)."""
    goal_kinds: list[str] | None = None
    """Goal kinds to evaluate (the env's goal_kinds); None = every one the env offers."""
    baselines: list[str] = field(default_factory=lambda: ["random", "zero"])
    """Baselines run on the same episodes: "random" and/or "zero" (doing nothing)."""
    videos: int = 3
    """Planner episodes per goal kind written as videos (videos/<goal kind>-NN.mp4): real |
    imagined | goal, one frame per control step; 0 = none (and no decoder is trained)."""
    video_size: int = 256
    """Pixels per video panel side, rendered for viewing (independent of the model's frame size)."""
    batch: int = 50
    """Episodes stepped and planned together (one batched planner call per decision)."""
    verify_replay: bool = True
    """Replay every planner record with the simulator alone and check it reaches the reported outcome."""


@dataclass
class RunConfig(TrainConfig):
    """`python -m agent.run` settings: the environment and its data, the training settings (TrainConfig's,
    the one place they are written), plus planning and evaluation. `steps` (the world model's training
    steps) is TrainConfig's unless configs/schedule/<env>.yaml sets the env's own."""

    resume: bool = True
    """An interrupted training continues where it stopped (world_model.train's own default is False)."""

    env: Any = field(default_factory=dict)
    """The environment (configs/env/<name>.yaml; any constructor argument of its class)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The offline video (configs/data/<env>.yaml); collected first if it is not cached."""
    envs: list[str] | None = None
    """Train one world model shared by these envs (e.g. [<env A>,<env B>], `env` among them)
    instead of a model of `env` alone: each env's video is collected with its own data settings at
    this run's env.image_size, and `steps` and `dataset_weights` are the shared model's (agent/shared_envs.py)."""
    stage: str = "all"
    """collect, train, eval, or all."""
    checkpoint: str | None = None
    """Evaluate this world-model checkpoint folder instead of training one."""
    planner: Any = field(default_factory=lambda: {"name": "cem", "_target_": "planners.cem.CEM"})
    """Planner to instantiate (configs/planner/<name>.yaml: its name, _target_ and settings); the
    configurator sets the horizon and applies its per-goal-kind overrides for that name."""
    configurator: dict[str, TaskSettings] = field(default_factory=dict)
    """Planning settings per goal kind of the env (configs/configurator/<env>.yaml)."""
    refit: RefitConfig = field(default_factory=RefitConfig)
    """A predictor refitted on the trained model's frozen latents (configs/refit; on for the envs whose
    configs/schedule file gives it steps), which then replaces the model's own for planning."""
    onpolicy: OnPolicyConfig = field(default_factory=OnPolicyConfig)
    """Episodes the planner plays with the refitted model, and the refit's training on them (configs/onpolicy;
    on for the envs whose configs/schedule file gives it episodes), before the evaluation."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """The reach critic trained on the world model's latents (configs/critic), used by the goal
    kinds whose configurator entry gives it a weight."""
    macro: MacroConfig = field(default_factory=MacroConfig)
    """The level-2 predictor (configs/macro), trained on the world model's latents when the
    planner is hierarchical."""
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    """The predictor ensemble (configs/ensemble), trained on the world model's latents when a goal
    kind gives the model disagreement a weight (configurator: disagreement_weight)."""
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    """The probe readout (configs/readout), fitted on the world model's latents when a goal kind
    gives the readout distance a weight (configurator: readout_weight)."""
    prior: PriorConfig = field(default_factory=PriorConfig)
    """The action prior (configs/prior), fitted on the world model's latents when a goal kind starts
    its planner from it (configurator: warm_start=prior)."""
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    """The graph of the training video's frames (configs/landmarks), built from the world model's
    latents when a goal kind's goal source needs it (configurator: goal_source=graph)."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The pixel decoder (configs/decoder), trained on the world model's latents when videos are
    written, for their imagined panel."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""


def compose_run(overrides: list[str]):
    """The run config `python -m agent.run <overrides>` builds (a DictConfig), from inside a running
    hydra app (agent.run's own, whose config path is configs/) or from outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("run", overrides=overrides)
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        return compose("run", overrides=overrides)
