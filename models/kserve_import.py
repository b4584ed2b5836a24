"""Import KServe for the predictor without the modules a model server never runs: the Kubernetes client, httpx's CLI.

`kserve/__init__.py` (kserve 0.21.0) runs `from .api.kserve_client import KServeClient`, and that module
imports the Kubernetes client (with google-auth, requests-oauthlib, jsonschema, tabulate), though nothing in
KServe's model server uses it (only `__init__` names it); `httpx/__init__.py` imports `httpx._main` (rich,
pygments) for the `httpx` command. `import_kserve()` lets both in as stand-ins: the first touch of anything
in one (`kserve.KServeClient(...)`, an isinstance check, a subclass, `httpx.main(...)`, any other attribute)
imports the real module and hands over to it, so code that does use them gets the real thing.
"""

from __future__ import annotations

import gc
import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
from typing import Any

# module -> the names others take from it when they import (kserve/__init__.py, httpx/__init__.py).
DEFERRED: dict[str, tuple[str, ...]] = {"kserve.api.kserve_client": ("KServeClient",), "httpx._main": ("main",)}
_lock = threading.RLock()


def import_kserve() -> types.ModuleType:
    """`import kserve`, with the DEFERRED modules as stand-ins, and the cyclic GC paused meanwhile.

    The pause: importing allocates hundreds of thousands of objects and none of them is garbage yet, so
    each collection the allocations trigger walks the growing heap for nothing."""
    finder = _StandInFinder()
    # New lists, never a change in place: the model's preload thread may be walking the old one meanwhile.
    sys.meta_path = [finder, *sys.meta_path]
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import kserve
    finally:
        sys.meta_path = [f for f in sys.meta_path if f is not finder]
        if was_enabled:
            gc.enable()
    return kserve


def real_module(name: str) -> types.ModuleType:
    """The real module `name`, imported now if a stand-in has held its place until now."""
    with _lock:
        held = sys.modules.get(name)
        if not isinstance(held, _StandIn):
            return importlib.import_module(name)
        del sys.modules[name]
        try:
            module = importlib.import_module(name)   # sets the parent package's attribute to the real module
        except BaseException:
            sys.modules[name] = held
            raise
        for owner in filter(None, {sys.modules.get(name.split(".")[0]), sys.modules.get(name.rpartition(".")[0])}):
            for attr, value in list(vars(owner).items()):
                if isinstance(value, _Deferred) and value._deferred_from == name:
                    setattr(owner, attr, getattr(module, value._deferred_name))
        return module


class _Deferred:
    """Stands for `module.name` (a class or a callable) until touched; then acts as it in every way a caller uses one."""

    def __init__(self, module: str, name: str) -> None:
        self._deferred_from, self._deferred_name = module, name   # names no class of theirs will shadow

    def _real(self) -> Any:
        return getattr(real_module(self._deferred_from), self._deferred_name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._real()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_deferred_"):   # not set yet (a copy being made): no import loop
            raise AttributeError(attr)
        return getattr(self._real(), attr)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self._real())

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, self._real())

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (self._real(),)   # `class MyClient(kserve.KServeClient)` subclasses the real class

    def __repr__(self) -> str:
        return f"<{self._deferred_from}.{self._deferred_name}, not imported yet>"


class _StandIn(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):   # the import system probing (__path__, __file__...): not a use
            raise AttributeError(attr)
        return getattr(real_module(self.__name__), attr)


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in DEFERRED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StandIn(spec.name)
        for name in DEFERRED[spec.name]:
            setattr(module, name, _Deferred(spec.name, name))
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass
