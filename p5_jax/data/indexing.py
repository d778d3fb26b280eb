"""Item id schemes. Every scheme returns a bijection raw item id -> id string, fixed by the seed.

- original: the source's numbering (P5's files number items by first appearance over the whole
  data, test items included, which leaks the test item; flagged in the manifest).
- random: a seeded permutation of the sorted item universe.
- sequential_train: numbered by first appearance in the training histories only.
- collaborative: spectral-clustering paths over the training co-occurrence graph (collaborative.py).
Items that never occur in training get ids after all training items, in seeded-hash order.
"""
import numpy as np

from p5_jax.data.collaborative import collaborative_ids
from p5_jax.data.hashing import hash_order

SCHEMES = ("original", "random", "sequential_train", "collaborative")


def original_ids(*, items: list, original_item_ids: dict, full_sequences: dict) -> dict:
    """The source numbering; sources without one are numbered P5's way (first appearance, all data)."""
    if original_item_ids:
        missing = [i for i in items if i not in original_item_ids]
        if missing:
            raise ValueError(f"source numbering lacks item {missing[0]!r}")
        return {item: str(original_item_ids[item]) for item in items}
    order = dict.fromkeys(item for history in full_sequences.values() for item in history)
    return {item: str(number) for number, item in enumerate(order, start=1)}


def random_ids(*, items: list, seed: int) -> dict:
    permutation = np.random.default_rng(seed).permutation(len(items))
    return {item: str(int(number) + 1) for item, number in zip(items, permutation)}


def sequential_train_ids(*, items: list, train_histories: dict, seed: int) -> dict:
    order = dict.fromkeys(item for history in train_histories.values() for item in history)
    unseen = hash_order([item for item in items if item not in order], seed=seed)
    return {item: str(number) for number, item in enumerate([*order, *unseen], start=1)}


def index_items(*, scheme: str, items: list, train_histories: dict, full_sequences: dict,
                original_item_ids: dict, seed: int) -> dict:
    """raw item id -> item id string for every item in `items` (the sorted universe)."""
    if scheme == "original":
        ids = original_ids(items=items, original_item_ids=original_item_ids, full_sequences=full_sequences)
    elif scheme == "random":
        ids = random_ids(items=items, seed=seed)
    elif scheme == "sequential_train":
        ids = sequential_train_ids(items=items, train_histories=train_histories, seed=seed)
    elif scheme == "collaborative":
        ids = collaborative_ids(items=items, train_histories=train_histories, seed=seed)
    else:
        raise ValueError(f"unknown indexing {scheme!r}; choose one of {SCHEMES}")
    if len(set(ids.values())) != len(ids) or set(ids) != set(items):
        raise AssertionError(f"indexing {scheme!r} is not a bijection over the items")
    return ids
