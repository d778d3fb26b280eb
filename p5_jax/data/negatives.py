"""Fixed negatives per user: items the user never interacted with, sampled once under the seed."""
import itertools

import numpy as np
from tqdm.auto import tqdm

from p5_jax.data.errors import DataError
from p5_jax.data.hashing import stable_hash

NUM_NEGATIVES = 99


def check_negatives(*, user: str, interacted, items: list, count: int) -> set:
    """`interacted` as a set, once it leaves `count` negatives to draw from `items`."""
    interacted = set(interacted)
    _check_available(user, len(items) - len(interacted), count)  # interacted items are part of the universe
    return interacted


def _check_available(user: str, available: int, count: int) -> None:
    if available < count:
        raise DataError(f"user {user!r} has only {available} never-interacted items, "
                        f"{count} negatives are needed", field="negatives")


def sample_negative_positions(*, user: str, interacted: list, num_items: int, seed: int, count: int) -> list:
    """`count` distinct positions in a universe of `num_items` items outside `interacted` (distinct
    positions), fixed by (seed, user) alone: the first distinct draws that are not interacted."""
    _check_available(user, num_items - len(interacted), count)
    rng = np.random.default_rng([seed, stable_hash(text=user, seed=seed)])
    chosen: dict[int, None] = {}  # insertion-ordered set: the first distinct draws first
    while len(chosen) < count:
        drawn = rng.integers(0, num_items, size=2 * count + 8)
        for part in (drawn[:count + 8], drawn[count + 8:]):  # the first part mostly suffices
            _add_new(chosen, part.tolist(), interacted)
            if len(chosen) >= count:
                break
    return list(itertools.islice(chosen, count))


def _add_new(chosen: dict, drawn: list, interacted) -> None:
    """Adds to `chosen`, in order, the positions of `drawn` it lacks that are not `interacted`."""
    new = dict.fromkeys(drawn)
    for position in interacted:
        new.pop(position, None)
    chosen.update(new)  # keeps the positions already chosen where they are


def item_positions(items: list) -> dict:
    """item -> its position in `items`."""
    return {item: position for position, item in enumerate(items)}


def sample_user_negatives(*, user: str, interacted, items: list, seed: int, count: int, positions=None) -> list:
    """`count` distinct items from `items` outside `interacted`, fixed by (seed, user) alone.
    `positions`: `item_positions(items)`, when already known."""
    interacted = check_negatives(user=user, interacted=interacted, items=items, count=count)
    positions = item_positions(items) if positions is None else positions
    drawn = sample_negative_positions(user=user, interacted=[positions[i] for i in interacted if i in positions],
                                      num_items=len(items), seed=seed, count=count)
    return [items[position] for position in drawn]


def sample_negatives(*, items_by_user: dict, items: list, seed: int, count: int = NUM_NEGATIVES,
                     progress: bool = False) -> dict:
    """user -> list of `count` raw item ids; `items` is the sorted universe of raw item ids."""
    users = tqdm(items_by_user.items(), desc="negatives", unit="user", disable=not progress, leave=False)
    positions = item_positions(items)
    return {user: sample_user_negatives(user=user, interacted=interacted, items=items, seed=seed, count=count,
                                        positions=positions)
            for user, interacted in users}
