"""One source per default (issue 27): the Python schema (a dataclass, or a class's signature) holds every
default, and each shipped YAML under configs/ writes only what it must.

A key of a YAML file must be a setting of its schema (else a typo: the line names the file and key), and
  - a value equal to the Python default is not written again, unless the node is hashed as written (an
    env's settings and data.behaviour key the dataset's cache, a planner's settings the evaluation's
    identity in evaluation.json), where dropping it would change a key, or the file resets a value that
    a file of its group it inherits sets (reacher-hard's `- reacher`), with a comment saying why;
  - a value that differs from the Python default is a deliberate choice of that file, with a comment on
    its line saying why (or pointing to docs/NOTEBOOK.md); never in a group's default option (the file
    the defaults lists pick by name when nothing is overridden, and run/train/collect.yaml themselves),
    whose values are the Python defaults by definition: a difference there is drift (token_dim was 4
    in WorldModelConfig while the shipped tokens.yaml said 12).

A new config group is one line of GROUPS.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import shutil
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from agent.collect import CollectConfig, DataConfig
from agent.configurator import TaskSettings
from agent.critic import CriticConfig
from agent.landmarks import LandmarkConfig
from agent.onpolicy import OnPolicyConfig
from agent.prior import PriorConfig
from agent.readout import ReadoutConfig
from agent.run_config import RunConfig
from world_model.decoder import DecoderConfig
from world_model.ensemble import EnsembleConfig
from world_model.losses import LossConfig
from world_model.macro import MacroConfig
from world_model.model import WorldModelConfig
from world_model.refit import RefitConfig
from world_model.train import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRIMARY = ("run", "train", "collect")  # the configs the entry points compose (their groups' defaults lists)
REQUIRED = object()  # a setting without a Python default (an env's name, a planner's _target_)


@dataclass(frozen=True)
class Field:
    default: Any = REQUIRED
    nested: Callable | None = None  # (the node's values, file) -> Schema of a nested node; None: a value
    hashed: bool = False  # written keys are hashed as written, so restating a default keeps a key stable


@dataclass(frozen=True)
class Schema:
    name: str
    fields: dict[str, Field]


def dataclass_schema(cls, hashed: bool = False) -> Callable[[Any, Any], Schema]:
    """The fields of dataclass `cls`: nested dataclasses and dict[str, <dataclass>] are nested schemas."""

    def schema(values, rel) -> Schema:
        hints = typing.get_type_hints(cls)
        fields = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = REQUIRED
            kind, nested = hints[f.name], None
            if dataclasses.is_dataclass(kind):
                nested = dataclass_schema(kind, hashed)
            elif typing.get_origin(kind) is dict and dataclasses.is_dataclass(typing.get_args(kind)[1]):
                nested = each(typing.get_args(kind)[1])
            fields[f.name] = Field(default, nested, hashed)
        return Schema(cls.__name__, fields)

    return schema


def each(cls) -> Callable[[Any, Any], Schema]:
    """A mapping of names (goal kinds) to `cls` nodes."""
    return lambda values, rel: Schema(f"dict[str, {cls.__name__}]",
                                      {k: Field(REQUIRED, dataclass_schema(cls)) for k in values})


def signature_schema(cls, name: str, skip=(), hashed: bool = True) -> Schema:
    """The keyword arguments of `cls` and their defaults (hashed: these nodes are untyped in RunConfig,
    so the keys written are the keys hashed)."""
    fields = {k: Field(REQUIRED if p.default is inspect.Parameter.empty else p.default, hashed=hashed)
              for k, p in inspect.signature(cls).parameters.items() if k not in skip}
    return Schema(name, fields)


def env_of(rel: str) -> str:
    """The env of configs/<group>/<env>.yaml (test_configs: each env's name is its file's)."""
    return Path(rel).stem


def env_schema(values, rel) -> Schema:
    """configs/env/<name>.yaml: `name`, then constructor arguments of the class envs.REGISTRY holds for it."""
    import envs

    name = env_of(rel)
    cls, fixed, _ = envs.REGISTRY[name]
    schema = signature_schema(cls, f"{cls.__name__} (env {name})", skip=fixed)
    return Schema(schema.name, {"name": Field(), **schema.fields})


def planner_schema(values, rel) -> Schema:
    """configs/planner: `_target_` names the class; a nested node (with its own `_target_`) is a planner
    too; a hierarchical planner's `subgoal_search` block holds SubgoalSearch's settings and its planner."""
    from hydra.utils import get_class

    schema = signature_schema(get_class(values["_target_"]), values["_target_"])
    fields = {k: dataclasses.replace(f, nested=planner_schema) if isinstance(values.get(k), Mapping) else f
              for k, f in schema.fields.items()}
    return Schema(schema.name, {"name": Field(), "_target_": Field(), **fields,
                                "subgoal_search": Field(REQUIRED, subgoal_search_schema, hashed=True)})


def subgoal_search_schema(values, rel) -> Schema:
    """A hierarchical planner's high level: SubgoalSearch's settings, and `planner`, the search's planner."""
    from planners.subgoal_search import SubgoalSearch

    schema = signature_schema(SubgoalSearch, "SubgoalSearch", skip=("planner",))
    return Schema(schema.name, {**schema.fields, "planner": Field(REQUIRED, planner_schema, hashed=True)})


def data_schema(values, rel) -> Schema:
    """DataConfig, with `behaviour` the env family's BehaviourConfig (hashed: the dataset's cache key)."""
    import envs

    cls = envs.REGISTRY[env_of(rel)][0]
    behaviour = sys.modules[cls.behaviour_policy.__module__].BehaviourConfig
    schema = dataclass_schema(DataConfig)(values, rel)
    fields = {**schema.fields, "behaviour": Field({}, dataclass_schema(behaviour, hashed=True), hashed=True)}
    return Schema(schema.name, fields)


# (files under configs/, their schema). A new config group is one line here.
GROUPS = [
    ("run.yaml", dataclass_schema(RunConfig)),
    ("train.yaml", dataclass_schema(TrainConfig)),
    ("collect.yaml", dataclass_schema(CollectConfig)),
    ("schedule/*.yaml", dataclass_schema(RunConfig)),  # @package _global_: keys of the whole run
    ("env/*.yaml", env_schema),
    ("data/*.yaml", data_schema),
    ("world_model/*.yaml", dataclass_schema(WorldModelConfig)),
    ("loss/*.yaml", dataclass_schema(LossConfig)),
    ("planner/*.yaml", planner_schema),
    ("configurator/*.yaml", each(TaskSettings)),
    ("critic/*.yaml", dataclass_schema(CriticConfig)),
    ("macro/*.yaml", dataclass_schema(MacroConfig)),
    ("ensemble/*.yaml", dataclass_schema(EnsembleConfig)),
    ("readout/*.yaml", dataclass_schema(ReadoutConfig)),
    ("prior/*.yaml", dataclass_schema(PriorConfig)),
    ("refit/*.yaml", dataclass_schema(RefitConfig)),
    ("onpolicy/*.yaml", dataclass_schema(OnPolicyConfig)),
    ("landmarks/*.yaml", dataclass_schema(LandmarkConfig)),
    ("decoder/*.yaml", dataclass_schema(DecoderConfig)),
]
PENDING: list = []  # (pattern, schema) of files not checked yet, each with its reason; none today
# Shipped files no Python schema of this repository describes.
NOT_OURS = {
    "hydra/launcher/*.yaml": "settings of hydra-submitit-launcher's SlurmQueueConf, an optional extra; "
                             "test_configs composes slurm.yaml against it",
}


def group_defaults(configs: Path) -> dict[str, str]:
    """group -> the option the primary configs' defaults lists pick (an env's own: `${env}`)."""
    picks = {}
    for name in PRIMARY:
        for entry in OmegaConf.to_container(OmegaConf.load(configs / f"{name}.yaml").defaults):
            if isinstance(entry, str):
                continue
            (group, option), = entry.items()
            picks[group.removeprefix("optional ")] = option
    return picks


def default_options(configs: Path) -> set[str]:
    """Files whose values are the Python defaults: the primary configs and the option each group picks by
    name when nothing is overridden. Not the groups picked by the env's name (`${env}`): each env's file
    holds that env's own choices (the reacher's settings per goal kind are not TaskSettings' defaults)."""
    picks = group_defaults(configs)
    return {f"{name}.yaml" for name in PRIMARY} | {
        f"{group}/{option}.yaml" for group, option in picks.items() if "${" not in option}


def key_lines(text: str) -> dict[tuple, tuple[int, int, int]]:
    """key path -> (first line, last line of its value, the key's column), 0-based."""
    spans = {}

    def last_line(node) -> int:
        if isinstance(node, yaml.ScalarNode):
            return node.start_mark.line
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
        return max([node.start_mark.line, *map(last_line, children)])

    def walk(node, prefix: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = (*prefix, key.value)
                spans[path] = (key.start_mark.line, last_line(value), key.start_mark.column)
                walk(value, path)

    walk(yaml.compose(text), ())
    return spans


def has_why(lines: list[str], first: int, last: int, column: int) -> bool:
    """A comment on the key's lines, or on comment-only lines right below them indented past the key."""
    if any(re.search(r"(^|\s)#", line) for line in lines[first : last + 1]):
        return True
    below = lines[last + 1] if last + 1 < len(lines) else ""
    return below.lstrip().startswith("#") and len(below) - len(below.lstrip()) > column


def file_problems(configs: Path, rel: str, schema_of, is_default: bool) -> list[str]:
    """Every key of configs/<rel> against the schema of the node it lands in (see the module docstring)."""
    text = (configs / rel).read_text()
    own = OmegaConf.to_container(OmegaConf.load(configs / rel)) or {}
    lines, spans = text.splitlines(), key_lines(text)
    problems = []
    base = inherited(configs, rel, own)

    def check(values: dict, schema: Schema, prefix: tuple) -> None:
        for key, value in values.items():
            if not prefix and key in ("defaults", "hydra"):  # hydra's wiring and its own settings
                continue
            path = (*prefix, key)
            first, last, column = spans[path]
            where = f"{rel}:{first + 1} {'.'.join(path)}"
            field = schema.fields.get(key)
            if field is None:
                problems.append(f"{where}: not a setting of {schema.name}")
            elif field.nested is not None and isinstance(value, dict):
                check(value, field.nested(value, rel), path)
            elif field.default is REQUIRED:
                continue
            elif value == field.default and (was := OmegaConf.select(base, ".".join(path), default=value)) != value:
                if not has_why(lines, first, last, column):  # it resets what the file inherits: say why
                    problems.append(f"{where}: {value!r} resets the inherited {was!r} without a comment on its line "
                                    "saying why")
            elif value == field.default:
                if not field.hashed:
                    problems.append(f"{where}: restates {schema.name}'s default {field.default!r}; drop it")
            elif is_default and not field.hashed:
                problems.append(f"{where}: {value!r} in the group's default option, but {schema.name}'s default "
                                f"is {field.default!r}; change the Python default, or make it an option of its own")
            elif not has_why(lines, first, last, column):
                problems.append(f"{where}: {value!r} differs from {schema.name}'s default {field.default!r} "
                                "without a comment on its line saying why")

    check(own, schema_of(own, rel), ())
    return problems


def inherited(configs: Path, rel: str, own: dict):
    """What the files of its own group that configs/<rel>'s defaults list names set, merged into one config
    (reacher-hard's `- reacher`): a file may set a Python default again where it resets one of theirs."""
    merged = OmegaConf.create()
    siblings = [(configs / rel).with_name(f"{entry}.yaml") for entry in own.get("defaults", [])
                if isinstance(entry, str) and entry != "_self_"]
    for sibling in siblings:
        if sibling.exists():
            merged = OmegaConf.merge(merged, OmegaConf.load(sibling))
    return merged


def files(configs: Path, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(configs)) for p in configs.glob(pattern))


def drift(configs: Path) -> list[str]:
    """Every problem of every file GROUPS checks."""
    defaults = default_options(configs)
    return [problem for pattern, schema in GROUPS for rel in files(configs, pattern)
            for problem in file_problems(configs, rel, schema, rel in defaults)]


def test_every_shipped_yaml_has_its_defaults_from_python():
    assert drift(CONFIGS) == []


def test_every_shipped_yaml_is_in_the_table_or_says_why_not():
    """A new group must be added to GROUPS (or PENDING, or NOT_OURS with its reason), so none goes unchecked."""
    shipped = set(files(CONFIGS, "**/*.yaml"))
    checked = [rel for pattern, _ in GROUPS for rel in files(CONFIGS, pattern)]
    excused = [rel for pattern in [p for p, _ in PENDING] + list(NOT_OURS) for rel in files(CONFIGS, pattern)]
    assert len(checked) == len(set(checked)), "a file is matched by two GROUPS lines"
    assert not set(checked) & set(excused)
    assert shipped - set(checked) - set(excused) == set()
    assert all(files(CONFIGS, p) for p, _ in PENDING) and all(files(CONFIGS, p) for p in NOT_OURS)  # none stale


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_drift_typos_restated_and_unexplained_values_are_each_named_by_file_and_key(tmp_path):
    """The check is not vacuous: a copy of configs/ with one of each fault reports exactly those."""
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    # the drift issue 27 found: the default option said 12, the dataclass 4
    (configs / "world_model" / "tokens.yaml").write_text("token_dim: 4   # D = 256\n")
    # a training setting written again in run.yaml, one that differs from TrainConfig's
    _rewrite(configs / "run.yaml", "hydra:\n", "optim:\n  lr: 2.0e-3\n  grad_clip: 1.0\nhydra:\n")
    # a typo, and a deliberate value whose comment was lost
    (configs / "macro" / "default.yaml").write_text("stpes: 10\n")
    _rewrite(configs / "critic" / "pusht.yaml", "cap: 40.0            #", "cap: 40.0\n#")
    # an env setting hashed as written: restating its default is allowed, a wrong name is not
    with open(configs / "env" / "two-rooms.yaml", "a") as f:
        f.write("goal_knid: near\n")
    # a Python default set again to reset what the file inherits (reacher-hard's `- reacher`), its comment lost
    _rewrite(configs / "configurator" / "reacher-hard.yaml", "readout_weight: 0.0  #", "readout_weight: 0.0\n#")
    lines = {rel: (configs / rel).read_text().splitlines()
             for rel in ("run.yaml", "env/two-rooms.yaml", "critic/pusht.yaml", "configurator/reacher-hard.yaml")}
    run_lr = lines["run.yaml"].index("  lr: 2.0e-3") + 1
    knid = lines["env/two-rooms.yaml"].index("goal_knid: near") + 1
    cap = lines["critic/pusht.yaml"].index("cap: 40.0") + 1
    reset = lines["configurator/reacher-hard.yaml"].index("  readout_weight: 0.0") + 1
    assert sorted(drift(configs)) == sorted([
        "world_model/tokens.yaml:1 token_dim: 4 in the group's default option, but WorldModelConfig's default is "
        "12; change the Python default, or make it an option of its own",
        f"run.yaml:{run_lr} optim.lr: 0.002 in the group's default option, but OptimConfig's default is 0.001; "
        "change the Python default, or make it an option of its own",
        f"run.yaml:{run_lr + 1} optim.grad_clip: restates OptimConfig's default 1.0; drop it",
        "macro/default.yaml:1 stpes: not a setting of MacroConfig",
        f"critic/pusht.yaml:{cap} cap: 40.0 differs from CriticConfig's default 20.0 without a comment on its line "
        "saying why",
        f"env/two-rooms.yaml:{knid} goal_knid: not a setting of TwoRoomsEnv (env two-rooms)",
        f"configurator/reacher-hard.yaml:{reset} state.readout_weight: 0.0 resets the inherited 0.5 without a comment "
        "on its line saying why",
    ])

