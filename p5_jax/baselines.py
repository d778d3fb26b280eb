"""Simple baselines scored by the same metric code as the model.

Each `*_predictions` function returns one prediction per example in the shape the matching
metric function takes: ranked lists of item ids for `metrics.ranking_metrics`, floats for
`metrics.rating_metrics`, booleans for `metrics.accuracy`. Popularity is counted on training
interactions only unless a caller asks otherwise, so by default no baseline sees a validation or
test item.

Leave-one-out protocol of the most-popular next-item baseline (`most_popular_leave_one_out`):
`count_from` says which interactions count toward an item's popularity and `exclude` which of
the user's own items are left out of the ranking. The standard full-ranking protocol, the one
RecBole's leave-one-out evaluation uses, is STANDARD_COUNT_FROM / STANDARD_EXCLUDE: popularity
from training interactions, the user's training items and validation item both left out when
the test item is ranked.
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

    With `exclude_history` (the default) the items in `histories` are skipped; pass False to
    rank exactly as over all items. Only the items passed are skipped: give each user's whole
    history (for a test item, training items plus the validation item), not the window a prompt
    shows (the last 20 items), or items the user already has stay in the ranking.
    `most_popular_leave_one_out` builds counts and histories from a leave-one-out split.
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


# Which interactions count toward popularity, and which of the user's items leave the ranking.
COUNT_FROM = ("train", "train+validation")
EXCLUDE = ("train+validation", "train", "none")
STANDARD_COUNT_FROM = "train"
STANDARD_EXCLUDE = "train+validation"


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_split(train_histories, validation_targets) -> None:
    if len(train_histories) != len(validation_targets):
        raise ValueError(f"{len(train_histories)} training histories but "
                         f"{len(validation_targets)} validation targets")
    for target in validation_targets:
        if not isinstance(target, str):
            raise TypeError("each validation target must be one item id (a str)")


def leave_one_out_counts(*, train_histories: Sequence[Sequence[str]],
                         validation_targets: Sequence[str],
                         count_from: str = STANDARD_COUNT_FROM) -> collections.Counter:
    """Interactions per item: the training items only ("train", the standard) or also each
    user's validation item ("train+validation")."""
    _check_choice("count_from", count_from, COUNT_FROM)
    _check_split(train_histories, validation_targets)
    counts = count_interactions(train_histories)
    if count_from == "train+validation":
        counts.update(validation_targets)
    return counts


def leave_one_out_exclusions(*, train_histories: Sequence[Sequence[str]],
                             validation_targets: Sequence[str],
                             exclude: str = STANDARD_EXCLUDE) -> list[list[str]]:
    """Per user, the items left out when the test item is ranked: training items and the
    validation item ("train+validation", the standard), training items only ("train"), or
    nothing ("none")."""
    _check_choice("exclude", exclude, EXCLUDE)
    _check_split(train_histories, validation_targets)
    if exclude == "none":
        return [[] for _ in train_histories]
    if exclude == "train":
        return [list(history) for history in train_histories]
    return [list(history) + [target]
            for history, target in zip(train_histories, validation_targets)]


def most_popular_leave_one_out(*, train_histories: Sequence[Sequence[str]],
                               validation_targets: Sequence[str], all_items: Iterable[str] = (),
                               count_from: str = STANDARD_COUNT_FROM,
                               exclude: str = STANDARD_EXCLUDE, top_k: int = DEFAULT_TOP_K,
                               seed: int = 0) -> list[list[str]]:
    """Per user, the ranking the test item is scored in, under a leave-one-out split.

    `train_histories` are each user's complete training items (all but the last two, in time
    order) and `validation_targets` the second-to-last items; a prepared test record's history
    is exactly one followed by the other. `count_from` and `exclude` are as in
    `leave_one_out_counts` and `leave_one_out_exclusions`. Equal counts fall in the seeded
    order of `popularity_order`. Where sequences keep repeats (p5_sequential sources) the test
    item can also be a training item; excluding it then takes it out of reach.
    """
    counts = leave_one_out_counts(train_histories=train_histories,
                                  validation_targets=validation_targets, count_from=count_from)
    excluded = leave_one_out_exclusions(train_histories=train_histories,
                                        validation_targets=validation_targets, exclude=exclude)
    return most_popular_sequential(counts=counts, histories=excluded, all_items=all_items,
                                   exclude_history=exclude != "none", top_k=top_k, seed=seed)


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
