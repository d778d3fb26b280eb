"""Baselines on a tiny made-up dataset, scored by the real metric functions."""
import pytest

from p5_jax import baselines, metrics

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
