"""Loads a script of benchmarks/ (a folder of scripts, not a package) as a module."""
import importlib.util
import types

from p5_jax import paths


def load(name: str) -> types.ModuleType:
    """benchmarks/<name>.py, imported under `name`."""
    path = paths.REPO_ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
