"""Fixed negatives per user: items the user never interacted with, sampled once under the seed."""
import numpy as np
from tqdm.auto import tqdm

from p5_jax.data.errors import DataError
from p5_jax.data.hashing import stable_hash

NUM_NEGATIVES = 99


def check_negatives(*, user: str, interacted, items: list, count: int) -> set:
    """`interacted` as a set, once it leaves `count` negatives to draw from `items`."""
    interacted = set(interacted)
    available = len(items) - len(interacted)  # interacted items are part of the universe
    if available < count:
        raise DataError(f"user {user!r} has only {available} never-interacted items, "
                        f"{count} negatives are needed", field="negatives")
    return interacted


def sample_user_negatives(*, user: str, interacted, items: list, seed: int, count: int) -> list:
    """`count` distinct items from `items` outside `interacted`, fixed by (seed, user) alone."""
    interacted = check_negatives(user=user, interacted=interacted, items=items, count=count)
    rng = np.random.default_rng([seed, stable_hash(text=user, seed=seed)])
    chosen = {}
    while len(chosen) < count:
        for position in rng.integers(0, len(items), size=2 * count + 8).tolist():  # ints index lists faster
            item = items[position]
            if item not in interacted and item not in chosen:
                chosen[item] = None
                if len(chosen) == count:
                    break
    return list(chosen)


def sample_negatives(*, items_by_user: dict, items: list, seed: int, count: int = NUM_NEGATIVES,
                     progress: bool = False) -> dict:
    """user -> list of `count` raw item ids; `items` is the sorted universe of raw item ids."""
    users = tqdm(items_by_user.items(), desc="negatives", unit="user", disable=not progress, leave=False)
    return {user: sample_user_negatives(user=user, interacted=interacted, items=items, seed=seed, count=count)
            for user, interacted in users}
