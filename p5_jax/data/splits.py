"""Time-ordered user sequences, leave-one-out splits, and the 8:1:1 random review split."""
import dataclasses

import numpy as np

MIN_SEQUENCE_LENGTH = 3  # one training item, one validation target, one test target


@dataclasses.dataclass(frozen=True)
class UserSequences:
    """Each user's distinct items in time order (ties broken by source order)."""
    items_by_user: dict
    duplicates_dropped: int


def user_sequences(interactions) -> UserSequences:
    """Repeat interactions with an item keep only the first, so a held-out item is never in training."""
    ordered = sorted(interactions, key=lambda i: (i.timestamp, i.order))
    users = dict.fromkeys(i.user for i in interactions)  # first-appearance order
    items_by_user = {user: {} for user in users}
    for interaction in ordered:
        items_by_user[interaction.user].setdefault(interaction.item, None)
    kept = sum(len(items) for items in items_by_user.values())
    return UserSequences(items_by_user={u: list(items) for u, items in items_by_user.items()},
                         duplicates_dropped=len(interactions) - kept)


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
