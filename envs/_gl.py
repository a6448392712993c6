"""Headless OpenGL selection. Must run before mujoco is first imported, which reads MUJOCO_GL once."""

import atexit
import os
import sys
import weakref
from contextlib import contextmanager

DEFAULT_BACKEND = "egl"
# The values of MUJOCO_GL that mujoco and dm_control both accept (dm_control/_render/constants.py):
# the three backends, dm_control's other names for glfw, and the words for "no rendering".
BACKENDS = ("egl", "osmesa", "glfw")
GLFW_ALIASES = ("on", "enable", "enabled", "true", "1", "")
OFF = ("off", "disable", "disabled", "false", "0")
INSTALL_HINT = (
    "on a headless Linux machine install EGL (Debian/Ubuntu: `apt-get install libegl1 libgl1`) and set MUJOCO_GL=egl, "
    "or install OSMesa (`apt-get install libosmesa6`) and set MUJOCO_GL=osmesa (software, slower), "
    "or with a display set MUJOCO_GL=glfw"
)


def select_gl_backend() -> str:
    """Sets MUJOCO_GL to EGL unless the user chose a backend, and returns the one in force."""
    if "mujoco" not in sys.modules:
        os.environ.setdefault("MUJOCO_GL", DEFAULT_BACKEND)
    return os.environ.get("MUJOCO_GL", DEFAULT_BACKEND)


@contextmanager
def importable_backend(backend: str):
    """mujoco and dm_control raise at import on a MUJOCO_GL they do not know, which broke even
    `python -m agent.run --help`. Under an unknown value they are imported with rendering off,
    MUJOCO_GL is put back (spawned workers see the user's value), and `backend_problem` makes
    envs.make refuse it."""
    if "mujoco" in sys.modules or backend in BACKENDS + GLFW_ALIASES + OFF:
        yield
        return
    os.environ["MUJOCO_GL"] = "disable"
    try:
        yield
    finally:
        os.environ["MUJOCO_GL"] = backend


def backend_problem(backend: str) -> str | None:
    """None when MUJOCO_GL (as it was when mujoco was imported) names a way to render; otherwise
    the one line saying why an env cannot be made and what to set."""
    if backend in OFF:
        return (f"MUJOCO_GL={backend} turns rendering off, but every env renders its observations; "
                f"rendering is needed here: {INSTALL_HINT}")
    if backend not in BACKENDS + GLFW_ALIASES:
        return f"MUJOCO_GL={backend!r} is not a rendering backend; set MUJOCO_GL to one of egl, osmesa, glfw"
    return None


class RenderingUnavailable(RuntimeError):
    """No OpenGL backend could create a context for offscreen rendering."""


def rendering_error(err: Exception, at_import: bool = False) -> RenderingUnavailable:
    backend = os.environ.get("MUJOCO_GL", "")
    if at_import:
        # only then can a step without rendering (training from a collected dataset) still help
        return RenderingUnavailable(
            f"loading the OpenGL backend MUJOCO_GL={backend!r} failed ({type(err).__name__}: {err}); {INSTALL_HINT}; "
            "to train from a collected dataset without rendering, set MUJOCO_GL=disable"
        )
    return RenderingUnavailable(
        f"offscreen rendering with MUJOCO_GL={backend!r} failed ({type(err).__name__}: {err}); rendering is needed "
        f"here: {INSTALL_HINT}"
    )


# Renderers still open at interpreter exit are closed while EGL is still loaded; left to the
# garbage collector they try to free their context after EGL is gone and print EGLError noise.
# The hook is registered at the first renderer, after mujoco's own EGL teardown hook, because
# atexit runs hooks last-registered first.
_open_renderers: "weakref.WeakSet" = weakref.WeakSet()


def _close_open_renderers() -> None:
    for renderer in list(_open_renderers):
        renderer.close()


def track_renderer(renderer) -> None:
    if not _open_renderers:
        atexit.unregister(_close_open_renderers)
        atexit.register(_close_open_renderers)
    _open_renderers.add(renderer)
