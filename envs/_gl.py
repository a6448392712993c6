"""Headless OpenGL selection. Must run before mujoco is first imported, which reads MUJOCO_GL once."""

import os
import sys

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
        "MUJOCO_GL=egl, or with a display set MUJOCO_GL=glfw"
    )


# Renderers still open at interpreter exit are closed while EGL is still loaded; left to the
# garbage collector they try to free their context after EGL is gone and print EGLError noise.
_open_renderers: "weakref.WeakSet" = None  # type: ignore[assignment]


def track_renderer(renderer) -> None:
    global _open_renderers
    if _open_renderers is None:
        import atexit
        import weakref

        _open_renderers = weakref.WeakSet()
        atexit.register(lambda: [r.close() for r in list(_open_renderers)])
    _open_renderers.add(renderer)
