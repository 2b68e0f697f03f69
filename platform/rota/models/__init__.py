"""The tiny generated model (the ``tiny-llama-cpu`` template, the demo and the tests).

Its generator lives beside the application that serves it (``serve_apps/_tiny_model.py``),
because the nodes that serve it generate it; the control plane only loads it from there
for ``rota models make-tiny``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from rota.config import Settings

GENERATOR = "_tiny_model"


def generator(dirs: list[Path] | None = None) -> ModuleType:
    """The generator module, from the first serve_apps directory that has it."""
    searched = dirs if dirs is not None else Settings().serve_apps_dirs
    for d in searched:
        path = d / f"{GENERATOR}.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location(GENERATOR, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f"no {GENERATOR}.py in serve_apps ({', '.join(map(str, searched)) or 'no folder'})")


def make_tiny(out_dir: str | Path, dirs: list[Path] | None = None) -> Path:
    """Write the tiny model to ``out_dir`` and return it (torch and transformers needed)."""
    out: Path = generator(dirs).make_tiny(out_dir)
    return out
