"""Simulated environments behind the gymnasium API.

`envs.make(name, **overrides)` builds one from the registry below. MUJOCO_GL defaults to EGL
(headless) and is set here, before anything imports mujoco.
"""

from __future__ import annotations

import inspect

from envs._gl import rendering_error, select_gl_backend

select_gl_backend()

from envs._versions import check_simulator_versions  # noqa: E402

MUJOCO_VERSION, DM_CONTROL_VERSION = check_simulator_versions()

import gymnasium  # noqa: E402

try:
    from envs.reacher import ReacherEnv  # noqa: E402
except (ImportError, AttributeError) as err:
    # dm_control loads the OpenGL backend named by MUJOCO_GL at import; without libEGL, PyOpenGL
    # fails with an AttributeError deep inside. Anything else is not ours to relabel.
    if "gl" not in f"{type(err).__name__} {err}".lower():
        raise
    raise rendering_error(err) from err

# name -> (class, fixed keyword arguments). Overrides may set any other constructor argument.
REGISTRY = {
    "reacher": (ReacherEnv, {"task": "easy"}),
    "reacher-hard": (ReacherEnv, {"task": "hard"}),
}


def names() -> list[str]:
    return sorted(REGISTRY)


def make(name: str, **overrides) -> gymnasium.Env:
    """Builds the environment registered as `name`, with constructor arguments overridden."""
    if name not in REGISTRY:
        raise ValueError(f"unknown env {name!r}; valid names: {', '.join(names())}")
    cls, fixed = REGISTRY[name]
    allowed = set(inspect.signature(cls).parameters) - set(fixed)
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"env {name!r} has no setting(s) {sorted(unknown)}; valid: {', '.join(sorted(allowed))}")
    return cls(**fixed, **overrides)


__all__ = ["make", "names", "REGISTRY", "ReacherEnv", "MUJOCO_VERSION", "DM_CONTROL_VERSION"]
