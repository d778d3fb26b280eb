"""Baselines on a tiny made-up dataset, scored by the real metric functions."""
import math

import pytest

from p5_jax import baselines, metrics
from p5_jax.data import records, splits

# Training histories of three users; counts: a=3, b=2, c=1, d=1, e=0 (only in all_items).
TRAIN_HISTORIES = [["a", "b", "c"], ["a", "b"], ["a", "d"]]
ALL_ITEMS = ["a", "b", "c", "d", "e"]


def test_count_interactions():
    counts = baselines.count_interactions(TRAIN_HISTORIES)
    assert counts == {"a": 3, "b": 2, "c": 1, "d": 1}
    with pytest.raises(TypeError, match="list of item ids"):
        baselines.count_interactions(["abc"])


def test_popularity_order_puts_counts_first_and_breaks_ties_by_seed_not_input_order():
    counts = baselines.count_interactions(TRAIN_HISTORIES)
    order = baselines.popularity_order(counts, all_items=ALL_ITEMS)
    assert order[:2] == ["a", "b"]
    assert set(order[2:4]) == {"c", "d"}
    assert order[4] == "e"
    reversed_counts = dict(reversed(list(counts.items())))
    assert baselines.popularity_order(reversed_counts, all_items=ALL_ITEMS[::-1]) == order
    # Over many tied items some seed must reorder them.
    tied = {str(i): 1 for i in range(20)}
    orders = {tuple(baselines.popularity_order(tied, seed=s)) for s in range(3)}
    assert len(orders) > 1


def test_most_popular_sequential_excludes_history_by_default():
    counts = baselines.count_interactions(TRAIN_HISTORIES)
    ranked = baselines.most_popular_sequential(
        counts=counts, histories=[["a", "b", "c"], ["d"]], all_items=ALL_ITEMS, top_k=3)
    assert ranked[0] == ["d", "e"]  # only two items left after the history
    assert ranked[1][:2] == ["a", "b"] and ranked[1][2] == "c"
    kept = baselines.most_popular_sequential(
        counts=counts, histories=[["a"]], exclude_history=False, top_k=2)
    assert kept == [["a", "b"]]


def test_sequential_baseline_scores_through_ranking_metrics():
    counts = baselines.count_interactions(TRAIN_HISTORIES)
    # Test targets: user 1 -> "d", ranked d, e once a, b, c are excluded (rank 1);
    # user 2 -> "e", ranked after the tied c and d (rank 3).
    histories = [["a", "b", "c"], ["a", "b"]]
    predictions = baselines.most_popular_sequential(
        counts=counts, histories=histories, all_items=ALL_ITEMS)
    result = metrics.ranking_metrics(["d", "e"], predictions)
    assert result["hr@1"] == pytest.approx(0.5)     # "d" first for user 1, "e" third for user 2
    assert result["hr@5"] == pytest.approx(1.0)
    assert result["ndcg@5"] == pytest.approx((1.0 + 0.5) / 2)  # 1/log2(2), 1/log2(4)


def test_count_transitions_counts_each_item_that_came_right_after_another():
    # a->b twice, b->c once, a->d once; the last item of a history leads nowhere.
    assert baselines.count_transitions(TRAIN_HISTORIES) == {"a": {"b": 2, "d": 1},
                                                            "b": {"c": 1}}
    with pytest.raises(TypeError, match="list of item ids"):
        baselines.count_transitions(["abc"])


def test_last_item_transitions_ranks_followers_of_the_last_item_then_popularity():
    counts = baselines.count_interactions(TRAIN_HISTORIES)   # a=3, b=2, c=1, d=1, e=0
    transitions = {"a": {"b": 2, "d": 1}, "b": {"c": 1}, "c": {"d": 1, "e": 1}}
    ranked = baselines.last_item_transitions(
        transitions=transitions, counts=counts, all_items=ALL_ITEMS,
        histories=[["c", "a"],    # followers of a: b (2) then d (1); then c... skipped, e
                   ["b", "c"],    # d and e followed c once each: popularity puts d first
                   ["d", "b"],    # c followed b, then a (3) by popularity; b, d skipped
                   ["e"],         # nothing ever followed e: popularity alone
                   []])           # no history: popularity alone, nothing skipped
    assert ranked[0] == ["b", "d", "e"]
    assert ranked[1] == ["d", "e", "a"]
    assert ranked[2] == ["c", "a", "e"]
    assert ranked[3][:2] == ["a", "b"] and set(ranked[3][2:]) == {"c", "d"}
    assert ranked[4][:2] == ["a", "b"] and len(ranked[4]) == 5
    top1 = baselines.last_item_transitions(transitions=transitions, counts=counts,
                                           histories=[["c", "a"]], top_k=1)
    assert top1 == [["b"]]
    with pytest.raises(ValueError, match="top_k"):
        baselines.last_item_transitions(transitions={}, counts=counts, histories=[], top_k=0)


def test_most_popular_candidates_ranks_only_the_candidates():
    counts = baselines.count_interactions(TRAIN_HISTORIES)
    ranked = baselines.most_popular_candidates(
        counts=counts, candidates=[["e", "b", "zzz"], ["c", "a"]])
    assert ranked[0][0] == "b" and set(ranked[0]) == {"b", "e", "zzz"}
    assert ranked[1] == ["a", "c"]
    result = metrics.ranking_metrics(["b", "c"], ranked, ks=(1,))
    assert result["hr@1"] == 0.5
    with pytest.raises(ValueError, match="non-empty"):
        baselines.most_popular_candidates(counts=counts, candidates=[[]])


def test_mean_rating_and_majority_label():
    predictions = baselines.mean_rating_predictions(train_ratings=[5, 4, 3, 4], num_examples=2)
    assert predictions == [4.0, 4.0]
    result = metrics.rating_metrics([5.0, 3.0], predictions)
    assert result["rmse"] == pytest.approx(1.0) and result["mae"] == pytest.approx(1.0)
    assert baselines.majority_label_predictions(
        train_labels=[False, False, True], num_examples=3) == [False] * 3
    with pytest.raises(ValueError, match="no training ratings"):
        baselines.training_mean_rating([])


# -- leave-one-out protocol variants, on a hand-made source ----------------------------------------
# (user, item, timestamp) in source order. Equal timestamps keep source order: u1's c before a,
# u2's b before d, and all three of u4's items.
TOY_SOURCE = [("u1", "c", 20), ("u1", "a", 20), ("u1", "b", 10),
              ("u2", "a", 5), ("u2", "e", 7), ("u2", "b", 9), ("u2", "d", 9),
              ("u3", "a", 1), ("u3", "c", 2), ("u3", "b", 3), ("u3", "d", 4),
              ("u4", "f", 3), ("u4", "c", 3), ("u4", "a", 3)]
TOY_ITEMS = ["a", "b", "c", "d", "e", "f"]
# Sequences u1 b c a | u2 a e b d | u3 a c b d | u4 f c a, so leave-one-out gives
#   training items  u1 [b]   u2 [a, e]   u3 [a, c]   u4 [f]
#   validation      c        b           b           c
#   test            a        d           d           a
# Counts, training only:        a 2, b 1, c 1, e 1, f 1, d 0
# Counts, training + validation: b 3, c 3, a 2, e 1, f 1, d 0
# Rank of the test item (u1, u2, u3, u4) per protocol:
#   train counts, exclude train+validation: u1 {a e f d} -> a 1; u2 {c f d} -> d 3;
#       u3 {e f d} -> d 3; u4 {a b e d} -> a 1                                    => 1, 3, 3, 1
#   train counts, exclude train: u1 a 1; u2 {b c f}(1) before d -> 4; u3 {b e f}(1) -> 4;
#       u4 a 1                                                                    => 1, 4, 4, 1
#   train counts, exclude none: a is the top item -> 1; d is the last of six -> 6   => 1, 6, 6, 1
#   train+validation counts, exclude train+validation: u1 {a e f d} -> 1; u2 c(3) f(1) d -> 3;
#       u3 e f d -> 3; u4 b(3) a(2) -> 2                                           => 1, 3, 3, 2
#   train+validation counts, exclude train: u1 c(3) a -> 2; u2 b c(3) f(1) d -> 4;
#       u3 b(3) e f(1) d -> 4; u4 b c(3) a -> 3                                     => 2, 4, 4, 3
#   train+validation counts, exclude none: u1, u4 b c(3) a -> 3; d last -> 6        => 3, 6, 6, 3
# The test item's count never ties another ranked item's, so no tie-break seed changes a rank.
# With one target, HR@k = share of ranks <= k and NDCG@k = mean of 1/log2(rank + 1) over ranks <= k
# (rank 1: 1, rank 2: 1/log2 3, rank 3: 1/2, rank 4: 1/log2 5); ks 1, 3, 5 below.
_L3, _L5 = 1 / math.log2(3), 1 / math.log2(5)
TOY_EXPECTED = {
    ("train", "train+validation"): dict(ranks=(1, 3, 3, 1), hr1=0.5, hr3=1.0,
                                         ndcg3=(1 + .5 + .5 + 1) / 4, hr5=1.0,
                                         ndcg5=(1 + .5 + .5 + 1) / 4),
    ("train", "train"): dict(ranks=(1, 4, 4, 1), hr1=0.5, hr3=0.5, ndcg3=(1 + 1) / 4,
                             hr5=1.0, ndcg5=(1 + _L5 + _L5 + 1) / 4),
    ("train", "none"): dict(ranks=(1, 6, 6, 1), hr1=0.5, hr3=0.5, ndcg3=0.5, hr5=0.5, ndcg5=0.5),
    ("train+validation", "train+validation"): dict(ranks=(1, 3, 3, 2), hr1=0.25, hr3=1.0,
                                                   ndcg3=(1 + .5 + .5 + _L3) / 4, hr5=1.0,
                                                   ndcg5=(1 + .5 + .5 + _L3) / 4),
    ("train+validation", "train"): dict(ranks=(2, 4, 4, 3), hr1=0.0, hr3=0.5, ndcg3=(_L3 + .5) / 4,
                                        hr5=1.0, ndcg5=(_L3 + _L5 + _L5 + .5) / 4),
    ("train+validation", "none"): dict(ranks=(3, 6, 6, 3), hr1=0.0, hr3=0.5, ndcg3=(.5 + .5) / 4,
                                       hr5=0.5, ndcg5=(.5 + .5) / 4),
}


def _toy_split():
    source = [records.Interaction(user=u, item=i, timestamp=t, order=n)
              for n, (u, i, t) in enumerate(TOY_SOURCE)]
    split = splits.leave_one_out_all(splits.user_sequences(source).items_by_user)
    users = sorted(split)
    return ([split[u].train_history for u in users], [split[u].validation_target for u in users],
            [split[u].test_target for u in users])


def test_toy_split_orders_equal_timestamps_by_source_order():
    train, validation, test = _toy_split()
    assert train == [["b"], ["a", "e"], ["a", "c"], ["f"]]
    assert validation == ["c", "b", "b", "c"] and test == ["a", "d", "d", "a"]


def test_leave_one_out_counts_and_exclusions():
    train, validation, _ = _toy_split()
    assert baselines.leave_one_out_counts(train_histories=train, validation_targets=validation) == {
        "a": 2, "b": 1, "c": 1, "e": 1, "f": 1}
    assert baselines.leave_one_out_counts(train_histories=train, validation_targets=validation,
                                          count_from="train+validation") == {
        "a": 2, "b": 3, "c": 3, "e": 1, "f": 1}
    excluded = {e: baselines.leave_one_out_exclusions(train_histories=train,
                                                      validation_targets=validation, exclude=e)
                for e in baselines.EXCLUDE}
    assert excluded["train+validation"][1] == ["a", "e", "b"]
    assert excluded["train"][1] == ["a", "e"] and excluded["none"][1] == []


@pytest.mark.parametrize("count_from,exclude", sorted(TOY_EXPECTED))
def test_most_popular_leave_one_out_variants_by_hand(count_from, exclude):
    train, validation, test = _toy_split()
    expected = TOY_EXPECTED[count_from, exclude]
    for seed in range(4):  # the hand-worked ranks hold under any tie-break seed
        predictions = baselines.most_popular_leave_one_out(
            train_histories=train, validation_targets=validation, all_items=TOY_ITEMS,
            count_from=count_from, exclude=exclude, seed=seed)
        assert tuple(p.index(t) + 1 for p, t in zip(predictions, test)) == expected["ranks"]
        result = metrics.ranking_metrics(test, predictions, ks=(1, 3, 5))
        for k in (1, 3, 5):
            assert result[f"hr@{k}"] == pytest.approx(expected[f"hr{k}"])
        for k in (3, 5):
            assert result[f"ndcg@{k}"] == pytest.approx(expected[f"ndcg{k}"])


def test_standard_protocol_is_the_default_and_a_shown_window_is_not_enough():
    train, validation, test = _toy_split()
    default = baselines.most_popular_leave_one_out(train_histories=train,
                                                   validation_targets=validation,
                                                   all_items=TOY_ITEMS)
    assert default == baselines.most_popular_leave_one_out(
        train_histories=train, validation_targets=validation, all_items=TOY_ITEMS,
        count_from="train", exclude="train+validation")
    # Skipping only the last shown item (b) of u2's history a e b leaves a, which u2 already has,
    # at the top: a prompt's history window must not stand in for the whole history.
    counts = baselines.leave_one_out_counts(train_histories=train, validation_targets=validation)
    window = baselines.most_popular_sequential(counts=counts, histories=[["b"]],
                                               all_items=TOY_ITEMS)
    assert window[0][0] == "a" and "a" not in default[1]


def test_leave_one_out_rejects_bad_choices_and_mismatched_inputs():
    with pytest.raises(ValueError, match="count_from must be one of"):
        baselines.leave_one_out_counts(train_histories=[["a"]], validation_targets=["b"],
                                       count_from="all")
    with pytest.raises(ValueError, match="exclude must be one of"):
        baselines.most_popular_leave_one_out(train_histories=[["a"]], validation_targets=["b"],
                                             exclude="history")
    with pytest.raises(ValueError, match="2 training histories but 1 validation targets"):
        baselines.leave_one_out_exclusions(train_histories=[["a"], ["b"]], validation_targets=["c"])
    with pytest.raises(TypeError, match="one item id"):
        baselines.leave_one_out_counts(train_histories=[["a"]], validation_targets=[["b"]])
