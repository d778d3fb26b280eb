"""Input lengths and list truncation: what a list prompt needs, and what an example lost.

A list slot stands between spaces and SentencePiece never merges pieces across whitespace, so a
rendered input costs its fixed text plus each listed id plus each joiner. The bound below takes
the dataset's longest user id and description, its longest item id (every listed id is charged
that much), `num_candidates` candidates and, for prompts with a history, MAX_HISTORY history ids
with the costlier joiner, plus end-of-sequence.

The input length fit records per example how many ids of each list it dropped
(`history_dropped`, `candidates_dropped`); evaluation and inference read those counts (never the
rendered text) and refuse (`on_truncation="error"`) or report (`"warn"`) examples that lost ids.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from p5_jax import id_text
from p5_tasks import preprocessors
from p5_tasks.prompts import LIST_SLOTS, Prompt
from p5_tasks.rendering import DROPPED

ROUND_TO = 64
_JOINERS = (",", "->")
ON_TRUNCATION = ("error", "warn")


class TruncationError(ValueError):
    """The input length drops candidates or history items that the prompt should show."""


def check_policy(policy: str, *, name: str = "on_truncation", error=ValueError) -> str:
    """`policy` when it is one of ON_TRUNCATION, else `error` naming the setting `name`."""
    if policy not in ON_TRUNCATION:
        raise error(f"{name} must be one of {ON_TRUNCATION}, got {policy!r}")
    return policy


def dropped(example: Mapping, slot: str) -> int:
    """Ids of list `slot` the input length dropped from an example (or a scored row)."""
    return int(example.get(DROPPED.format(slot), 0))


def lost_lists(example: Mapping) -> tuple[str, ...]:
    """The list slots that lost ids to the input length."""
    return tuple(slot for slot in LIST_SLOTS if dropped(example, slot) > 0)


def shown_figures(rows: Sequence[Mapping], slots: Iterable[str]) -> dict[str, float]:
    """Per list slot: fewest and mean ids shown, and how many examples the length cut."""
    figures = {}
    for slot in slots:
        shown = [len(row.get(slot, ())) for row in rows]
        figures[f"{slot}_shown_min"] = float(min(shown))
        figures[f"{slot}_shown_mean"] = float(np.mean(shown))
        figures[f"{slot}_cut"] = float(sum(dropped(row, slot) > 0 for row in rows))
    return figures


def cut_counts(examples: Iterable[Mapping]) -> tuple[int, int, dict[str, int]]:
    """(examples, examples that lost ids, {slot: examples that lost ids of it})."""
    total, cut, by_slot = 0, 0, dict.fromkeys(LIST_SLOTS, 0)
    for example in examples:
        lost = lost_lists(example)
        total, cut = total + 1, cut + bool(lost)
        for slot in lost:
            by_slot[slot] += 1
    return total, cut, by_slot


def truncation_message(*, input_length: int, total: int, cut: int, by_slot: Mapping[str, int],
                       fits: int) -> str:
    """One line: how many examples lose ids of which lists, and an input length that fits."""
    lists = ", ".join(f"{slot} from {n}" for slot, n in by_slot.items() if n)
    return (f"input length {input_length} drops ids from {cut} of {total} examples ({lists}); "
            f"an input length of {fits} shows them all")


def _longest(texts) -> str:
    return max(texts, key=len, default="")


def fixed_text(prompt: Prompt, users: Mapping[str, str]) -> str:
    """The prompt with empty lists and the dataset's longest user id and description."""
    values = {slot: "" for slot in prompt.slots}
    values["user_id"] = id_text.user_text(_longest(users))
    values["user_desc"] = _longest(users.values())
    return prompt.input_template.format(**values)


def needed_input_length(prompt: Prompt, *, vocabulary, item_tokens: Mapping[str, tuple],
                        users: Mapping[str, str], num_candidates: int,
                        max_history: int = preprocessors.MAX_HISTORY) -> int:
    """Input tokens (a multiple of ROUND_TO) that fit the prompt at its longest.

    `item_tokens` maps item ids to the tokens of `item_<id>` plus end-of-sequence.
    """
    longest_id = max(len(tokens) for tokens in item_tokens.values()) - 1
    joiner = max(len(vocabulary.encode(j)) for j in _JOINERS)
    total = len(vocabulary.encode(fixed_text(prompt, users))) + 1
    if "candidates" in prompt.slots:
        total += num_candidates * longest_id + (num_candidates - 1) * joiner
    if "history" in prompt.slots:
        total += max_history * longest_id + (max_history - 1) * joiner
    return -(-total // ROUND_TO) * ROUND_TO
