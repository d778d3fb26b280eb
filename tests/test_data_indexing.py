"""Item indexing: bijective, seeded, and blind to validation and test items."""
import numpy as np
import pytest

from p5_jax.data.collaborative import collaborative_ids
from p5_jax.data.indexing import SCHEMES, index_items
from p5_jax.data.splits import leave_one_out_all


def _random_sequences(seed, num_users=60, num_items=150):
    rng = np.random.default_rng(seed)
    return {f"u{u}": [f"i{k:03d}" for k in rng.choice(num_items, size=int(rng.integers(3, 12)), replace=False)]
            for u in range(num_users)}


def _ids(scheme, sequences, seed=0, items=None):
    splits = leave_one_out_all(sequences)
    items = items or sorted({i for s in sequences.values() for i in s})
    return index_items(scheme=scheme, items=items, seed=seed, original_item_ids={}, full_sequences=sequences,
                       train_histories={u: s.train_history for u, s in splits.items()})


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_is_a_seeded_bijection(scheme):
    sequences = _random_sequences(0)
    ids = _ids(scheme, sequences)
    assert len(set(ids.values())) == len(ids) == len({i for s in sequences.values() for i in s})
    assert ids == _ids(scheme, sequences)
    assert all(" " not in item_id for item_id in ids.values())


def test_random_depends_on_seed_and_original_numbers_by_first_appearance():
    sequences = {"a": ["x", "y", "z"], "b": ["w", "y", "x"]}
    assert _ids("random", _random_sequences(0), seed=1) != _ids("random", _random_sequences(0), seed=2)
    assert _ids("original", sequences) == {"x": "1", "y": "2", "z": "3", "w": "4"}


def test_sequential_train_numbers_training_items_first():
    sequences = {"UA": ["X1", "X2", "X3", "X4"], "UB": ["X3", "X5", "X2"], "UC": ["X6", "X1", "X2", "X3", "X5"]}
    ids = _ids("sequential_train", sequences)
    assert {k: ids[k] for k in ("X1", "X2", "X3", "X6")} == {"X1": "1", "X2": "2", "X3": "3", "X6": "4"}
    assert {ids["X4"], ids["X5"]} == {"5", "6"}


def _replace_test_items(sequences):
    """Each user's last item swapped: a brand-new item for odd users, another known item for even."""
    known = sorted({i for s in sequences.values() for i in s})
    return {user: s[:-1] + [f"new{k}" if k % 2 else next(i for i in known if i not in s)]
            for k, (user, s) in enumerate(sequences.items())}


@pytest.mark.parametrize("scheme", ["sequential_train", "collaborative"])
def test_changing_only_test_items_keeps_training_item_ids(scheme):
    sequences = _random_sequences(1)
    changed = _replace_test_items(sequences)
    before, after = _ids(scheme, sequences), _ids(scheme, changed)
    training_items = {i for s in leave_one_out_all(sequences).values() for i in s.train_history}
    assert training_items and {i: before[i] for i in training_items} == {i: after[i] for i in training_items}
    assert set(before) != set(after)  # the test items did change


def test_collaborative_separates_disjoint_communities():
    rng = np.random.default_rng(0)
    group_a, group_b = [f"a{k:02d}" for k in range(40)], [f"b{k:02d}" for k in range(40)]
    histories = {f"u{u}": list(rng.choice(group_a if u % 2 else group_b, size=8, replace=False))
                 for u in range(200)}
    ids = collaborative_ids(items=group_a + group_b + ["cold"], train_histories=histories, seed=0,
                            clusters_per_level=2, max_leaf_size=50)
    top_a = {ids[i].split("-")[0] for i in group_a}
    top_b = {ids[i].split("-")[0] for i in group_b}
    assert len(top_a) == len(top_b) == 1 and top_a != top_b
    assert ids["cold"] == "2-0"  # items absent from training: a branch after the training clusters
    assert all(len(ids[i].split("-")) == 2 for i in group_a + group_b)


def test_collaborative_leaf_ids_are_never_prefixes_of_deeper_ids():
    histories = {f"u{u}": [f"i{(u * 7 + k) % 90}" for k in range(6)] for u in range(120)}
    ids = collaborative_ids(items=sorted({i for h in histories.values() for i in h}), train_histories=histories,
                            seed=3, clusters_per_level=3, max_leaf_size=10)
    paths = set(ids.values())
    for item_id in paths:
        parts = item_id.split("-")
        for cut in range(1, len(parts)):
            assert "-".join(parts[:cut]) not in paths


def test_collaborative_rejects_bad_settings():
    with pytest.raises(ValueError):
        collaborative_ids(items=["a"], train_histories={}, seed=0, clusters_per_level=1)
