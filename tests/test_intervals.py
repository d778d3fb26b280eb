"""Per-user bootstrap intervals against cases reasoned out by hand and a slow explicit loop."""
import math

import numpy as np
import pytest

from p5_jax import intervals, metrics

_ITEMS = [f"x{i}" for i in range(1, 11)]
# Relevant item at rank 1, 3, 7, absent, and an empty prediction (see test_metrics).
_RANK_TARGETS = ["a", "b", "c", "d", "e"]
_RANK_PREDICTIONS = [["a"] + _ITEMS[:9], ["x1", "x2", "b"] + _ITEMS[2:9],
                     _ITEMS[:6] + ["c"] + _ITEMS[6:9], _ITEMS, []]


def test_per_example_ranking_means_equal_ranking_metrics():
    per_example = intervals.per_example_ranking(_RANK_TARGETS, _RANK_PREDICTIONS)
    aggregate = metrics.ranking_metrics(_RANK_TARGETS, _RANK_PREDICTIONS)
    assert set(per_example) == {"hr@1", "hr@5", "hr@10", "ndcg@1", "ndcg@5", "ndcg@10"}
    for name, values in per_example.items():
        assert values.shape == (5,)
        assert values.mean() == pytest.approx(aggregate[name], rel=1e-12)
    np.testing.assert_allclose(per_example["ndcg@10"], [1, 0.5, 1 / 3, 0, 0])


def test_per_example_rating_errors_and_accuracy():
    errors = intervals.per_example_rating_errors([5.0, 3.0, 1.0, 2.0], [4.0, 7.0, 0.0, None])
    np.testing.assert_array_equal(errors[:3], [-1.0, 2.0, 0.0])  # clipped to [1, 5]
    assert math.isnan(errors[3])
    correct = intervals.per_example_accuracy([True, False, True], [True, True, None])
    np.testing.assert_array_equal(correct, [1.0, 0.0, 0.0])


def test_interval_collapses_when_every_group_has_the_same_value():
    groups = np.repeat(["u1", "u2", "u3", "u4"], [1, 2, 3, 4])
    low, high = intervals.bootstrap_interval("mean", np.full(10, 0.3), groups, num_resamples=200)
    assert low == pytest.approx(0.3) and high == pytest.approx(0.3)
    # |error| = 2 everywhere: RMSE and MAE are 2 in every resample, NaN rows left out.
    errors = np.array([2.0, -2.0, np.nan, 2.0, -2.0, 2.0, 2.0, -2.0, 2.0, 2.0])
    for statistic in ("rmse", "mae"):
        low, high = intervals.bootstrap_interval(statistic, errors, groups, num_resamples=200)
        assert (low, high) == pytest.approx((2.0, 2.0))


def test_two_groups_of_different_sizes():
    # Group A: one example of value 1; group B: three examples of value 0. Point estimate 1/4.
    # A resample draws two groups: AA (p = 1/4) -> mean 1; BB (1/4) -> 0; AB or BA (1/2) ->
    # 1 / (1 + 3) = 1/4. The 2.5% and 97.5% percentiles are therefore 0 and 1: the interval
    # spans [min, max] of the group means and contains the point estimate.
    data, groups = np.array([1.0, 0.0, 0.0, 0.0]), ["A", "B", "B", "B"]
    samples = intervals.bootstrap_distributions({"m": ("mean", data)}, groups, seed=7)["m"]
    assert set(np.unique(samples)) <= {0.0, 0.25, 1.0}
    for value, probability in ((1.0, 0.25), (0.0, 0.25), (0.25, 0.5)):
        assert np.mean(samples == value) == pytest.approx(probability, abs=0.06)
    low, high = intervals.bootstrap_interval("mean", data, groups, seed=7)
    assert (low, high) == (0.0, 1.0)
    assert low <= data.mean() <= high
    again = intervals.bootstrap_distributions({"m": ("mean", data)}, groups, seed=7)["m"]
    np.testing.assert_array_equal(samples, again)
    other = intervals.bootstrap_distributions({"m": ("mean", data)}, groups, seed=8)["m"]
    assert not np.array_equal(samples, other)


def test_grouped_interval_is_wider_when_groups_are_correlated():
    # 50 users x 20 examples; all of a user's examples share one value (0 or 1 alternately).
    # Independent examples: sd of the mean ~ 0.5 / sqrt(1000) = 0.016; users: 0.5 / sqrt(50)
    # = 0.071, so the grouped interval is about 4.5 times wider.
    groups = np.repeat(np.arange(50), 20)
    data = (groups % 2).astype(float)
    grouped = intervals.bootstrap_interval("mean", data, groups)
    ungrouped = intervals.bootstrap_interval("mean", data, None)
    assert (grouped[1] - grouped[0]) > 3 * (ungrouped[1] - ungrouped[0])
    assert grouped[0] < 0.5 < grouped[1] and ungrouped[0] < 0.5 < ungrouped[1]
    # None is the same as one group per example.
    assert intervals.bootstrap_interval("mean", data, np.arange(1000)) == ungrouped


def _slow_rmse(errors, groups, draws):
    labels = np.unique(groups)  # group index g is labels[g], as in the module
    results = []
    for drawn in draws:
        pooled = np.concatenate([errors[groups == labels[g]] for g in drawn])
        pooled = pooled[~np.isnan(pooled)]
        results.append(math.sqrt(np.mean(pooled ** 2)))
    return np.array(results)


@pytest.mark.parametrize("chunk_cells", [2_000_000, 7])
def test_rmse_is_recomputed_per_resample(monkeypatch, chunk_cells):
    # chunk_cells=7 draws one resample per block: the draws must not depend on the block size.
    monkeypatch.setattr(intervals, "_CHUNK_CELLS", chunk_cells)
    errors = np.array([0.5, -1.0, 3.0, np.nan, 0.0, 2.0, -0.5, 1.5, -4.0])
    groups = np.array(["u2", "u2", "u1", "u3", "u3", "u4", "u4", "u4", "u1"])
    num_resamples, seed = 6, 3
    draws = np.random.default_rng(seed).integers(0, 4, size=(num_resamples, 4))
    fast = intervals.bootstrap_distributions({"rmse": ("rmse", errors)}, groups,
                                             num_resamples=num_resamples, seed=seed)["rmse"]
    np.testing.assert_allclose(fast, _slow_rmse(errors, groups, draws), rtol=1e-12)
    # Not the mean of per-user RMSEs: check on the first resample.
    labels = np.unique(groups)
    per_user = [math.sqrt(np.nanmean(errors[groups == labels[g]] ** 2)) for g in draws[0]]
    assert fast[0] != pytest.approx(np.mean(per_user))


def test_metric_intervals_for_each_kind():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 3)
    targets = list(rng.integers(1, 6, size=120).astype(float))
    predictions = [None if i % 17 == 0 else t + rng.normal() for i, t in enumerate(targets)]
    rating = intervals.metric_intervals("rating", targets, predictions, users)
    point = metrics.rating_metrics(targets, predictions)
    assert set(rating) == {"rmse", "mae"}
    for name, (low, high) in rating.items():
        assert low < point[name] < high

    truth = [bool(b) for b in rng.integers(0, 2, size=120)]
    guesses = [None if i % 11 == 0 else (t if rng.random() < 0.7 else not t)
               for i, t in enumerate(truth)]
    accuracy = intervals.metric_intervals("accuracy", truth, guesses, users)
    low, high = accuracy["accuracy"]
    assert low < metrics.accuracy(truth, guesses)["accuracy"] < high

    ranking = intervals.metric_intervals("ranking", _RANK_TARGETS, _RANK_PREDICTIONS,
                                         ["u1", "u1", "u2", "u3", "u3"], ks=(5, 10))
    assert set(ranking) == {"hr@5", "ndcg@5", "hr@10", "ndcg@10"}
    assert all(isinstance(v, list) and len(v) == 2 for v in ranking.values())
    # One call shares the draws, so each entry equals a single-metric interval with that seed.
    hr10 = intervals.per_example_ranking(_RANK_TARGETS, _RANK_PREDICTIONS, ks=(10,))["hr@10"]
    assert ranking["hr@10"] == list(intervals.bootstrap_interval(
        "mean", hr10, ["u1", "u1", "u2", "u3", "u3"]))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="kind"):
        intervals.metric_intervals("text", ["a"], ["a"], ["u"])
    with pytest.raises(ValueError, match="unknown statistic"):
        intervals.bootstrap_interval("median", [1.0], ["u"])
    with pytest.raises(ValueError, match="groups of shape"):
        intervals.bootstrap_interval("mean", [1.0, 2.0], ["u"])
    with pytest.raises(ValueError, match="confidence"):
        intervals.bootstrap_interval("mean", [1.0], ["u"], confidence=95)
    # No parseable rating at all: NaN interval, not a crash.
    assert all(math.isnan(v) for v in intervals.bootstrap_interval("rmse", [np.nan], ["u"]))
