"""Simple baselines scored by the same metric code as the model.

Each `*_predictions` function returns one prediction per example in the shape the matching
metric function takes: ranked lists of item ids for `metrics.ranking_metrics`, floats for
`metrics.rating_metrics`, booleans for `metrics.accuracy`. Popularity is counted on training
interactions only, so no baseline sees a validation or test item.
"""
from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Mapping, Sequence

DEFAULT_TOP_K = 20  # as many items as the model's 20 beams give


def count_interactions(histories: Iterable[Sequence[str]]) -> collections.Counter:
    """Number of training interactions per item id, from per-user item lists (train histories)."""
    counts = collections.Counter()
    for history in histories:
        if isinstance(history, (str, bytes)):
            raise TypeError("each history must be a list of item ids, not one string")
        counts.update(history)
    return counts


def _tie_break(item_id: str, seed: int) -> bytes:
    # A seeded hash: ties fall in an order unrelated to item numbering or candidate position
    # (P5-style indexing numbers items by time, and callers often put the target first).
    return hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest()


def popularity_order(counts: Mapping[str, int], *, all_items: Iterable[str] = (),
                     seed: int = 0) -> list[str]:
    """Item ids, most interactions first; ties in a fixed seeded pseudo-random order.

    Items in `all_items` without training interactions come last (count 0).
    """
    universe = set(counts) | set(all_items)
    return sorted(universe, key=lambda i: (-counts.get(i, 0), _tie_break(i, seed)))


def most_popular_sequential(*, counts: Mapping[str, int], histories: Sequence[Sequence[str]],
                            all_items: Iterable[str] = (), exclude_history: bool = True,
                            top_k: int = DEFAULT_TOP_K, seed: int = 0) -> list[list[str]]:
    """Per user, all items ranked by training popularity, cut to the first `top_k`.

    With `exclude_history` (the default) the items already in the user's history are skipped,
    the usual protocol for next-item baselines; pass False to rank exactly as over all items.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be positive, got {top_k}")
    order = popularity_order(counts, all_items=all_items, seed=seed)
    predictions = []
    for history in histories:
        skip = frozenset(history) if exclude_history else frozenset()
        ranked = []
        for item in order:
            if item not in skip:
                ranked.append(item)
                if len(ranked) == top_k:
                    break
        predictions.append(ranked)
    return predictions


def most_popular_candidates(*, counts: Mapping[str, int],
                            candidates: Sequence[Sequence[str]],
                            seed: int = 0) -> list[list[str]]:
    """Per user, their candidate items (e.g. 1 positive + 99 negatives) ranked by popularity."""
    for user_candidates in candidates:
        if isinstance(user_candidates, (str, bytes)) or not user_candidates:
            raise ValueError("each candidate set must be a non-empty list of item ids")
    all_candidates = {i for user_candidates in candidates for i in user_candidates}
    order = popularity_order(counts, all_items=all_candidates, seed=seed)
    position = {item: rank for rank, item in enumerate(order)}
    return [sorted(dict.fromkeys(user_candidates), key=position.__getitem__)
            for user_candidates in candidates]


def training_mean_rating(train_ratings: Iterable[float]) -> float:
    ratings = [float(r) for r in train_ratings]
    if not ratings:
        raise ValueError("no training ratings to average")
    return sum(ratings) / len(ratings)


def mean_rating_predictions(*, train_ratings: Iterable[float], num_examples: int) -> list[float]:
    """The training mean rating, predicted for every one of `num_examples` test examples."""
    return [training_mean_rating(train_ratings)] * num_examples


def majority_label_predictions(*, train_labels: Iterable[bool],
                               num_examples: int) -> list[bool]:
    """The most common training label (yes/no, like/dislike) for every test example; ties: True."""
    labels = [bool(label) for label in train_labels]
    if not labels:
        raise ValueError("no training labels")
    majority = sum(labels) * 2 >= len(labels)
    return [majority] * num_examples
