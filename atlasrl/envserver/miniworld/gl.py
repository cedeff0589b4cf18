"""Headless MiniWorld: import it with pyglet in headless mode and run every OpenGL call on one thread.

    mw = gl.load()                  # imports miniworld headless (EGL), once per process
    frame = gl.call(env.render_obs) # runs on this process's OpenGL thread

pyglet must be told ``headless`` before anything imports ``pyglet.window``: it
then opens an EGL pbuffer context instead of an X window (Mesa's llvmpipe on
CPU hosts, the NVIDIA EGL driver on GPU hosts). An OpenGL context is current on
one thread at a time, and pyglet caches "the current context" per process, not
per thread; the env server steps envs from a thread pool (workers=0) or the
worker's pipe threads, so all MiniWorld work of a process goes through a single
thread. Rendering already saturates a core, so nothing is lost by it; worker
processes (``workers > 0``) give the parallelism.
"""
from __future__ import annotations

import functools
import importlib.util
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
_EXECUTOR: ThreadPoolExecutor | None = None
_GL_THREAD: threading.Thread | None = None
_LOCK = threading.Lock()
FIX = ("Fix: pip install 'atlasrl[miniworld]' (or scripts/install.sh --miniworld); on Debian the EGL/Mesa "
       "libraries come from scripts/install-gl-driver.sh (libegl1 libegl-mesa0 libgl1-mesa-dri libglu1-mesa).")


class MiniWorldUnavailable(RuntimeError):
    """miniworld is not installed or cannot render here; the message names the fix."""


def installed() -> bool:
    return importlib.util.find_spec("miniworld") is not None and importlib.util.find_spec("pyglet") is not None


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(1, thread_name_prefix="miniworld-gl", initializer=_mark)
        return _EXECUTOR


def _mark() -> None:
    global _GL_THREAD
    _GL_THREAD = threading.current_thread()


def call(fn, *args: Any, **kwargs: Any):
    """fn(*args, **kwargs) on the OpenGL thread (directly when already on it)."""
    if threading.current_thread() is _GL_THREAD:
        return fn(*args, **kwargs)
    return _executor().submit(fn, *args, **kwargs).result()


@functools.cache
def load():
    """The miniworld module, imported headless (call on the OpenGL thread)."""
    if not installed():
        raise MiniWorldUnavailable(f"miniworld is not installed. {FIX}")
    import pyglet

    pyglet.options["headless"] = True
    try:
        import miniworld
    except Exception as e:  # a missing libEGL/libGL surfaces as ImportError or pyglet's own exceptions
        raise MiniWorldUnavailable(f"miniworld could not start headless rendering ({type(e).__name__}: {e}). {FIX}") from e
    return miniworld
