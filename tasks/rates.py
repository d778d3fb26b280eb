"""Mixing rates following P5's per-epoch sampling, read from the manifest when mixing starts.

Per epoch P5 draws: rating 1 example per review, sequential 5 (next item) + 5 (from candidates)
+ 10 (yes/no) per user, explanation 1 per explained review, review 1 per review, direct
10 (yes/no) + 5 (from candidates) per user. A group's examples are shared evenly among its
seen prompts, so a task's rate is its expected examples per epoch.
"""
from __future__ import annotations

import functools
import json

from p5_jax import paths
from p5_tasks.prompts import Prompt

# group -> (examples per record, manifest count the records are).
GROUPS = {
    "rating": (1, "reviews"), "review": (1, "reviews"), "explanation": (1, "explanations"),
    "sequential_next": (5, "users"), "sequential_candidates": (5, "users"),
    "sequential_yes_no": (10, "users"),
    "direct_yes_no": (10, "users"), "direct_candidates": (5, "users"),
    "zeroshot": (1, "reviews"),
}


def group_of(prompt: Prompt) -> str:
    if prompt.family in ("sequential", "direct"):
        if prompt.output == "yes_no":
            return f"{prompt.family}_yes_no"
        if "candidates" in prompt.slots:
            return f"{prompt.family}_candidates"
        return "sequential_next"
    return prompt.family


@functools.lru_cache(maxsize=32)
def _counts(root: str, dataset: str) -> dict:
    from p5_jax.data import prepare  # noqa: deferred

    folder = prepare.ensure_prepared(name=dataset, out_root=root)
    return json.loads((folder / "manifest.json").read_text())["counts"]


def examples_per_epoch(task=None, *, dataset: str, group: str, prompts_in_group: int) -> float:
    """seqio rate function (called with the Task): this prompt's share of its group."""
    del task
    per_record, count_key = GROUPS[group]
    count = _counts(str(paths.prepared_root()), dataset)[count_key]
    return float(per_record * count) / prompts_in_group


def rate_fn(*, dataset: str, prompt: Prompt, seen_prompts):
    group = group_of(prompt)
    size = sum(1 for p in seen_prompts if group_of(p) == group)
    return functools.partial(examples_per_epoch, dataset=dataset, group=group,
                             prompts_in_group=size)
