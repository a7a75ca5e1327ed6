"""``--plugin MODULE``: import a user's module (which registers op variants) before backends are resolved.

A plugin is any Python module whose import calls ``profiler.backends.register`` (see
docs/adding-a-variant.md). ``MODULE`` is either an importable dotted name (``my_pkg.kernels``) or a
path to a ``.py`` file. Each is imported once per process.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

_LOADED: dict[str, object] = {}


def add_plugin_arg(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--plugin MODULE`` option."""
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import a Python module (dotted name or path to a .py file) that registers op "
                             "variants with profiler.backends.register, before backends are chosen (repeatable)")


def _from_path(path: Path):
    key = str(path.resolve())
    name = f"tokencost_plugin_{path.stem}_{abs(hash(key)) % 10**8}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--plugin {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_plugin(name: str):
    """Import one plugin (a dotted module name or a ``.py`` path) and return the module.

    Raises:
        ValueError: the module cannot be found, or importing it raised (the message gives the cause on
            one line; a plugin that itself raises a ValueError, e.g. an unknown op, is reported the same way).
    """
    key = str(Path(name).resolve()) if name.endswith(".py") else name
    if key in _LOADED:
        return _LOADED[key]
    path = Path(name)
    if name.endswith(".py") and not path.is_file():
        raise ValueError(f"--plugin {name}: file not found")
    try:
        module = _from_path(path) if name.endswith(".py") else importlib.import_module(name)
    except ModuleNotFoundError as exc:
        hint = (f"; a file {name}.py is here: pass its path (--plugin ./{name}.py) or add its folder to PYTHONPATH"
                if Path(f"{name}.py").is_file() else "; give a .py path or a module on PYTHONPATH")
        raise ValueError(f"--plugin {name}: cannot import it ({exc}){hint}") from None
    except Exception as exc:  # noqa: BLE001 - any failure inside user code becomes a one-line error
        raise ValueError(f"--plugin {name}: importing it failed: {type(exc).__name__}: {exc}") from None
    except SystemExit as exc:  # a plugin calling sys.exit() would end tokencost silently
        raise ValueError(f"--plugin {name}: importing it called sys.exit({exc.code!r})") from None
    _LOADED[key] = module
    return module


def load_plugins(names: list[str] | None) -> list[str]:
    """Import every ``--plugin`` in order; returns their names (for the result record)."""
    for name in names or ():
        load_plugin(name)
    return list(names or ())


__all__ = ["add_plugin_arg", "load_plugin", "load_plugins"]
