"""Registers a dataset's seqio tasks and mixtures from a small spec.

Names: task `p5_{dataset}_{family}_{prompt}` (`p5_beauty_sequential_2_3`), mixtures
`p5_{dataset}_{family}` (seen prompts), `p5_{dataset}_all` (every seen prompt at P5's rates),
`p5_{dataset}_recommend` (the item families, sequential and direct, at P5's rates),
`p5_{dataset}_unseen` (held-out prompts, evaluation only), `p5_{dataset}_zeroshot` (its Z
prompts over item metadata, where it has them), and `p5_all_datasets`.
Sequential training targets follow P5's code by default, and histories keep their last 20 items;
`set_sequence_options(sampling="all_prefixes", max_history=50)` switches every registered
dataset to any-cut-point targets (more distinct examples for small runs) and longer histories.

A dataset registers from a `tasks/<name>.py` module (`register_dataset(SPEC)`) or, without one,
from its prepared manifest.json (`register_prepared`); `require_known` turns an unknown name
into a one-line error.
"""
from __future__ import annotations

import dataclasses

import seqio
import tensorflow as tf

from p5_jax import families, paths
from p5_jax import vocabulary as p5_vocabulary
from p5_tasks import catalog, pipelines, prompts, rates, sources

# Fields a dataset may declare (see Prompt.required_fields).
KNOWN_FIELDS = frozenset({"rating", "review_text", "summary", "explanation", "item_title",
                          "item_brand", "item_price", "sequences"})
ALL_DATASETS_MIXTURE = "p5_all_datasets"
# The families that recommend items, trained together by `p5_{dataset}_recommend`.
RECOMMEND_FAMILIES = ("sequential", "direct")

VOCABULARY = p5_vocabulary.default_vocabulary(extra_texts=prompts.vocabulary_texts())
WHOLE_WORD_VOCABULARY = seqio.PassThroughVocabulary(size=p5_vocabulary.MAX_WHOLE_WORD_ID + 1)
OUTPUT_FEATURES = {
    "inputs": seqio.Feature(vocabulary=VOCABULARY, add_eos=True),
    "targets": seqio.Feature(vocabulary=VOCABULARY, add_eos=True),
    "inputs_whole_word_ids": seqio.Feature(vocabulary=WHOLE_WORD_VOCABULARY, add_eos=False,
                                           dtype=tf.int32),
}

_REGISTERED: dict[str, list] = {}   # dataset -> [(task name, rate fn)] of its `_all` mixture
_SPECS: dict[str, "DatasetSpec"] = {}
_FROM_MANIFEST: set[str] = set()    # datasets registered from their manifest, not a module
PREPARE_COMMAND = "python -m p5_jax.data.prepare --dataset NAME --source ... --format ..."


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a prepared dataset holds; only prompts whose fields all exist are registered."""
    name: str
    fields: frozenset
    num_candidates: int = pipelines.pre.NUM_CANDIDATES
    sequential_sampling: str = "p5"   # or "all_prefixes": see pre.next_item_from_prefix
    max_history: int = pipelines.pre.MAX_HISTORY   # history items a prompt shows, newest kept
    continuation: int = 0   # > 0: also train prompts.CONTINUATION, listing that many next items

    def __post_init__(self):
        unknown = set(self.fields) - KNOWN_FIELDS
        if unknown:
            raise ValueError(f"{self.name}: unknown fields {sorted(unknown)}; "
                             f"known: {sorted(KNOWN_FIELDS)}")
        if self.num_candidates < 1:
            raise ValueError(f"{self.name}: num_candidates must be >= 1")
        known = pipelines.pre.SEQUENTIAL_SAMPLINGS
        if self.sequential_sampling not in known:
            raise ValueError(f"{self.name}: sequential_sampling must be one of {known}, "
                             f"got {self.sequential_sampling!r}")
        if self.max_history < 1:
            raise ValueError(f"{self.name}: max_history must be >= 1, got {self.max_history}")
        if self.continuation < 0:
            raise ValueError(f"{self.name}: continuation must be >= 0, got {self.continuation}")


def task_name(dataset: str, prompt: prompts.Prompt) -> str:
    return f"p5_{dataset}_{prompt.family}_{prompt.task_suffix}"


def parse_task_name(name: str) -> tuple[str, prompts.Prompt]:
    """(dataset, prompt) of a name built by `task_name`; ValueError for any other name."""
    for prompt in prompts.KNOWN_PROMPTS:
        suffix = f"_{prompt.family}_{prompt.task_suffix}"
        if name.startswith("p5_") and name.endswith(suffix) and len(name) > len(suffix) + 3:
            return name[len("p5_"):-len(suffix)], prompt
    raise ValueError(f"{name!r} is not a P5 task name (p5_<dataset>_<family>_<prompt>)")


def _add_task(spec: DatasetSpec, prompt: prompts.Prompt) -> str:
    name = task_name(spec.name, prompt)
    kind = families.get(prompt.family).records
    postprocess_fn, metric_fns = pipelines.postprocess_and_metrics(prompt)
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name, source=sources.make_source(dataset=spec.name, kind=kind),
        preprocessors=pipelines.preprocessors(prompt, dataset=spec.name, kind=kind,
                                              num_candidates=spec.num_candidates,
                                              sequential_sampling=spec.sequential_sampling,
                                              max_history=spec.max_history,
                                              continuation=spec.continuation),
        output_features=OUTPUT_FEATURES, postprocess_fn=postprocess_fn, metric_fns=metric_fns,
        shuffle_buffer_size=1000)
    return name


def _add_mixture(name: str, tasks: list) -> None:
    seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, tasks)


def register_dataset(spec: DatasetSpec, *, from_manifest: bool = False) -> list[str]:
    """Registers every prompt whose fields `spec` has, and the dataset's mixtures.

    Returns the task names. Registering again replaces the earlier registration (so a
    `tasks/<name>.py` imported later wins over its manifest).
    """
    available = prompts.prompts_for(fields=frozenset(spec.fields))
    if spec.continuation and prompts.CONTINUATION.required_fields <= spec.fields:
        available += (prompts.CONTINUATION,)
    seen = [p for p in available if p.seen]
    names = {p.id: _add_task(spec, p) for p in available}
    for stale in set(_task_names_of(spec.name)) - set(names.values()):
        seqio.TaskRegistry.remove(stale)   # e.g. the continuation prompt, switched off
    rated = [(names[p.id], rates.rate_fn(dataset=spec.name, prompt=p, seen_prompts=seen))
             for p in seen]
    for family in prompts.FAMILIES:
        family_tasks = [pair for pair, p in zip(rated, seen) if p.family == family]
        if family_tasks:
            _add_mixture(f"p5_{spec.name}_{family}", family_tasks)
    if rated:
        _add_mixture(f"p5_{spec.name}_all", rated)
    recommend = [pair for pair, p in zip(rated, seen) if p.family in RECOMMEND_FAMILIES]
    if recommend:
        _add_mixture(f"p5_{spec.name}_recommend", recommend)
    unseen = [names[p.id] for p in available if not p.seen]
    if unseen:
        _add_mixture(f"p5_{spec.name}_unseen", [(n, 1.0) for n in unseen])
    zeroshot = [names[p.id] for p in available if p.family == "zeroshot"]
    if zeroshot:   # cold-start prompts over item metadata: the cross-domain evaluation
        _add_mixture(f"p5_{spec.name}_zeroshot", [(n, 1.0) for n in zeroshot])
    _REGISTERED[spec.name] = rated
    _SPECS[spec.name] = spec
    if from_manifest:
        _FROM_MANIFEST.add(spec.name)
    else:
        _FROM_MANIFEST.discard(spec.name)
    return list(names.values())


def registered_spec(dataset: str) -> DatasetSpec:
    if dataset not in _SPECS:
        raise KeyError(f"no registered dataset {dataset!r}; known: {sorted(_SPECS)}")
    return _SPECS[dataset]


def datasets_of(name: str) -> list[str]:
    """Registered datasets a task or mixture name reads (by its `p5_{dataset}_` prefix)."""
    if name == ALL_DATASETS_MIXTURE:
        return sorted(_SPECS)
    return [d for d in sorted(_SPECS) if name.startswith(f"p5_{d}_")]


def register_all_datasets_mixture() -> None:
    """`p5_all_datasets`: every registered dataset's `_all` tasks at their own rates."""
    tasks = [pair for dataset in sorted(_REGISTERED) for pair in _REGISTERED[dataset]]
    seqio.MixtureRegistry.remove(ALL_DATASETS_MIXTURE)
    if tasks:
        _add_mixture(ALL_DATASETS_MIXTURE, tasks)


def set_sequence_options(*, sampling: str | None = None, max_history: int | None = None,
                         continuation: int | None = None) -> None:
    """Re-registers every registered dataset with `sampling` ("p5" or "all_prefixes") for its
    sequential training targets, `max_history` history items per prompt and/or `continuation`
    (k > 0 adds prompts.CONTINUATION, listing up to k next items, to its mixtures; 0 leaves it
    out), None keeping the current value, and rebuilds `p5_all_datasets`. For entry points;
    call it before building datasets."""
    changes = {}
    if sampling is not None:
        changes["sequential_sampling"] = pipelines.pre.check_sequential_sampling(sampling)
    if max_history is not None:
        changes["max_history"] = max_history
    if continuation is not None:
        changes["continuation"] = continuation
    for spec in list(_SPECS.values()):
        register_dataset(dataclasses.replace(spec, **changes),
                         from_manifest=spec.name in _FROM_MANIFEST)
    register_all_datasets_mixture()


# -- datasets by name: prepared manifests, and the check of a name --------------------------------
class UnknownNameError(ValueError):
    """A task, mixture or dataset name that nothing registers (the message is one line)."""


def spec_from_manifest(name: str, manifest: dict) -> DatasetSpec:
    """The spec a prepared dataset's manifest implies: the fields it records as present, plus
    `explanation` where explanations were extracted and `sequences` where any user has one.
    A manifest without `fields` counts ratings as present where it counts reviews."""
    counts, splits = manifest.get("counts", {}), manifest.get("splits", {})
    recorded = manifest.get("fields") or {"rating": counts.get("reviews", 0) > 0}
    fields = {field for field, present in recorded.items() if present and field in KNOWN_FIELDS}
    if counts.get("explanations", 0) > 0:
        fields.add("explanation")
    sequence_users = splits.get("sequential", {}).get(
        "train", counts.get("users", 0) - manifest.get("users_too_short_for_sequences", 0))
    if sequence_users > 0:
        fields.add("sequences")
    return DatasetSpec(name=name, fields=frozenset(fields))


def register_prepared(root=None) -> list[str]:
    """Registers, from its manifest.json, every dataset prepared under `root` (default: the
    prepared root) that no `tasks/<name>.py` module registered, drops the ones an earlier call
    registered that `root` no longer holds, and rebuilds `p5_all_datasets`. Returns the names
    registered from manifests."""
    manifests = catalog.prepared_manifests(root)
    for name in _FROM_MANIFEST - set(manifests):
        unregister_dataset(name)
    for name, manifest in manifests.items():
        current = _SPECS.get(name)
        if current is not None and name not in _FROM_MANIFEST:
            continue   # the module's spec wins
        spec = spec_from_manifest(name, manifest)
        if current is None or current.fields != spec.fields:
            register_dataset(spec, from_manifest=True)
    register_all_datasets_mixture()
    return sorted(_FROM_MANIFEST)


def _dataset_of_task(name: str) -> str | None:
    try:
        return parse_task_name(name)[0]
    except ValueError:
        return None


def _task_names_of(dataset: str) -> list[str]:
    """The registered task names of `dataset` (by `parse_task_name`)."""
    return [name for name in seqio.TaskRegistry.names() if _dataset_of_task(name) == dataset]


def unregister_dataset(dataset: str) -> None:
    """Removes a dataset's tasks and mixtures; `p5_all_datasets` drops it when next rebuilt."""
    for name in list(seqio.MixtureRegistry.names()):
        if name.startswith(f"p5_{dataset}_") and all(
                _dataset_of_task(task) == dataset
                for task in seqio.MixtureRegistry.get(name).rate_per_task_name):
            seqio.MixtureRegistry.remove(name)
    for name in _task_names_of(dataset):
        seqio.TaskRegistry.remove(name)
    _REGISTERED.pop(dataset, None)
    _SPECS.pop(dataset, None)
    _FROM_MANIFEST.discard(dataset)


def registered_datasets() -> tuple[str, ...]:
    return tuple(sorted(_SPECS))


def registered_from_manifest(dataset: str) -> bool:
    """Whether `dataset` was registered from its manifest (no `tasks/<dataset>.py`)."""
    return dataset in _FROM_MANIFEST


def _datasets_text() -> str:
    prepared = ", ".join(catalog.prepared_manifests()) or "none"
    return (f"registered datasets: {', '.join(registered_datasets()) or 'none'}; prepared under "
            f"{paths.prepared_root()}: {prepared}; add one with {PREPARE_COMMAND}")


def _unknown_name_message(name: str) -> str:
    dataset = max(datasets_of(name), key=len, default=None)
    if dataset is None:
        return (f"unknown task or mixture {name!r} (names are p5_<dataset>_all, "
                f"p5_<dataset>_<family>, ...); {_datasets_text()}")
    mixtures = sorted(m for m in seqio.MixtureRegistry.names() if m.startswith(f"p5_{dataset}_"))
    return (f"unknown task or mixture {name!r}: {dataset} has the mixtures "
            f"{', '.join(mixtures)}; python -m p5_jax.list_tasks lists every task")


def _unknown(names: list[str]) -> list[str]:
    known = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
    return [name for name in names if name not in known]


def require_known(name: str, *, several: bool = False,
                  error: type[Exception] = UnknownNameError) -> None:
    """Raises `error` (e.g. an entry point's one-line error type) with a one-line message unless
    `name` is a registered task or mixture; with `several`, a comma-separated list of them.
    A miss first registers what was prepared since import."""
    names = [n.strip() for n in name.split(",") if n.strip()] if several else [name]
    if not names:
        raise error(f"no task or mixture named; {_datasets_text()}")
    if _unknown(names):
        register_prepared()
    unknown = _unknown(names)
    if unknown:
        raise error(_unknown_name_message(unknown[0]))


def require_dataset(dataset: str, *, error: type[Exception] = UnknownNameError) -> None:
    """Raises `error` with a one-line message unless `dataset` is registered (see
    `require_known`)."""
    if dataset not in _SPECS:
        register_prepared()
    if dataset not in _SPECS:
        raise error(f"unknown dataset {dataset!r}; {_datasets_text()}")
