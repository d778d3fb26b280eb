"""Prompt rendering, the input length fit, and whole-word ids (seqio preprocessors).

A list slot (`{history}`, `{candidates}`) always stands between spaces, and SentencePiece never
merges pieces across whitespace, so the token count of a rendered input is the count of its
fixed text plus the counts of each listed id and joiner. `fit_lists_to_length` uses that to drop
whole ids (trailing negatives first, then the oldest history items; the true item is first in the
unshuffled candidate list and always kept) so that tokenized inputs are never cut inside an id.

Besides the model features, every example keeps the ids it was rendered from (`EXAMPLE_KEYS`:
user, target or probed item, the history and candidates shown), so evaluation and baselines read
them as data and never parse rendered text back.
"""
from __future__ import annotations

import string

import tensorflow as tf

from p5_jax import vocabulary as p5_vocabulary
from p5_jax.id_text import ITEM_PREFIX, USER_PREFIX
from p5_tasks.prompts import LIST_SLOTS, Prompt

OUTPUT_KEYS = ("inputs", "targets", "inputs_pretokenized", "targets_pretokenized",
               "inputs_whole_word_ids")
EXAMPLE_KEYS = ("user_id", "item_id", "target", "history", "candidates", "history_dropped",
                "candidates_dropped")
DROPPED = "{}_dropped"   # how many ids of a list slot the input length fit dropped


def _join_ids(ids, joiner) -> tf.Tensor:
    """["3", "9"], "->" -> "item_3 -> item_9" ("" for no ids)."""
    words = tf.strings.join([ITEM_PREFIX, ids])
    pairs = tf.stack([words, tf.fill(tf.shape(words), joiner)], axis=1)
    return tf.strings.reduce_join(tf.reshape(pairs, [-1])[:-1], separator=" ")


def slot_value(ex, slot: str) -> tf.Tensor:
    """The rendered text of one placeholder (see p5_tasks.prompts for the forms)."""
    if slot == "user_id":
        return tf.strings.join([USER_PREFIX, ex["user_id"]])
    if slot == "item_id":
        return tf.strings.join([ITEM_PREFIX, ex["item_id"]])
    if slot == "target_item":
        return tf.strings.join([ITEM_PREFIX, ex["target"]])
    if slot in ("rating", "star"):
        return tf.strings.as_string(ex[slot])
    if slot == "like":
        return tf.where(ex["rating"] >= 4, "like", "dislike")
    if slot == "history":
        return _join_ids(ex["history"], ex["joiner"])
    if slot == "candidates":
        return _join_ids(ex["candidates"], ",")
    if slot == "continuation":
        return tf.strings.reduce_join(tf.strings.join([ITEM_PREFIX, ex["continuation"]]),
                                      separator=" ")
    return ex[slot]


def fill_template(template: str, values) -> tf.Tensor:
    """Template text with each `{slot}` replaced by `values(slot)` (a string tensor)."""
    parts = []
    for literal, slot, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(tf.constant(literal))
        if slot:
            parts.append(values(slot))
    return tf.strings.join(parts)


def render(dataset, *, prompt: Prompt):
    """{user_id: "5", item_id: "9", rating: 4, ...} -> {..., inputs: "... user_5 ... item_9 ...",
    targets: "4"}, following the prompt's templates."""
    def fn(ex):
        ex = dict(ex)
        value = lambda slot: slot_value(ex, slot)  # noqa: E731
        # An emptied list leaves two spaces; the tokenizer ignores them, the text should too.
        ex["inputs"] = tf.strings.regex_replace(
            fill_template(prompt.input_template, value), "  +", " ")
        ex["targets"] = fill_template(prompt.target_template, value)
        return ex

    return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def filter_nonempty(dataset, *, fields):
    """Drops records where any of the text `fields` (e.g. summary for 4-1) is empty."""
    def keep(ex):
        lengths = [tf.strings.length(ex[f]) for f in fields]
        return tf.reduce_all(tf.stack(lengths) > 0)

    return dataset.filter(keep) if fields else dataset


def _kept_count(fixed, costs, spacer, budget):
    """Largest k such that fixed + sum(costs[:k]) + (k - 1) * spacer <= budget."""
    totals = tf.cumsum(costs + spacer) - spacer
    return tf.reduce_sum(tf.cast(fixed + totals <= budget, tf.int32))


def _list_cost(costs, spacer):
    """Tokens of ids joined by a one-piece spacer (0 for no ids)."""
    return tf.maximum(tf.reduce_sum(costs + spacer) - spacer, 0)


def fit_lists_to_length(dataset, sequence_length, output_features, *, prompt: Prompt):
    """Drops whole ids so the tokenized input (plus EOS) fits `sequence_length["inputs"]`.

    Trailing candidates go first (never the first, the true item: candidates are shuffled
    later), then the oldest history items, so a short budget shrinks the candidate list before
    it cuts the history. {history: 20 ids, candidates: 100 ids} at a short budget ->
    {history: 20 ids, candidates: the first 60, history_dropped: 0, candidates_dropped: 40}.
    Evaluation and inference refuse (or report) examples that lost ids from these counts."""
    if not sequence_length or not sequence_length.get("inputs"):
        return dataset
    if not any(slot in prompt.slots for slot in LIST_SLOTS):
        return dataset
    feature = output_features["inputs"]
    vocab = feature.vocabulary
    budget = sequence_length["inputs"] - (1 if feature.add_eos else 0)
    joiner_cost = {j: len(vocab.encode(j)) for j in (",", "->")}

    def id_costs(ids):
        return tf.cast(vocab.encode_tf(tf.strings.join([ITEM_PREFIX, ids])).row_lengths(), tf.int32)

    def fn(ex):
        ex = dict(ex)
        empty = lambda slot: tf.constant("") if slot in LIST_SLOTS else slot_value(ex, slot)  # noqa
        fixed = tf.size(vocab.encode_tf(fill_template(prompt.input_template, empty)))
        history_total = tf.constant(0)
        if "history" in prompt.slots:
            j = tf.where(tf.equal(ex["joiner"], ","), joiner_cost[","], joiner_cost["->"])
            newest_first = tf.reverse(id_costs(ex["history"]), [0])
        if "candidates" in prompt.slots:
            if "history" in prompt.slots:
                history_total = _list_cost(newest_first, j)
            costs = id_costs(ex["candidates"])
            keep_c = tf.maximum(_kept_count(fixed + history_total, costs, joiner_cost[","],
                                             budget), 1)
            ex[DROPPED.format("candidates")] = tf.size(ex["candidates"]) - keep_c
            ex["candidates"] = ex["candidates"][:keep_c]
            fixed += _list_cost(costs[:keep_c], joiner_cost[","])
        if "history" in prompt.slots:
            keep_h = _kept_count(fixed, newest_first, j, budget)
            ex[DROPPED.format("history")] = tf.size(ex["history"]) - keep_h
            ex["history"] = ex["history"][tf.size(ex["history"]) - keep_h:]
        return ex

    return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def add_whole_word_ids(dataset, output_features):
    """{inputs: [▁item, _, 4, ▁,, ▁item, _, 7, </s>]} -> {..., inputs_whole_word_ids:
    [1, 1, 1, 2, 3, 3, 3, 0]}: the 1-based word index of each token (capped at 511), 0 for
    EOS and padding; a word starts at a piece beginning with "▁"."""
    vocab = output_features["inputs"].vocabulary
    starts = tf.constant(p5_vocabulary.word_start_table(vocab), dtype=tf.int32)
    eos_id = vocab.eos_id

    def fn(ex):
        tokens = ex["inputs"]
        words = tf.maximum(tf.cumsum(tf.gather(starts, tokens)), 1)
        words = tf.minimum(words, p5_vocabulary.MAX_WHOLE_WORD_ID)
        special = tf.logical_or(tf.equal(tokens, 0), tf.equal(tokens, eos_id))
        ex = dict(ex)
        ex["inputs_whole_word_ids"] = tf.where(special, 0, words)
        return ex

    return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def select_output_features(dataset, *, prompt: Prompt):
    """Keeps the task's outputs (inputs, targets, their texts, whole-word ids) and the ids the
    example shows (`EXAMPLE_KEYS`: a list only when the prompt shows it; mixtures and the
    feature converter drop these)."""
    hidden = {name for slot in LIST_SLOTS if slot not in prompt.slots
              for name in (slot, DROPPED.format(slot))}
    keys = [k for k in OUTPUT_KEYS + EXAMPLE_KEYS if k not in hidden]
    return dataset.map(lambda ex: {k: ex[k] for k in keys if k in ex},
                       num_parallel_calls=tf.data.AUTOTUNE)
