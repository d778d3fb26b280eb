"""Gin registrations and command-line handling for the entry scripts (library code stays gin-free).

Configurable names used in gin files: `T5Config`, `EncoderDecoderModel`, `make_schedule`,
`make_adamw` (plus `train` in p5_jax/train.py).
"""
from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import gin
from absl import app, flags, logging

from p5_jax import inference, models, network, partitioning, trainer
from p5_jax.tf_setup import quiet_tensorflow

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
GIN_DIR = REPO_ROOT / "gin"

T5Config = gin.external_configurable(network.T5Config, name="T5Config", module="network")
EncoderDecoderModel = gin.external_configurable(
    models.EncoderDecoderModel, name="EncoderDecoderModel", module="models",
    denylist=["module"])
make_schedule = gin.external_configurable(trainer.make_schedule, name="make_schedule",
                                          module="trainer", denylist=["total_steps"])
make_adamw = gin.external_configurable(trainer.make_adamw, name="make_adamw", module="trainer",
                                       denylist=["learning_rate"])


def build_model(vocabulary) -> models.EncoderDecoderModel:
    """The gin-configured model with an embedding row for every piece of `vocabulary` (padded)."""
    config = T5Config(vocab_size=inference.padded_vocab_size(vocabulary.vocab_size))
    return EncoderDecoderModel(module=network.Transformer(config))


def define_flags() -> None:
    """Defines the t5x-style gin flags that train, eval and infer share, once per process."""
    for name, help_text in (("gin_file", "Gin files, parsed in order."),
                            ("gin_bindings", "Gin bindings; --gin.NAME=VALUE also works."),
                            ("gin_search_paths", "Extra folders to look for gin files in.")):
        if name not in flags.FLAGS:
            flags.DEFINE_multi_string(name, [], help_text)


def quiet_console() -> None:
    """Keeps TensorFlow's start-up noise and library info logs off the console.

    Progress bars and warnings still show; pass --verbosity=0 (or higher) for the info logs.
    """
    quiet_tensorflow()
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
    """t5x-style `--gin.NAME=VALUE` becomes `--gin_bindings=NAME = VALUE`."""
    rewritten = []
    for arg in argv:
        if arg.startswith("--gin."):
            name, separator, value = arg[len("--gin."):].partition("=")
            if not separator or not name:
                raise ValueError(f"Expected --gin.NAME=VALUE, got {arg!r}.")
            arg = f"--gin_bindings={name} = {value}"
        rewritten.append(arg)
    return rewritten


def resolve_gin_file(name: str, *, search_paths: Sequence[str] = ()) -> str:
    """Absolute path of a gin file given as is, or relative to a search path, `gin/` or the repo.

    Resolving here, rather than leaving it to gin, also sidesteps gin's fallback that reads
    `runs/x.gin` as a Python package `runs` and fails when the working directory has a `runs/`
    folder of outputs.
    """
    candidates = [pathlib.Path(name)] + [pathlib.Path(root) / name
                                         for root in (*search_paths, GIN_DIR, REPO_ROOT)]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"gin file {name!r} not found (looked at: {looked})")


def parse_config(*, gin_files: Sequence[str], gin_bindings: Sequence[str],
                 search_paths: Sequence[str] = ()) -> None:
    """Parses files then bindings; unknown configurables or parameters raise here, before compute.

    Files are looked up as given, then under each search path, `gin/` and the repository root;
    includes inside gin files name paths from the repository root (`gin/runs/train.gin`).
    """
    if not gin_files:
        raise ValueError("Give at least one --gin_file (e.g. gin/runs/train.gin).")
    for path in (*search_paths, str(GIN_DIR), str(REPO_ROOT)):
        gin.add_config_file_search_path(path)
    files = [resolve_gin_file(name, search_paths=search_paths) for name in gin_files]
    gin.parse_config_files_and_bindings(files, list(gin_bindings), finalize_config=True)


def start_job(argv: Sequence[str], *, distributed: bool = True) -> None:
    """The common start of train/eval/infer: no stray arguments, a quiet console, the
    multi-host set-up (when `distributed`), then the gin files and bindings from the flags."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    quiet_console()
    if distributed:
        partitioning.initialize_distributed(os.environ)
    parse_config(gin_files=flags.FLAGS.gin_file, gin_bindings=flags.FLAGS.gin_bindings,
                 search_paths=flags.FLAGS.gin_search_paths)


def run_entry_point(main) -> None:
    """absl's app.run, with t5x-style `--gin.NAME=VALUE` flags accepted."""
    app.run(main, flags_parser=lambda argv: app.parse_flags_with_usage(rewrite_gin_args(argv)))
