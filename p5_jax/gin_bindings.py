"""Gin registrations and command-line handling for the entry scripts (library code stays gin-free).

Configurable names used in gin files: `T5Config`, `EncoderDecoderModel`, `make_schedule`,
`make_adamw` (plus `train` in p5_jax/train.py). A `JobError` raised by an entry point's job (gin
mistakes included: `GinConfigError`) is printed as one `error: ...` line (no traceback) and ends
the process with status 2; `--debug` shows its traceback (see p5_jax.cli_errors).
"""
from __future__ import annotations

import functools
import inspect
import os
import pathlib
import re
import sys
import tokenize
from collections.abc import Mapping, Sequence

import gin
from absl import app, flags, logging

from p5_jax import cli_errors, inference, models, network, partitioning, trainer
from p5_jax.cli_errors import JobError
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


# Errors that are the user's to fix: a JobError, or a mesh or batch size the devices cannot take.
USER_ERRORS = (JobError, partitioning.PartitioningError)


def report_job_errors(main):
    """`main` that prints a `USER_ERRORS` error as `error: <message>` on stderr and exits with
    status 2, or, with --debug, lets it through with its traceback (see p5_jax.cli_errors)."""
    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as error:
            sys.exit(cli_errors.handle(error, debug=_debug()))
    return guarded


def _debug() -> bool:
    return "debug" in flags.FLAGS and bool(flags.FLAGS["debug"].value)


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


def _preset_match(config, fields, size_file, make, layer_file) -> tuple[tuple[int, int], list[str], list[str]]:
    """((flags for differing fields, files), gin files, differing fields) of one shipped preset."""
    preset = make(**(T5_1_1_LAYERS if layer_file else {}))
    rest = _differing(config, preset, fields)
    files = [size_file] + ([layer_file] if layer_file else [])
    return (len(rest), len(files)), files, rest


def gin_model_flags(config: network.T5Config, *, fields: Sequence[str] = HF_FIELDS) -> str:
    """The shipped model files (plus T5Config bindings for what they do not cover) that give
    `config`'s architecture, e.g. "--gin_file=gin/models/small.gin"."""
    matches = (_preset_match(config, fields, size_file, make, layer_file)
               for size_file, make in SIZE_FILES for layer_file in (None, T5_1_1_FILE))
    _, files, rest = min(matches, key=lambda match: match[0])  # the first of the fewest extra flags
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


def build_model(vocabulary) -> models.EncoderDecoderModel:
    """The gin-configured model with an embedding row for every piece of `vocabulary` (padded)."""
    rows = inference.padded_vocab_size(vocabulary.vocab_size)
    return EncoderDecoderModel(module=network.Transformer(T5Config(vocab_size=rows)))


def checkpoint_config(*, subject: str, path, directory, step: int) -> network.T5Config:
    """The architecture of the train state saved at `directory`/`step`, which the user named
    `subject` `path` (e.g. CHECKPOINT_PATH /runs/x); an unreadable one is a `JobError`."""
    from p5_jax import checkpoints, hf_weights  # deferred

    try:
        return hf_weights.config_from_param_shapes(
            checkpoints.param_shapes(directory=directory, step=step))
    except (ValueError, FileNotFoundError) as error:
        raise JobError(f"{subject} {path}: {error}") from error


def checkpoint_model(stored: network.T5Config, *, subject: str, path, vocabulary,
                     fields: Sequence[str] = SHAPE_FIELDS) -> models.EncoderDecoderModel:
    """The gin model with the checkpoint's embedding rows, once its architecture in `fields`
    is the checkpoint's (else a `JobError` naming the gin model file to use) and `vocabulary`
    fits in those rows."""
    config = T5Config(vocab_size=stored.vocab_size)
    problem = architecture_mismatch(subject=subject, checkpoint=stored, model=config,
                                    fields=fields)
    if problem:
        raise JobError(problem)
    if vocabulary.vocab_size > config.vocab_size:
        raise JobError(f"The tasks' SentencePiece model has {vocabulary.vocab_size} pieces but "
                       f"{subject} {path} has only {config.vocab_size} embedding rows.")
    return EncoderDecoderModel(module=network.Transformer(config))


def model_for_checkpoint(directory, vocabulary_fn, *,
                         sentencepiece_model_file: str | None = None
                         ) -> models.EncoderDecoderModel:
    """The gin model sized as the checkpoint under `directory` (CHECKPOINT_PATH), after the
    tasks were pointed at `sentencepiece_model_file`, else at the SentencePiece model its run
    recorded (MODEL_DIR/spiece.model), if any. `vocabulary_fn` returns the tasks' vocabulary
    once that is done; it must fit the checkpoint's embedding rows."""
    from p5_jax import run_records  # deferred
    from p5_jax import vocabulary as p5_vocabulary

    try:
        resolved, step = inference.resolve_checkpoint(directory)
    except FileNotFoundError as error:
        raise JobError(f"CHECKPOINT_PATH: {error}") from error
    model_file = sentencepiece_model_file or run_records.recorded_sentencepiece_model(directory)
    if model_file is not None:
        try:
            p5_vocabulary.use_sentencepiece_file(model_file)
        except FileNotFoundError as error:
            raise JobError(f"sentencepiece_model_file: {error}") from error
    stored = checkpoint_config(subject="CHECKPOINT_PATH", path=directory, directory=resolved,
                               step=step)
    # Restoring reads the whole-word table too: its size must match as well.
    return checkpoint_model(stored, subject="CHECKPOINT_PATH", path=directory,
                            vocabulary=vocabulary_fn(),
                            fields=SHAPE_FIELDS + ("whole_word_embeddings",))


def require_feature_lengths(lengths, *, name: str = "TASK_FEATURE_LENGTHS") -> dict[str, int]:
    """`lengths` as a dict, once it gives a positive whole length for both inputs and targets."""
    def positive(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    missing = ["inputs", "targets"] if not isinstance(lengths, Mapping) else [
        feature for feature in ("inputs", "targets") if not positive(lengths.get(feature))]
    if missing:
        raise JobError(f"{name} {lengths!r} needs a positive length for "
                       f"{' and '.join(repr(m) for m in missing)}, e.g. "
                       f"--gin.{name}=\"{{'inputs': 512, 'targets': 64}}\"")
    return dict(lengths)


def define_flags() -> None:
    """Defines the t5x-style gin flags that train, eval and infer share, and --debug, once per
    process."""
    for name, help_text in (("gin_file", "Gin files, parsed in order."),
                            ("gin_bindings", "Gin bindings; --gin.NAME=VALUE also works."),
                            ("gin_search_paths", "Extra folders to look for gin files in.")):
        if name not in flags.FLAGS:
            flags.DEFINE_multi_string(name, [], help_text)
    if "debug" not in flags.FLAGS:
        flags.DEFINE_bool("debug", False, cli_errors.DEBUG_HELP)


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
    roots: list[str | pathlib.Path] = [*search_paths, GIN_DIR, REPO_ROOT]
    candidates = [pathlib.Path(name)] + [pathlib.Path(root) / name for root in roots]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"gin file {name!r} not found (looked at: {looked})")


def parse_config(*, gin_files: Sequence[str], gin_bindings: Sequence[str],
                 search_paths: Sequence[str] = ()) -> None:
    """Parses files then bindings; unknown configurables, parameters or macros and unset
    required macros raise a `GinConfigError` here, before compute, naming the nearest known name.

    Files are looked up as given, then under each search path, `gin/` and the repository root;
    includes inside gin files name paths from the repository root (`gin/runs/train.gin`).
    """
    if not gin_files:
        raise GinConfigError("Give at least one --gin_file (e.g. gin/runs/train.gin).")
    for path in (*search_paths, str(GIN_DIR), str(REPO_ROOT)):
        gin.add_config_file_search_path(path)
    try:
        files = [resolve_gin_file(name, search_paths=search_paths) for name in gin_files]
        gin.parse_config_files_and_bindings(files, list(gin_bindings), finalize_config=False)
        _check_macros_used()
        gin.finalize()
    except GinConfigError:
        raise
    except (ValueError, SyntaxError, OSError, tokenize.TokenError) as error:
        raise GinConfigError(_named_binding(_explained(error), gin_bindings)) from error


def _unparsable_binding(bindings: Sequence[str]) -> str | None:
    """The first of `bindings` that does not parse on its own (syntax only), if any."""
    for binding in bindings:
        try:
            list(gin.config_parser.ConfigParser(binding, gin.config.ParserDelegate(skip_unknown=True)))
        except (SyntaxError, ValueError, tokenize.TokenError):
            return binding
    return None


def _named_binding(message: str, bindings: Sequence[str]) -> str:
    """`message` naming the --gin binding at fault when a syntax error came from the bindings."""
    if not message.startswith("bad gin syntax") or re.search(r" at \S+:\d+$", message):
        return message   # located in a gin file
    binding = _unparsable_binding(bindings)
    if binding is None:
        return message
    if "malformed node" in message or "Unable to parse value" in message:   # a bare word
        return f"bad gin value in --gin.{binding} (strings need quotes: --gin.NAME=\"'text'\")"
    return f"{message.removesuffix(' in the --gin bindings')} in --gin.{binding}"


# -- gin mistakes, named with the nearest known name (gin 0.5 lists none publicly) ---------------
class GinConfigError(JobError, ValueError):
    """A gin file or binding for the user to fix (a ValueError too, as gin's own errors are)."""


_UNKNOWN_PARAMETER = re.compile(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'")
_UNKNOWN_CONFIGURABLE = re.compile(r"No configurable matching (?:reference )?'@?([^'()]+)")
_UNSET_MACRO = re.compile(r"No bindings specified for '([^']+)/gin\.macro'")
_REQUIRED = re.compile(r"(\S+) set to `%gin\.REQUIRED` but not subsequently overridden")
_LOCATION = re.compile(r'\n  In (?:file "(?P<file>[^"]+)",|bindings string) line (?P<line>\d+)')


def _explained(error: BaseException) -> str:
    """One line for a gin parsing error: what is wrong, the nearest known name, and where."""
    text = str(error)
    if isinstance(error, SyntaxError):
        return f"bad gin syntax: {error.msg.rstrip('.')}{_where(error.filename, error.lineno)}"
    if isinstance(error, tokenize.TokenError):
        return f"bad gin syntax: {error.args[0]} (an unclosed bracket or quote?)"
    located = _LOCATION.search(text)
    where = _where(located["file"], located["line"]) if located else ""
    if found := _UNKNOWN_PARAMETER.search(text):
        selector, name = found.groups()
        known = [f"{selector}.{known}" for known in _parameters(selector)]
        return (f"unknown gin parameter {selector}.{name}"
                f"{cli_errors.did_you_mean(f'{selector}.{name}', known)}{where}")
    if found := _UNKNOWN_CONFIGURABLE.search(text):
        return (f"unknown gin configurable {found[1]}"
                f"{cli_errors.did_you_mean(found[1], _configurable_names())}{where}")
    if found := _UNSET_MACRO.search(text):
        bound, _ = _macros()
        return (f"gin macro %{found[1]} is used but never set"
                f"{cli_errors.did_you_mean(found[1], bound)}{where}")
    if found := _REQUIRED.search(text):
        key = found[1].removesuffix("/macro.value")
        kind = "parameter" if key == found[1] else "macro"
        return (f"gin {kind} {key} is required (%gin.REQUIRED) but not set: add "
                f"--gin.{key}=VALUE (strings quoted, e.g. \"'/path'\")")
    return cli_errors.message_of(error) + where


def _where(file: str | None, line) -> str:
    return f" at {file}:{line}" if file else " in the --gin bindings"


def _parameters(selector: str) -> list[str]:
    configurable = gin.config._REGISTRY.get_match(selector)  # noqa: SLF001
    if configurable is None:
        return []
    denied = set(configurable.denylist or ())
    return [name for name in inspect.signature(configurable.wrapped).parameters
            if name not in denied]


def _configurable_names() -> set[str]:
    registry = gin.config._REGISTRY  # noqa: SLF001
    return {registry.minimal_selector(selector) for selector, _ in registry.items()}


def _macros() -> tuple[set[str], set[str]]:
    """(macros set, macros used as %NAME) in the parsed config."""
    config = gin.config._CONFIG  # noqa: SLF001
    macro = gin.get_configurable(gin.config.macro)
    bound = {scope for scope, selector in config if selector == "gin.macro"}
    used = {ref.config_key[0] for ref in gin.config.iterate_references(config, to=macro)}
    return bound, used


def _check_macros_used() -> None:
    """A macro that is set but used nowhere is an error when it is a near miss of a used one
    (a typo such as CHECKPONT_PATH), else a warning (e.g. MODEL_DIR given to eval)."""
    bound, used = _macros()
    for name in sorted(bound - used):
        hint = cli_errors.did_you_mean(name, used, cutoff=0.85)
        if hint:
            raise GinConfigError(f"unknown gin macro {name}{hint}")
        logging.warning("gin macro %s is set but nothing uses it.", name)


def start_job(argv: Sequence[str], *, distributed: bool = True) -> None:
    """The common start of train/eval/infer: no stray arguments, a quiet console, the
    multi-host set-up (when `distributed`), then the gin files and bindings from the flags."""
    if len(argv) > 1:
        raise JobError(f"unexpected arguments {argv[1:]}: flags are --NAME=VALUE, gin bindings "
                       "--gin.NAME=VALUE")
    quiet_console()
    if distributed:
        partitioning.initialize_distributed(os.environ)
    parse_config(gin_files=flags.FLAGS.gin_file, gin_bindings=flags.FLAGS.gin_bindings,
                 search_paths=flags.FLAGS.gin_search_paths)


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing, with t5x-style `--gin.NAME=VALUE` accepted; a malformed, unknown or
    ill-valued flag is an `error:` line."""
    try:
        return flags.FLAGS(rewrite_gin_args(argv))
    except (ValueError, flags.Error) as error:
        sys.exit(cli_errors.handle(error, debug="--debug" in argv))


def run_entry_point(main) -> None:
    """absl's app.run, with t5x-style `--gin.NAME=VALUE` flags accepted and a `JobError`
    reported as one line (see p5_jax.cli_errors)."""
    app.run(report_job_errors(main), flags_parser=parse_flags)
