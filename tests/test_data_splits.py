"""Sequences (repeats kept or dropped), leave-one-out, the review splits, and the fixed negatives."""
import numpy as np
import pytest

from p5_jax.data.errors import DataError
from p5_jax.data.negatives import sample_negatives
from p5_jax.data.records import Interaction
from p5_jax.data.splits import (
    aligned_review_split,
    default_dedupe,
    held_out_pairs_in_training,
    leave_one_out,
    leave_one_out_all,
    review_split,
    split_reviews,
    user_sequences,
)


def _events(user, items_and_times):
    return [Interaction(user=user, item=item, timestamp=t, order=k) for k, (item, t) in enumerate(items_and_times)]


def test_sequences_sort_by_time_then_source_order_and_drop_repeats():
    events = _events("u", [("c", 30), ("a", 10), ("b", 30), ("a", 40), ("d", 5)])
    sequences = user_sequences(events)
    assert sequences.items_by_user == {"u": ["d", "a", "c", "b"]}
    assert (sequences.repeats, sequences.duplicates_dropped) == (1, 1)


def test_sequences_keep_repeats_without_dedupe():
    events = _events("u", [("c", 30), ("a", 10), ("b", 30), ("a", 40), ("d", 5)])
    sequences = user_sequences(events, dedupe=False)
    assert sequences.items_by_user == {"u": ["d", "a", "c", "b", "a"]}
    assert (sequences.repeats, sequences.duplicates_dropped) == (1, 0)
    split = leave_one_out(sequences.items_by_user["u"])
    assert (split.train_history, split.validation_target, split.test_target) == (["d", "a", "c"], "b", "a")


def test_repeats_are_kept_by_default_only_for_p5_sequences():
    assert [default_dedupe(f) for f in ("p5_sequential", "amazon", "recbole")] == [False, True, True]


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


# u1: a b c d (validation c, test d); u2 too short (no held-out items); u3: p q p with a repeat
# (validation q, test p: test wins for p, whose earlier interaction is in u3's history).
HELD_OUT = leave_one_out_all({"u1": ["a", "b", "c", "d"], "u2": ["x", "y"], "u3": ["p", "q", "p"]})
PAIRS = [("u1", "a"), ("u1", "c"), ("u2", "x"), ("u1", "d"), ("u3", "p"), ("u3", "q"), ("u1", "d"), ("u2", "y"),
         ("u1", "b")]


def test_aligned_review_split_holds_out_the_reviews_of_held_out_items():
    labels = aligned_review_split(pairs=PAIRS, held_out=HELD_OUT, seed=0)
    assert labels.tolist() == [0, 1, 0, 2, 2, 1, 2, 0, 0]  # 4 other reviews: 4 // 10 = 0 held out at random
    assert held_out_pairs_in_training(pairs=PAIRS, labels=labels, held_out=HELD_OUT) == 0
    assert split_reviews(scheme="aligned", pairs=PAIRS, held_out=HELD_OUT, seed=0).tolist() == labels.tolist()


def test_aligned_review_split_splits_the_other_reviews_8_1_1_as_p5():
    others = [("u2", f"z{k}") for k in range(20)]
    labels = aligned_review_split(pairs=PAIRS + others, held_out=HELD_OUT, seed=4)
    rest = [0, 2, 7, 8] + list(range(len(PAIRS), len(PAIRS) + 20))
    assert labels[rest].tolist() == review_split(num_reviews=24, seed=4).tolist()
    assert np.bincount(labels[rest]).tolist() == [20, 2, 2]
    assert labels[[1, 3, 4, 5, 6]].tolist() == [1, 2, 2, 1, 2]


def test_p5_review_split_ignores_held_out_items_and_leaks_them():
    labels = split_reviews(scheme="p5", pairs=PAIRS, held_out=HELD_OUT, seed=0)
    assert labels.tolist() == review_split(num_reviews=len(PAIRS), seed=0).tolist() == [0] * 9  # 9 // 10 = 0
    assert held_out_pairs_in_training(pairs=PAIRS, labels=labels, held_out=HELD_OUT) == 4
    with pytest.raises(ValueError, match="unknown review split 'P5'"):
        split_reviews(scheme="P5", pairs=PAIRS, held_out=HELD_OUT, seed=0)


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
