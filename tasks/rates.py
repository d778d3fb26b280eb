"""Mixing rates following P5's per-epoch sampling, read from the manifest when mixing starts.

Per epoch P5's training loop draws, per family: rating 1 example per review, sequential
5 (next item) + 5 (from candidates) + 10 (yes/no) = 20 per user, explanation 1 per explained
review, review 1 per review, direct 10 (yes/no) + 5 (from candidates) = 15 per user. Those
numbers only size each family's total: every example then takes its template uniformly from
the family's whole seen list (P5's src/pretrain_data.py). So a task's rate, its expected
examples per epoch, is its family's total divided by the family's seen prompts on the dataset
(Beauty, 12 seen sequential prompts: 20/12 per user each).

`set_kind_weights` scales those rates by what a prompt asks for (`prompt_kind`): e.g.
{"yes_no": 0.25} draws a quarter as many yes/no examples. P5's own rates give free next-item
prompts only a seventh of the item families' examples; recipes that rank items weight them up.
"""
from __future__ import annotations

import functools
import json

from p5_jax import families, paths
from p5_tasks.prompts import Prompt

KINDS = ("next_item", "continuation", "candidates", "yes_no", "other")
_kind_weights: dict[str, float] = {}


def prompt_kind(prompt: Prompt) -> str:
    """"next_item" (an item from the whole catalogue), "continuation" (the next items in order,
    prompts.CONTINUATION), "candidates" (an item among those shown), "yes_no", or "other"
    (ratings, text)."""
    if "continuation" in prompt.target_slots:
        return "continuation"
    if prompt.output == "item":
        return "candidates" if "candidates" in prompt.slots else "next_item"
    return "yes_no" if prompt.output == "yes_no" else "other"


def set_kind_weights(weights: dict[str, float] | None) -> None:
    """Multiplies every later-mixed rate by its prompt kind's weight (missing kinds: 1)."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown prompt kinds {unknown}; choose among {list(KINDS)}")
    bad = {kind: w for kind, w in weights.items() if not float(w) >= 0}
    if bad:
        raise ValueError(f"prompt kind weights must be >= 0, got {bad}")
    _kind_weights.clear()
    _kind_weights.update({kind: float(w) for kind, w in weights.items()})


@functools.lru_cache(maxsize=32)
def _counts(root: str, dataset: str) -> dict:
    from p5_jax.data import prepare  # deferred

    folder = prepare.ensure_prepared(name=dataset, out_root=root)
    return json.loads((folder / "manifest.json").read_text())["counts"]


def family_examples_per_epoch(*, dataset: str, family: str) -> int:
    """P5's examples per epoch of one family on `dataset`."""
    spec = families.get(family)
    return spec.per_epoch * _counts(str(paths.prepared_root()), dataset)[spec.counted_in]


def examples_per_epoch(task=None, *, dataset: str, family: str, seen_in_family: int,
                       kind: str = "other") -> float:
    """seqio rate function (called with the Task): this prompt's share of its family, times
    its kind's weight."""
    del task
    share = family_examples_per_epoch(dataset=dataset, family=family) / seen_in_family
    return share * _kind_weights.get(kind, 1.0)


def rate_fn(*, dataset: str, prompt: Prompt, seen_prompts):
    """The rate of seen `prompt` among the dataset's `seen_prompts`."""
    size = sum(1 for p in seen_prompts if p.family == prompt.family)
    return functools.partial(examples_per_epoch, dataset=dataset, family=prompt.family,
                             seen_in_family=size, kind=prompt_kind(prompt))
