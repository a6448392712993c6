"""Simulated goal-image environments behind one interface (envs/base.py) and the gymnasium API.

`envs.make(name, **overrides)` builds one from the registry; `envs.replay(record)` re-simulates an
evaluation record with its family's simulator alone. MUJOCO_GL defaults to EGL (headless) and is
set here, before anything imports mujoco; a value that cannot render is refused by `make`, not at
import, so `--help` and replay work with any.
"""

from __future__ import annotations

import importlib
import inspect

from envs._gl import RenderingUnavailable, backend_problem, importable_backend, rendering_error, select_gl_backend

GL_BACKEND = select_gl_backend()  # MUJOCO_GL as mujoco reads it, once, at its import below

from envs._versions import check_simulator_versions

MUJOCO_VERSION, DM_CONTROL_VERSION = check_simulator_versions()
from importlib.metadata import version as _version

# recorded in dataset manifests
SIMULATOR_VERSIONS = {"mujoco": MUJOCO_VERSION, "dm_control": DM_CONTROL_VERSION, "pymunk": _version("pymunk")}

import gymnasium

from envs.base import EpisodeSpec, GoalEnv, GoalKind, setting_type_problems

# One line per env family: the module of its folder, which exports ENVS and replay (envs/base.py).
FAMILIES = [
    "envs.reacher",
    "envs.rooms",
    "envs.pusht",
]


def _load_family(module: str):
    try:
        return importlib.import_module(module)
    except (ImportError, AttributeError) as err:
        # dm_control loads the OpenGL backend named by MUJOCO_GL at import; without libEGL, PyOpenGL
        # fails with an AttributeError deep inside. Anything else is not ours to relabel.
        if "gl" not in f"{type(err).__name__} {err}".lower():
            raise
        raise rendering_error(err, at_import=True) from err


# name -> (class, fixed keyword arguments, family module). Overrides may set any other constructor argument.
REGISTRY: dict[str, tuple[type, dict, object]] = {}
with importable_backend(GL_BACKEND):
    for _module in map(_load_family, FAMILIES):
        for _name, (_cls, _fixed) in _module.ENVS.items():
            REGISTRY[_name] = (_cls, _fixed, _module)


def names() -> list[str]:
    return sorted(REGISTRY)


def _entry(name: str):
    if name not in REGISTRY:
        raise ValueError(f"unknown env {name!r}; valid names: {', '.join(names())}")
    return REGISTRY[name]


def make(name: str, **overrides) -> GoalEnv:
    """Builds the environment registered as `name`, with constructor arguments overridden."""
    cls, fixed, _ = _entry(name)
    allowed = set(inspect.signature(cls).parameters) - set(fixed)
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"env {name!r} has no setting(s) {sorted(unknown)}; valid: {', '.join(sorted(allowed))}")
    wrong = setting_type_problems(cls, overrides)
    if wrong:
        raise ValueError(f"env {name!r}: {'; '.join(wrong)}")
    problem = backend_problem(GL_BACKEND)
    if problem:  # here, not at import: `--help` and replay need no rendering
        raise RenderingUnavailable(problem)
    return cls(**fixed, **overrides)


def replay(record: dict) -> dict:
    """Re-simulates an evaluation record (agent/episode_record.py) with the simulator alone, through its
    family's replay: {"final_state": list, "success": bool, "distance": float}."""
    return _entry(record["env"])[2].replay(record)


__all__ = [
    "DM_CONTROL_VERSION",
    "MUJOCO_VERSION",
    "REGISTRY",
    "SIMULATOR_VERSIONS",
    "EpisodeSpec",
    "GoalEnv",
    "GoalKind",
    "gymnasium",
    "make",
    "names",
    "replay",
]
