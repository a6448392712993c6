"""Headless OpenGL selection (it must run before mujoco is first imported, which reads MUJOCO_GL once),
and the offscreen renderers envs share (shared_renderer)."""

import atexit
import os
import sys
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


# ----------------------------------------------------------------------------- shared renderers
def close_renderer(renderer) -> None:
    """Closes a mujoco.Renderer with its own GL context current. Renderer.close frees its GL
    objects in whatever context is current, and another renderer's context is current after that
    one rendered: its framebuffers are freed instead, and its later frames come out black or
    stale (a renderer left to the garbage collector does the same). Making the closing renderer's
    context current first frees its own; every render makes its renderer's context current again."""
    context = getattr(renderer, "_gl_context", None)  # mujoco 3.17's Renderer; None without GL
    if context is not None and getattr(renderer, "_mjr_context", None) is not None:
        context.make_current()
    renderer.close()


class SharedRenderer:
    """One offscreen renderer (a GL context, its MjrContext and a scene) that draws for every env
    holding it, so a batch of envs costs one context instead of one each (in software EGL about
    75 MB and 0.5 s each for the reacher).

    Envs may share one when their models are compiled from the same model file: the MjrContext
    holds what comes from the file (textures, meshes, framebuffer and shadow-map sizes), and each
    render builds the scene from the env's own model and data (mjv_updateScene), so what differs
    between instances (a target moved, a geom resized) is drawn as that env's: frames are byte for
    byte those of a renderer of the env's own. Handed out by `shared_renderer`; each holder calls
    `release` once, and the last release closes it.
    """

    def __init__(self, key: tuple, model, height: int, width: int, flags: dict):
        import mujoco

        self.key, self.holders = key, 0
        self._signature = _model_signature(model)
        try:
            self._renderer = mujoco.Renderer(model, height, width)
        except Exception as err:  # any GL failure surfaces as one actionable error
            raise rendering_error(err) from err
        for flag, on in flags.items():  # scene flags survive mjv_updateScene: set once
            self._renderer.scene.flags[flag] = on
        self._option = mujoco.MjvOption()  # what Renderer.update_scene uses by default

    def check_model(self, model) -> None:
        if _model_signature(model) != self._signature:
            raise ValueError(f"a model of another structure cannot share the renderer of {self.key[0]!r}")

    def render(self, model, data, camera: str):
        """uint8 [H, W, 3]: the scene of `model` and `data` from the model's camera named `camera`
        (what Renderer.update_scene(data, camera) then render() draw, with `model` in place of the
        renderer's own)."""
        import mujoco

        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        cam.fixedcamid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cam.fixedcamid < 0:
            raise ValueError(f"the model has no camera named {camera!r}")
        mujoco.mjv_updateScene(model, data, self._option, None, cam, mujoco.mjtCatBit.mjCAT_ALL, self._renderer.scene)
        return self._renderer.render()

    def release(self) -> None:
        """One holder is done; the last one closes the renderer."""
        self.holders -= 1
        if self.holders == 0:
            if _shared.get(self.key) is self:
                del _shared[self.key]
            close_renderer(self._renderer)


def _model_signature(model) -> tuple:
    """What must agree between models drawn by one MjrContext and scene."""
    return tuple(int(getattr(model, n)) for n in ("nbody", "ngeom", "nmat", "ntex", "ntexdata", "nmesh", "ncam", "nlight",
                                                   "nskin", "nflex", "nhfield"))


# key -> the renderer envs share; held strongly, so none is left to the garbage collector
_shared: dict[tuple, SharedRenderer] = {}


def shared_renderer(model_file: str, model, height: int, width: int, flags: dict | None = None) -> SharedRenderer:
    """The renderer every env of `model_file` (a name for the model file its model was compiled
    from) at height x width with these scene flags ({mjtRndFlag: bool}) shares in this process,
    made from `model` when none is open; the caller holds it until it calls `release`. Any
    visual settings that size the GL context (model.vis.quality, model.vis.global_) must be set
    on `model` before the first call, the same for every holder."""
    flags = dict(flags or {})
    key = (model_file, height, width, tuple(sorted((int(f), bool(v)) for f, v in flags.items())))
    renderer = _shared.get(key)
    if renderer is None:
        renderer = SharedRenderer(key, model, height, width, flags)
        if not _shared:
            # Renderers open at interpreter exit are closed while EGL is still loaded; left to
            # the garbage collector they free their context after EGL is gone and print EGLError
            # noise. Registered at the first renderer, after mujoco's own EGL teardown hook,
            # because atexit runs hooks last-registered first.
            atexit.unregister(_close_shared)
            atexit.register(_close_shared)
        _shared[key] = renderer
    else:
        renderer.check_model(model)
    renderer.holders += 1
    return renderer


def _close_shared() -> None:
    for renderer in list(_shared.values()):
        renderer.holders = 1
        renderer.release()
