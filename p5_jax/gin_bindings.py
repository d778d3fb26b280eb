"""Gin registrations and command-line handling for the entry scripts (library code stays gin-free).

Configurable names used in gin files: `T5Config`, `EncoderDecoderModel`, `make_schedule`,
`make_adamw` (plus `train` in p5_jax/train.py). A `JobError` raised by an entry point's job is
printed as one `error: ...` line (no traceback) and ends the process with status 2.
"""
from __future__ import annotations

import functools
import os
import pathlib
import sys
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


class JobError(Exception):
    """A problem with the job's settings or inputs for the user to fix (a wrong model file, a
    checkpoint that does not fit); the entry point prints its message on one line."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message  # gin appends "In call to configurable ..." to str(error)


def report_job_errors(main):
    """`main` that prints a `JobError` as `error: <message>` on stderr and exits with status 2."""
    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except JobError as error:
            print(f"error: {getattr(error, 'message', error)}", file=sys.stderr, flush=True)
            sys.exit(2)
    return guarded


# -- model sizes: which gin model files give a checkpoint's architecture ---------------------------
SHAPE_FIELDS = ("d_model", "num_heads", "d_kv", "d_ff", "num_encoder_layers",
                "num_decoder_layers", "feed_forward", "tie_embeddings", "relative_buckets")
HF_FIELDS = SHAPE_FIELDS + ("relative_max_distance", "layer_norm_epsilon")
NAMED_SIZES = (("t5-small", network.t5_small_config), ("t5-base", network.t5_base_config),
               ("t5-v1_1-small", network.t5_v1_1_small_config),
               ("t5-v1_1-base", network.t5_v1_1_base_config), ("p5-jax tiny", network.tiny_config),
               ("p5-jax compact", network.compact_config))
SIZE_FILES = (("gin/models/tiny.gin", network.tiny_config),
              ("gin/models/compact.gin", network.compact_config),
              ("gin/models/small.gin", network.t5_small_config),
              ("gin/models/base.gin", network.t5_base_config))
T5_1_1_FILE, T5_1_1_LAYERS = "gin/models/t5_1_1.gin", {"feed_forward": "gated-gelu",
                                                      "tie_embeddings": False}


def _differing(a, b, fields) -> list[str]:
    return [name for name in fields if getattr(a, name) != getattr(b, name)]


def describe_size(config: network.T5Config) -> str:
    """E.g. "a t5-small (d_model 512, 6+6 layers)", or the dimensions of an unnamed T5."""
    layers = f"{config.num_encoder_layers}+{config.num_decoder_layers} layers"
    for name, make in NAMED_SIZES:
        if not _differing(config, make(), SHAPE_FIELDS):
            return f"a {name} (d_model {config.d_model}, {layers})"
    return (f"a T5 (d_model {config.d_model}, {layers}, {config.num_heads} heads of "
            f"{config.d_kv}, d_ff {config.d_ff}, {config.feed_forward}, "
            f"{'tied' if config.tie_embeddings else 'untied'} embeddings)")


def _gin_flag(name: str, value) -> str:
    text = repr(value)
    return f'--gin.T5Config.{name}="{text}"' if isinstance(value, str) else \
        f"--gin.T5Config.{name}={text}"


def gin_model_flags(config: network.T5Config, *, fields: Sequence[str] = HF_FIELDS) -> str:
    """The shipped model files (plus T5Config bindings for what they do not cover) that give
    `config`'s architecture, e.g. "--gin_file=gin/models/small.gin"."""
    best = None
    for size_file, make in SIZE_FILES:
        for layer_file in (None, T5_1_1_FILE):
            preset = make(**(T5_1_1_LAYERS if layer_file else {}))
            rest = _differing(config, preset, fields)
            files = [size_file] + ([layer_file] if layer_file else [])
            key = (len(rest), len(files))
            if best is None or key < best[0]:
                best = (key, files, rest)
    _, files, rest = best
    return " ".join([f"--gin_file={name}" for name in files] +
                    [_gin_flag(name, getattr(config, name)) for name in rest])


def architecture_mismatch(*, subject: str, checkpoint: network.T5Config,
                          model: network.T5Config, fields: Sequence[str] = HF_FIELDS
                          ) -> str | None:
    """None when the gin model has the checkpoint's architecture in `fields`, else a one-line
    message naming the gin model files to use."""
    differing = _differing(checkpoint, model, fields)
    if not differing:
        return None
    has = ", ".join(f"{name} {getattr(model, name)}" for name in differing)
    return (f"{subject} is {describe_size(checkpoint)} but the gin model has {has}; "
            f"use {gin_model_flags(checkpoint, fields=fields)}")


def build_model(vocabulary, *, vocab_rows: int | None = None) -> models.EncoderDecoderModel:
    """The gin-configured model with an embedding row for every piece of `vocabulary` (padded),
    or `vocab_rows` rows (a checkpoint's own count, e.g. T5's 32,128)."""
    rows = vocab_rows or inference.padded_vocab_size(vocabulary.vocab_size)
    return EncoderDecoderModel(module=network.Transformer(T5Config(vocab_size=rows)))


def model_for_checkpoint(directory, vocabulary_fn) -> models.EncoderDecoderModel:
    """The gin model sized as the checkpoint under `directory`, after the tasks were pointed at
    the SentencePiece model its run recorded (MODEL_DIR/spiece.model), if any. `vocabulary_fn`
    returns the tasks' vocabulary once that is done."""
    from p5_jax import checkpoints, vocabulary as p5_vocabulary  # noqa: deferred

    recorded = checkpoints.recorded_sentencepiece_model(directory)
    if recorded is not None:
        p5_vocabulary.use_sentencepiece_file(recorded)
    resolved, step = inference.resolve_checkpoint(directory)
    shapes = checkpoints.param_shapes(directory=resolved, step=step)
    return build_model(vocabulary_fn(), vocab_rows=shapes[("token_embedder",)][0])


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
    """absl's app.run, with t5x-style `--gin.NAME=VALUE` flags accepted and a `JobError`
    reported as one line."""
    app.run(report_job_errors(main),
            flags_parser=lambda argv: app.parse_flags_with_usage(rewrite_gin_args(argv)))
