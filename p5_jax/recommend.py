"""Answers for one user of a prepared dataset: top-k items, a predicted rating, an explanation.

- top-k: a next-item prompt (2-3 when registered) over the user's last interactions (as many
  as the dataset's registered history length), with beam search constrained to the dataset's
  item ids, the user's own items left out unless `exclude_seen` is False; scores are the beams'
  length-normalised log-probabilities, best first;
- rating: prompt 1-1 (user id, item id), greedy, parsed as a star rating;
- explanation: prompt 3-8 ("rating , sentence" from the user's description and the item id), or
  3-6 (shown the predicted rating) when 3-8 is not registered; none for datasets without
  explanation prompts.
The rated and explained item is `item_id` when given, else the top recommendation.

An input length that drops history items or cuts a prompt's text raises
`eval_lengths.TruncationError` naming the length that fits (`on_truncation="error"`), or with
"warn" is logged and reported in the answer (`history_dropped`, `truncated_prompts`).
"""
from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
import seqio
from absl import logging

from p5_jax import batch_decoding, eval_lengths, id_text, inference, postprocessors
from p5_jax import vocabulary as p5_vocabulary
from p5_jax.item_index import ItemIndex, build_item_index
from p5_tasks import catalog, prompts, registration

SEQUENTIAL_PROMPTS = ("2-3", "2-1", "2-2", "2-4", "2-5", "2-6", "2-13")
RATING_PROMPTS = ("1-1", "1-6")
EXPLANATION_PROMPTS = ("3-8", "3-6")


class UnknownIdError(ValueError):
    """A user or item id the prepared dataset does not have."""


def _examples(ids: Sequence[str]) -> str:
    shown = ", ".join(list(ids)[:5])
    return f"{shown}, ..." if len(ids) > 5 else shown


def read_users(dataset_dir) -> dict[str, str]:
    """user id -> user description, from users.jsonl."""
    dataset_dir = pathlib.Path(dataset_dir)
    return catalog.users_under(str(dataset_dir.parent), dataset_dir.name)


def check_ids(*, users: dict, items: Sequence[str], user_id: str, item_id: str | None,
              dataset: str) -> None:
    if user_id not in users:
        raise UnknownIdError(f"unknown user {user_id!r} in {dataset} ({len(users)} users, "
                             f"ids such as {_examples(sorted(users))})")
    if item_id is not None and item_id not in set(items):
        raise UnknownIdError(f"unknown item {item_id!r} in {dataset} ({len(items)} items, "
                             f"ids such as {_examples(list(items))})")


def validate(*, root, dataset: str, user_id: str, item_id: str | None) -> None:
    """Raises UnknownIdError unless the prepared dataset has the user (and the item)."""
    check_ids(users=read_users(pathlib.Path(root) / dataset),
              items=[str(i) for i in catalog.item_ids(dataset)], user_id=user_id,
              item_id=item_id, dataset=dataset)


def user_history(*, root, dataset: str, user_id: str) -> list[str]:
    """Every item the user interacted with, oldest first (test history plus its target)."""
    from p5_jax.data import tfds_builders

    records = tfds_builders.load(root=root, dataset=dataset, kind="sequences", split="test")
    for record in records.as_numpy_iterator():
        if record["user_id"].decode() == user_id:
            history = [i.decode() for i in record["history"]]
            target = record["target"].decode()
            return history + ([target] if target else [])
    return []


def registered_prompt(dataset: str, candidates: Sequence[str]) -> prompts.Prompt | None:
    """The first prompt of `candidates` that the dataset registers as a task."""
    names = set(seqio.TaskRegistry.names())
    for prompt_id in candidates:
        prompt = prompts.get_prompt(prompt_id)
        if registration.task_name(dataset, prompt) in names:
            return prompt
    return None


def render(prompt: prompts.Prompt, values: dict) -> str:
    """Input text of `prompt`, each slot rendered as the tasks render it."""
    rendered = {"user_id": id_text.user_text(values.get("user_id", "")),
                "item_id": id_text.item_text(values.get("item_id", "")),
                "history": " , ".join(id_text.item_text(i) for i in values.get("history", ())),
                "user_desc": values.get("user_desc", ""), "rating": values.get("rating", "")}
    return prompt.input_template.format(**rendered)


class Truncation:
    """What the input length cut from one answer's prompts: under "error" the first cut
    raises `eval_lengths.TruncationError`, under "warn" it is logged and kept in `cut`."""

    def __init__(self, *, policy: str, input_length: int):
        self.policy, self.input_length = eval_lengths.check_policy(policy), input_length
        self.cut: dict[str, list[str]] = {}   # prompt id -> what was cut

    def report(self, prompt: prompts.Prompt, what: str, *, needed: int) -> None:
        text = (f"input length {self.input_length} {what} of prompt {prompt.id}; an input "
                f"length of {needed} fits it")
        if self.policy == "error":
            raise eval_lengths.TruncationError(text)
        logging.warning("%s (answered anyway: on_truncation='warn')", text)
        self.cut.setdefault(prompt.id, []).append(what)


def _tokens(text: str, *, vocabulary) -> list[int]:
    return list(vocabulary.encode(text)) + [inference.EOS_ID]


def encode(text: str, *, vocabulary, input_length: int, rows: int) -> dict:
    """Encoder features of one input (eos appended, cut to `input_length`), `rows` times."""
    tokens = np.asarray(list(vocabulary.encode(text))[:input_length - 1] + [inference.EOS_ID])
    starts = p5_vocabulary.word_start_table(vocabulary)
    words = p5_vocabulary.whole_word_ids(token_ids=tokens, word_starts=starts)
    example = {"inputs": tokens, "inputs_whole_word_ids": words}
    return batch_decoding.model_batch([example] * rows, input_length=input_length, batch_size=rows)


def checked_encode(prompt: prompts.Prompt, values: dict, *, vocabulary, input_length: int,
                   rows: int, truncation: Truncation) -> dict:
    """`encode` of the rendered prompt, its text cut reported to `truncation`."""
    text = render(prompt, values)
    needed = len(_tokens(text, vocabulary=vocabulary))
    if needed > input_length:
        truncation.report(prompt, f"cuts {needed - input_length} tokens of the text",
                          needed=needed)
    return encode(text, vocabulary=vocabulary, input_length=input_length, rows=rows)


def offered_history(dataset: str, history: Sequence[str]) -> list[str]:
    """The newest ids of `history`, as many as the dataset's prompts show."""
    return list(history)[-registration.registered_spec(dataset).max_history:]


def _fitted_history(prompt, values, history, *, vocabulary, input_length,
                    truncation: Truncation) -> list[str]:
    """The newest ids of `history` (already cut to the offered ones) whose rendered input fits
    `input_length` tokens; the dropped ones are reported to `truncation`."""
    offered = list(history)
    history = offered
    while history and len(_tokens(render(prompt, {**values, "history": history}),
                                  vocabulary=vocabulary)) > input_length:
        history = history[1:]
    if len(history) < len(offered):
        needed = len(_tokens(render(prompt, {**values, "history": offered}),
                             vocabulary=vocabulary))
        truncation.report(prompt, f"drops {len(offered) - len(history)} of the {len(offered)} "
                          "history items", needed=needed)
    return history


def top_items(*, predictor, vocabulary, dataset: str, values: dict, history: Sequence[str],
              items: ItemIndex, top_k: int, input_length: int,
              truncation: Truncation) -> tuple:
    prompt = registered_prompt(dataset, SEQUENTIAL_PROMPTS)
    if prompt is None:
        return None, [], []
    history = _fitted_history(prompt, values, offered_history(dataset, history),
                              vocabulary=vocabulary, input_length=input_length,
                              truncation=truncation)
    batch = checked_encode(prompt, {**values, "history": history}, vocabulary=vocabulary,
                           input_length=input_length, rows=predictor.data_size,
                           truncation=truncation)
    trie = items.constraint_for([values["user_id"]], rows=predictor.data_size)
    tokens, scores = predictor.beam_search(batch, num_decodes=top_k, trie=trie,
                                           max_decode_length=items.max_length)
    ranked = []
    for k in range(tokens.shape[1]):
        if np.isfinite(scores[0, k]) and scores[0, k] > -1e9:
            text = inference.decode_tokens(vocabulary=vocabulary, tokens=tokens[0, k])
            for item in postprocessors.parse_item_list(text):
                ranked.append({"item_id": item, "score": float(scores[0, k])})
    return prompt, history, ranked


def _greedy_text(predictor, prompt, values, *, vocabulary, input_length, target_length,
                 truncation: Truncation) -> str:
    batch = checked_encode(prompt, values, vocabulary=vocabulary, input_length=input_length,
                           rows=predictor.data_size, truncation=truncation)
    tokens = predictor.greedy(batch, max_decode_length=target_length)
    return inference.decode_tokens(vocabulary=vocabulary, tokens=tokens[0])


def rating_and_explanation(*, predictor, vocabulary, dataset: str, values: dict,
                           input_length: int, target_length: int,
                           truncation: Truncation) -> dict:
    """Predicted rating (1-1) and explanation (3-8 or 3-6) for values' user and item."""
    answer: dict[str, object] = {"predicted_rating": None, "rating_text": None, "explanation": None}
    kwargs = dict(vocabulary=vocabulary, input_length=input_length, target_length=target_length,
                  truncation=truncation)
    rating: float | None = None
    rating_prompt = registered_prompt(dataset, RATING_PROMPTS)
    if rating_prompt is not None:
        text = _greedy_text(predictor, rating_prompt, values, **kwargs)
        rating = postprocessors.parse_rating(text)
        answer.update(rating_text=text, predicted_rating=rating)
        answer["rating_prompt"] = rating_prompt.id
    explanation_prompt = registered_prompt(dataset, EXPLANATION_PROMPTS)
    if explanation_prompt is not None:
        shown = {**values, "rating": str(int(round(min(max(rating or 5, 1), 5))))}
        text = _greedy_text(predictor, explanation_prompt, shown, **kwargs)
        if explanation_prompt.output == "rating_explanation":
            stated, text = postprocessors.split_rating_and_text(text)
            answer["explanation_rating"] = stated
        answer.update(explanation=text, explanation_prompt=explanation_prompt.id)
    return answer


def recommend(*, predictor, vocabulary, root, dataset: str, user_id: str,
              item_id: str | None = None, top_k: int = 10, input_length: int = 512,
              target_length: int = 64, on_truncation: str = "error",
              exclude_seen: bool = True) -> dict:
    """The JSON-able answer for one user (see the module docstring)."""
    if top_k < 1:
        raise ValueError(f"top_k must be positive, got {top_k}")
    truncation = Truncation(policy=on_truncation, input_length=input_length)
    dataset_dir = pathlib.Path(root) / dataset
    users, item_ids = read_users(dataset_dir), [str(i) for i in catalog.item_ids(dataset)]
    check_ids(users=users, items=item_ids, user_id=user_id, item_id=item_id, dataset=dataset)
    values = {"user_id": user_id, "user_desc": users[user_id]}
    full_history = user_history(root=root, dataset=dataset, user_id=user_id)
    items = build_item_index(
        item_ids=item_ids, vocabulary=vocabulary, vocab_size=predictor.vocab_size,
        excluded={user_id: full_history} if exclude_seen else None)
    prompt, history, ranked = top_items(
        predictor=predictor, vocabulary=vocabulary, dataset=dataset, values=values,
        history=full_history, items=items, top_k=top_k, input_length=input_length,
        truncation=truncation)
    answer = {"dataset": dataset, "user_id": user_id, "user_desc": users[user_id],
              "history": history, "recommendations": ranked[:top_k],
              "recommendation_prompt": prompt.id if prompt else None,
              "history_dropped": len(offered_history(dataset, full_history)) - len(history)
              if prompt else 0}
    target = item_id or (ranked[0]["item_id"] if ranked else None)
    answer.update(item_id=target, item_source="given" if item_id else "top recommendation")
    if target is not None:
        answer.update(rating_and_explanation(
            predictor=predictor, vocabulary=vocabulary, dataset=dataset,
            values={**values, "item_id": target}, input_length=input_length,
            target_length=target_length, truncation=truncation))
    answer["truncated_prompts"] = dict(truncation.cut)
    return answer
