"""Third-party packages whose `__init__` a question never needs, made lazy (cold start of `assistant ask`).

Importing this module (chain.py and retrieval.py do it first) turns each package named in `LAZY_PACKAGES`
into a lazy package: its submodules import as usual (its `__path__` is there), and its own `__init__` runs
the first time anything reads one of its attributes — then the package is exactly what a normal import
makes. Nothing changes but when the code runs.

`langsmith.types` is the only one: LangChain's runnables import `langsmith.run_trees` (for tracing), which
imports one `Literal` from `langsmith.types.run_select_field`; the package's `__init__` imports ~300
generated API models (~0.1 s, a tenth of a cold `assistant ask`) that only LangSmith's REST client uses.
With tracing on (LANGSMITH_TRACING), the client reads them and they load then.

A package that is already imported, missing, or not a package is left alone.
"""
from __future__ import annotations

import importlib.util
import sys
import threading

LAZY_PACKAGES = ("langsmith.types",)


def lazy_package(name: str) -> bool:
    """Make package `name` lazy (see above); False when it is left alone."""
    if name in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(name)  # imports the parent package (langsmith's own is lazy)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.loader is None or spec.submodule_search_locations is None or name in sys.modules:
        return False
    module = importlib.util.module_from_spec(spec)
    lock = threading.RLock()
    state = ["lazy"]  # → "loading" (in the thread that runs the package's __init__) → "loaded"

    def __getattr__(attr: str):
        with lock:  # another thread waits here until the package is loaded
            if state[0] == "loading":  # the package's own __init__ asking for a name it has not set yet
                raise AttributeError(f"partially initialized module {name!r} has no attribute {attr!r}")
            if state[0] == "lazy":
                state[0] = "loading"
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    state[0] = "lazy"  # a failed load is retried on the next access, as a failed import is
                    raise
                state[0] = "loaded"
                if module.__dict__.get("__getattr__") is __getattr__:
                    del module.__getattr__  # from now on a plain module (or the package's own __getattr__)
        return getattr(module, attr)

    module.__getattr__ = __getattr__
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return True


def _install() -> None:
    for name in LAZY_PACKAGES:
        lazy_package(name)


_install()

__all__ = ["LAZY_PACKAGES", "lazy_package"]
