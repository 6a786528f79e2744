"""Pick VisPy's app backend once per process: ``egl`` (headless screenshots) or ``pyside6`` (the window); and the
``jupyter_rfb`` application of canvases shown inside Jupyter (:func:`jupyter_app`), whatever the default is.

``EGL_PLATFORM=surfaceless`` must be in the environment before VisPy loads EGL, so it is set here, before the
first VisPy import; only one app backend can be selected per process, so a process that already has one keeps
it (``canvas.render()`` works offscreen on either).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Any

from onnx_geom.errors import DeviceError


def use_backend(name: str) -> str:
    """Select VisPy's app backend ``name`` (``"egl"`` or ``"pyside6"``) unless one is already in use; return
    the backend in use."""
    if name == "egl":
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    try:
        import vispy
        from vispy.app import _default_app
    except ImportError:
        raise DeviceError("the viewer needs VisPy; install it with `pip install 'onnx-geom[viewer]'`.") from None
    if _default_app.default_app is not None:
        return _default_app.default_app.backend_name.lower()
    try:
        vispy.use(app=name)
        _default_app.use_app(name)
    except Exception as error:  # VisPy raises RuntimeError/ImportError with backend-specific texts
        hint = (
            "install Mesa's EGL (apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri)"
            if name == "egl"
            else "install PySide6 (`pip install 'onnx-geom[viewer]'`) and run it with a display"
        )
        raise DeviceError(f"VisPy cannot use the {name} backend ({error}); {hint}.") from None
    return name


_JUPYTER: Any = None


def jupyter_app() -> Any:
    """VisPy's ``jupyter_rfb`` application, for canvases shown as widgets inside Jupyter; the process's default app
    (EGL for screenshots) is left as it is. Its offscreen OpenGL context comes from EGL where Mesa's EGL is
    installed (no display needed), else from whatever VisPy finds."""
    global _JUPYTER
    if _JUPYTER is not None:
        return _JUPYTER
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    try:
        from vispy import app
    except ImportError:
        raise DeviceError("the viewer needs VisPy; install it with `pip install 'onnx-geom[viewer]'`.") from None
    if importlib.util.find_spec("jupyter_rfb") is None:
        raise DeviceError(
            "the viewer inside Jupyter needs jupyter_rfb; install it with `pip install 'onnx-geom[viewer,notebook]'`."
        )
    with contextlib.suppress(Exception):  # loaded, EGL is the first backend VisPy tries for the offscreen context
        import vispy.ext.egl  # noqa: F401
    _JUPYTER = app.Application("jupyter_rfb")
    return _JUPYTER
