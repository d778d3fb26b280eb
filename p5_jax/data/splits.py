"""Time-ordered user sequences, leave-one-out splits, and the review splits (aligned or P5's 8:1:1)."""
import dataclasses
import operator

import numpy as np

MIN_SEQUENCE_LENGTH = 3  # one training item, one validation target, one test target
REVIEW_SPLITS = ("aligned", "p5")
KEEP_REPEATS_FORMATS = ("p5_sequential",)  # P5's sequence files keep repeats; the last item is the test item


@dataclasses.dataclass(frozen=True)
class UserSequences:
    """Each user's items in time order (ties broken by source order).

    `repeats` counts interactions with an item the user had already interacted with: dropped from
    `items_by_user` when `deduped`, kept otherwise.
    """
    items_by_user: dict
    repeats: int
    deduped: bool

    @property
    def duplicates_dropped(self) -> int:
        return self.repeats if self.deduped else 0


def default_dedupe(fmt: str) -> bool:
    """Drop repeats for review sources (amazon, recbole), keep them for P5's sequence files."""
    return fmt not in KEEP_REPEATS_FORMATS


def user_sequences(interactions, *, dedupe: bool = True) -> UserSequences:
    """`dedupe` keeps only the first interaction with each item, so a held-out item is never in training."""
    ordered = sorted(interactions, key=operator.attrgetter("timestamp", "order"))
    items_by_user: dict[str, list[str]] = {user: [] for user in dict.fromkeys(i.user for i in interactions)}  # first-appearance order
    for interaction in ordered:
        items_by_user[interaction.user].append(interaction.item)
    repeats = sum(len(items) - len(set(items)) for items in items_by_user.values())
    if dedupe:
        items_by_user = {user: distinct(items) for user, items in items_by_user.items()}
    return UserSequences(items_by_user=items_by_user, repeats=repeats, deduped=dedupe)


def distinct(items) -> list:
    """`items` without repeats, in order of first appearance."""
    return list(dict.fromkeys(items))


@dataclasses.dataclass(frozen=True)
class LeaveOneOut:
    train_history: list      # all but the last two
    validation_target: str   # second to last
    test_target: str         # last


def leave_one_out(items: list) -> LeaveOneOut:
    if len(items) < MIN_SEQUENCE_LENGTH:
        raise ValueError(f"leave-one-out needs at least {MIN_SEQUENCE_LENGTH} items, got {len(items)}")
    return LeaveOneOut(train_history=list(items[:-2]), validation_target=items[-2], test_target=items[-1])


def leave_one_out_all(items_by_user: dict) -> dict:
    """user -> LeaveOneOut for every user with enough items (shorter sequences are left out)."""
    return {user: leave_one_out(items) for user, items in items_by_user.items()
            if len(items) >= MIN_SEQUENCE_LENGTH}


def review_split(*, num_reviews: int, seed: int) -> np.ndarray:
    """Split index per review (0 train, 1 validation, 2 test), 8:1:1 at random under `seed`."""
    num_validation = num_test = num_reviews // 10
    labels = np.zeros(num_reviews, dtype=np.int8)
    order = np.random.default_rng(seed).permutation(num_reviews)
    labels[order[num_reviews - num_validation - num_test:num_reviews - num_test]] = 1
    labels[order[num_reviews - num_test:]] = 2
    return labels


def aligned_review_split(*, pairs: list, held_out: dict, seed: int) -> np.ndarray:
    """Split index per (user, item) review: a review of the user's leave-one-out test item goes to
    test (2), one of the validation item to validation (1) (test wins when both are the same
    item); every other review is split 8:1:1 at random under `seed`. `held_out`: user -> LeaveOneOut.
    """
    labels = np.full(len(pairs), -1, dtype=np.int8)
    for position, (user, item) in enumerate(pairs):
        split = held_out.get(user)
        if split is not None and item == split.test_target:
            labels[position] = 2
        elif split is not None and item == split.validation_target:
            labels[position] = 1
    rest = np.flatnonzero(labels < 0)
    labels[rest] = review_split(num_reviews=len(rest), seed=seed)
    return labels


def split_reviews(*, scheme: str, pairs: list, held_out: dict, seed: int) -> np.ndarray:
    """Split index per review under `scheme`: "aligned" (leak-free) or "p5" (independent 8:1:1)."""
    if scheme == "aligned":
        return aligned_review_split(pairs=pairs, held_out=held_out, seed=seed)
    if scheme == "p5":
        return review_split(num_reviews=len(pairs), seed=seed)
    raise ValueError(f"unknown review split {scheme!r}; choose one of {REVIEW_SPLITS}")


def held_out_pairs(held_out: dict) -> set:
    """Every (user, item) pair held out for validation or test."""
    return {(user, item) for user, split in held_out.items()
            for item in (split.validation_target, split.test_target)}


def held_out_pairs_in_training(*, pairs: list, labels, held_out: dict) -> int:
    """How many held-out (user, item) pairs also occur in a training review."""
    train = {pair for pair, label in zip(pairs, labels) if label == 0}
    return len(held_out_pairs(held_out) & train)
