"""Headless OpenGL selection. Must run before mujoco is first imported, which reads MUJOCO_GL once."""

import atexit
import os
import sys
import weakref

DEFAULT_BACKEND = "egl"


def select_gl_backend() -> str:
    """Sets MUJOCO_GL to EGL unless the user chose a backend, and returns the one in force."""
    if "mujoco" not in sys.modules:
        os.environ.setdefault("MUJOCO_GL", DEFAULT_BACKEND)
    return os.environ.get("MUJOCO_GL", DEFAULT_BACKEND)


class RenderingUnavailable(RuntimeError):
    """No OpenGL backend could create a context for offscreen rendering."""


def rendering_error(err: Exception) -> RenderingUnavailable:
    backend = os.environ.get("MUJOCO_GL", "")
    return RenderingUnavailable(
        f"offscreen rendering with MUJOCO_GL={backend!r} failed ({type(err).__name__}: {err}); "
        "on a headless Linux machine install EGL (Debian/Ubuntu: `apt-get install libegl1 libgl1`) and set "
        "MUJOCO_GL=egl, or with a display set MUJOCO_GL=glfw; to train from a collected dataset without "
        "rendering, set MUJOCO_GL=disable"
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
