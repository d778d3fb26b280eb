"""The input length a candidate prompt needs to show every candidate and a full history.

A list slot stands between spaces and SentencePiece never merges pieces across whitespace, so a
rendered input costs its fixed text plus each listed id plus each joiner. The bound below takes
the dataset's longest user id and description, its longest item id (every listed id is charged
that much), `num_candidates` candidates and, for prompts with a history, MAX_HISTORY history ids
with the costlier joiner, plus end-of-sequence.
"""
from __future__ import annotations

from collections.abc import Mapping

from p5_jax import id_text
from p5_tasks import preprocessors
from p5_tasks.prompts import Prompt

ROUND_TO = 64
_JOINERS = (",", "->")


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
