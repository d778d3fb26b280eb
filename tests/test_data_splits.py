"""Leave-one-out and 8:1:1 review splits, and the fixed negatives."""
import numpy as np
import pytest

from p5_jax.data.errors import DataError
from p5_jax.data.negatives import sample_negatives
from p5_jax.data.records import Interaction
from p5_jax.data.splits import leave_one_out, leave_one_out_all, review_split, user_sequences


def _events(user, items_and_times):
    return [Interaction(user=user, item=item, timestamp=t, order=k) for k, (item, t) in enumerate(items_and_times)]


def test_sequences_sort_by_time_then_source_order_and_drop_repeats():
    events = _events("u", [("c", 30), ("a", 10), ("b", 30), ("a", 40), ("d", 5)])
    sequences = user_sequences(events)
    assert sequences.items_by_user == {"u": ["d", "a", "c", "b"]}
    assert sequences.duplicates_dropped == 1


def test_leave_one_out_holds_out_the_last_two():
    split = leave_one_out(["a", "b", "c", "d", "e"])
    assert (split.train_history, split.validation_target, split.test_target) == (["a", "b", "c"], "d", "e")
    with pytest.raises(ValueError, match="at least 3"):
        leave_one_out(["a", "b"])
    assert set(leave_one_out_all({"u": ["a", "b", "c"], "v": ["a", "b"]})) == {"u"}


def test_held_out_items_never_in_training_history():
    rng = np.random.default_rng(3)
    events = [Interaction(user=f"u{u}", item=f"i{rng.integers(20)}", timestamp=int(rng.integers(5)), order=k)
              for k, u in enumerate(rng.integers(0, 30, size=600))]
    for split in leave_one_out_all(user_sequences(events).items_by_user).values():
        assert split.validation_target not in split.train_history
        assert split.test_target not in split.train_history
        assert split.validation_target != split.test_target


def test_review_split_is_8_1_1_disjoint_and_seeded():
    labels = review_split(num_reviews=1003, seed=7)
    assert np.bincount(labels).tolist() == [803, 100, 100]
    assert np.array_equal(labels, review_split(num_reviews=1003, seed=7))
    assert not np.array_equal(labels, review_split(num_reviews=1003, seed=8))
    assert review_split(num_reviews=10, seed=0).tolist().count(0) == 8


def test_negatives_are_fixed_distinct_and_never_interacted():
    items = [f"i{k:03d}" for k in range(300)]
    interacted = {"u1": items[:150], "u2": items[100:120]}
    negatives = sample_negatives(items_by_user=interacted, items=items, seed=5, count=99)
    for user, chosen in negatives.items():
        assert len(chosen) == len(set(chosen)) == 99
        assert not set(chosen) & set(interacted[user])
        assert set(chosen) <= set(items)
    # A user's negatives depend on the seed and the user alone, not on other users.
    alone = sample_negatives(items_by_user={"u2": interacted["u2"]}, items=items, seed=5, count=99)
    assert alone["u2"] == negatives["u2"]
    assert sample_negatives(items_by_user=interacted, items=items, seed=6, count=99) != negatives


def test_too_few_items_for_negatives_is_an_error():
    with pytest.raises(DataError, match="only 1 never-interacted"):
        sample_negatives(items_by_user={"u": ["a", "b"]}, items=["a", "b", "c"], seed=0, count=2)
