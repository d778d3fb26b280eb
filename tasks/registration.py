"""Registers a dataset's seqio tasks and mixtures from a small spec.

Names: task `p5_{dataset}_{family}_{prompt}` (`p5_beauty_sequential_2_3`), mixtures
`p5_{dataset}_{family}` (seen prompts), `p5_{dataset}_all` (every seen prompt at P5's rates),
`p5_{dataset}_unseen` (held-out prompts, evaluation only), `p5_{dataset}_zeroshot` (its Z
prompts over item metadata, where it has them), and `p5_all_datasets`.
Sequential training targets follow P5's code by default;
`set_sequential_sampling("all_prefixes")` switches every registered dataset to any-cut-point
targets (more distinct examples for small runs).
"""
from __future__ import annotations

import dataclasses

import seqio
import tensorflow as tf

from p5_jax import families
from p5_jax import vocabulary as p5_vocabulary
from p5_tasks import pipelines, prompts, rates, sources

# Fields a dataset may declare (see Prompt.required_fields).
KNOWN_FIELDS = frozenset({"rating", "review_text", "summary", "explanation", "item_title",
                          "item_brand", "item_price", "sequences"})
ALL_DATASETS_MIXTURE = "p5_all_datasets"

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


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a prepared dataset holds; only prompts whose fields all exist are registered."""
    name: str
    fields: frozenset
    num_candidates: int = pipelines.pre.NUM_CANDIDATES
    sequential_sampling: str = "p5"   # or "all_prefixes": see pre.next_item_from_prefix

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


def task_name(dataset: str, prompt: prompts.Prompt) -> str:
    return f"p5_{dataset}_{prompt.family}_{prompt.task_suffix}"


def parse_task_name(name: str) -> tuple[str, prompts.Prompt]:
    """(dataset, prompt) of a name built by `task_name`; ValueError for any other name."""
    for prompt in prompts.PROMPTS:
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
                                              sequential_sampling=spec.sequential_sampling),
        output_features=OUTPUT_FEATURES, postprocess_fn=postprocess_fn, metric_fns=metric_fns,
        shuffle_buffer_size=1000)
    return name


def _add_mixture(name: str, tasks: list) -> None:
    seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, tasks)


def register_dataset(spec: DatasetSpec) -> list[str]:
    """Registers every prompt whose fields `spec` has, and the dataset's mixtures.

    Returns the task names. Registering again replaces the earlier registration.
    """
    available = prompts.prompts_for(fields=frozenset(spec.fields))
    seen = [p for p in available if p.seen]
    names = {p.id: _add_task(spec, p) for p in available}
    rated = [(names[p.id], rates.rate_fn(dataset=spec.name, prompt=p, seen_prompts=seen))
             for p in seen]
    for family in prompts.FAMILIES:
        family_tasks = [pair for pair, p in zip(rated, seen) if p.family == family]
        if family_tasks:
            _add_mixture(f"p5_{spec.name}_{family}", family_tasks)
    if rated:
        _add_mixture(f"p5_{spec.name}_all", rated)
    unseen = [names[p.id] for p in available if not p.seen]
    if unseen:
        _add_mixture(f"p5_{spec.name}_unseen", [(n, 1.0) for n in unseen])
    zeroshot = [names[p.id] for p in available if p.family == "zeroshot"]
    if zeroshot:   # cold-start prompts over item metadata: the cross-domain evaluation
        _add_mixture(f"p5_{spec.name}_zeroshot", [(n, 1.0) for n in zeroshot])
    _REGISTERED[spec.name] = rated
    _SPECS[spec.name] = spec
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
    if tasks:
        _add_mixture(ALL_DATASETS_MIXTURE, tasks)


def set_sequential_sampling(sampling: str) -> None:
    """Re-registers every registered dataset with `sampling` ("p5" or "all_prefixes") for its
    sequential training targets, and rebuilds `p5_all_datasets`. For entry points; call it
    before building datasets."""
    pipelines.pre.check_sequential_sampling(sampling)
    for spec in list(_SPECS.values()):
        register_dataset(dataclasses.replace(spec, sequential_sampling=sampling))
    register_all_datasets_mixture()
