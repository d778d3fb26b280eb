"""P5 seqio tasks and mixtures: `import p5_tasks` registers every one of them.

Datasets register by name (see docs/TASKS.md): first every `tasks/<name>.py` module (one small
spec each: exactly the prompts its fields support), then every dataset prepared under the
prepared root that no module covers, from its manifest.json. Nothing reads records until a task
is used.
"""
import importlib
import importlib.util
import pathlib
import pkgutil
import sys

import p5_jax


def _checkout_tasks() -> pathlib.Path | None:
    """`tasks/` of the checkout p5_jax was imported from, where that is not this folder.

    The package is installed under another name (`p5_tasks`), so a second checkout put first on
    PYTHONPATH brings its own p5_jax but, without this, the installed checkout's tasks."""
    root = pathlib.Path(p5_jax.__file__).resolve().parent.parent
    own = root / "tasks"
    if own == pathlib.Path(__file__).resolve().parent or not (root / "pyproject.toml").is_file():
        return None
    return own if (own / "registration.py").is_file() else None


def _load_from(folder: pathlib.Path) -> None:
    """Makes `p5_tasks` the package in `folder` (an import returns sys.modules' entry)."""
    spec = importlib.util.spec_from_file_location(
        __name__, folder / "__init__.py", submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the tasks package in {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[__name__] = module
    spec.loader.exec_module(module)


def _import_dataset_modules() -> None:
    """Imports every module of the package; each `tasks/<name>.py` registers its dataset."""
    for name in sorted(info.name for info in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{name}")


if (_checkout := _checkout_tasks()) is not None:
    _load_from(_checkout)
else:
    from p5_jax.tf_setup import quiet_tensorflow

    quiet_tensorflow()  # TensorFlow feeds the pipelines only: no GPUs, no start-up noise

    from p5_tasks import registration
    from p5_tasks.registration import (  # noqa: F401
        ALL_DATASETS_MIXTURE,
        OUTPUT_FEATURES,
        VOCABULARY,
        DatasetSpec,
        UnknownNameError,
        register_all_datasets_mixture,
        register_dataset,
        require_dataset,
        require_known,
    )

    _import_dataset_modules()
    registration.register_prepared()   # also builds p5_all_datasets
    DATASETS = registration.registered_datasets()   # at import; registered_datasets() is current
