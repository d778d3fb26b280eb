"""Per-user (cluster) bootstrap confidence intervals for the evaluation metrics.

Test examples of one user are not independent (one model, one history), so the bootstrap draws
users, not examples: each resample draws as many users as there are, with replacement, and
recomputes the metric on all examples of the drawn users (a user drawn twice counts twice). The
metric is recomputed from the pooled sums, so RMSE = sqrt(mean(err^2)) of the resample, never an
average of per-user RMSEs. Intervals are percentile intervals of the resampled statistics.

Vectorised: per-user sums and counts are formed once; a resample is a vector of draw counts per
user (a bincount of the drawn user indices), and its sums are that vector times the per-user sums.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from p5_jax import metrics

# name -> (transform applied to each example's value, finish applied to the pooled mean)
STATISTICS: dict[str, tuple[Callable, Callable]] = {
    "mean": (lambda x: x, lambda m: m),
    "mae": (np.abs, lambda m: m),
    "rmse": (np.square, np.sqrt),
}
_CHUNK_CELLS = 2_000_000  # resamples x users per block of draws (16 MB of int64)


def per_example_ranking(targets, predictions, ks: Sequence[int] = metrics.RANKING_KS
                        ) -> dict[str, np.ndarray]:
    """{"hr@k" / "ndcg@k": float array (n,)}, each with mean = `metrics.ranking_metrics`' value."""
    values, _ = metrics.ranking_per_example(targets, predictions, ks=ks)
    return {name: np.asarray(column, dtype=np.float64) for name, column in values.items()}


def per_example_rating_errors(targets, predictions) -> np.ndarray:
    """Float array (n,): clip(prediction, 1, 5) - target, NaN where the prediction did not parse."""
    errors = metrics.rating_errors(targets, predictions)
    return np.array([np.nan if e is None else e for e in errors], dtype=np.float64)


def per_example_accuracy(targets, predictions) -> np.ndarray:
    """Float array (n,) of 1.0 (correct) / 0.0 (wrong or unparseable); its mean is the accuracy."""
    return np.asarray(metrics.accuracy_per_example(targets, predictions), dtype=np.float64)


def _group_index(groups, num_examples: int) -> tuple[np.ndarray, int]:
    """Index of each example's group in 0..G-1 (groups in sorted order); None: one per example."""
    if groups is None:
        return np.arange(num_examples), num_examples
    groups = np.asarray(groups)
    if groups.shape != (num_examples,):
        raise ValueError(f"{num_examples} examples but groups of shape {groups.shape}")
    unique, inverse = np.unique(groups, return_inverse=True)
    return inverse.reshape(-1), len(unique)


def _statistic(statistic) -> tuple[Callable, Callable]:
    if isinstance(statistic, str):
        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {statistic!r}; use one of {sorted(STATISTICS)}")
        return STATISTICS[statistic]
    transform, finish = statistic
    return transform, finish


def _group_sums(values: np.ndarray, index: np.ndarray, num_groups: int, transform):
    """Per-group sum of transform(value) and count, NaN values left out of both."""
    valid = ~np.isnan(values)
    sums = np.bincount(index[valid], weights=transform(values[valid]), minlength=num_groups)
    counts = np.bincount(index[valid], minlength=num_groups).astype(np.float64)
    return sums, counts


def _draw_counts(rng: np.random.Generator, num_groups: int, num_resamples: int):
    """Yield blocks (b, G) of how often each group is drawn, G draws per resample.

    Block r of the draws is rng.integers(0, G, size=(b, G)); blocks continue one stream, so the
    draws equal one rng.integers(0, G, size=(num_resamples, G)) call whatever the block size."""
    block = max(1, _CHUNK_CELLS // num_groups)
    for start in range(0, num_resamples, block):
        size = min(block, num_resamples - start)
        drawn = rng.integers(0, num_groups, size=(size, num_groups), dtype=np.int64)
        flat = (drawn + num_groups * np.arange(size)[:, None]).ravel()
        yield np.bincount(flat, minlength=size * num_groups).reshape(size, num_groups)


def bootstrap_distributions(columns: Mapping[str, tuple], groups=None, *,
                            num_resamples: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Resampled statistics for several metrics from the same group draws.

    columns: name -> (statistic, per-example values (n,)); statistic is a STATISTICS name or a
    (transform, finish) pair: value = finish(sum transform(x) / count) over non-NaN x.
    Returns name -> float array (num_resamples,), NaN for a resample with no non-NaN value.
    """
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be positive, got {num_resamples}")
    columns = {name: (_statistic(stat), np.asarray(data, dtype=np.float64))
               for name, (stat, data) in columns.items()}
    sizes = {data.shape for _, data in columns.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1 or not next(iter(sizes))[0]:
        raise ValueError(f"per-example values must be non-empty 1-D arrays of one length: {sizes}")
    index, num_groups = _group_index(groups, next(iter(sizes))[0])
    totals = [_group_sums(data, index, num_groups, transform)
              for (transform, _), data in columns.values()]
    sums = np.stack([s for s, _ in totals], axis=1)
    counts = np.stack([c for _, c in totals], axis=1)
    blocks = []
    for drawn in _draw_counts(np.random.default_rng(seed), num_groups, num_resamples):
        drawn = drawn.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            blocks.append((drawn @ sums) / (drawn @ counts))
    means = np.concatenate(blocks, axis=0)
    return {name: finish(means[:, j]) for j, (name, ((_, finish), _)) in
            enumerate(columns.items())}


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if np.isnan(samples).all():
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - confidence)
    low, high = np.nanpercentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_interval(statistic, data, groups=None, *, num_resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """(low, high) percentile interval of `statistic` over group-bootstrap resamples.

    statistic: "mean", "mae" or "rmse" (or a (transform, finish) pair, see
    `bootstrap_distributions`), applied to the non-NaN values of `data` (n,).
    groups: (n,) group id per example (the user); None resamples single examples.
    Percentiles ignore resamples whose statistic is NaN; (nan, nan) if all are.
    """
    samples = bootstrap_distributions({"value": (statistic, data)}, groups,
                                      num_resamples=num_resamples, seed=seed)["value"]
    return _percentiles(samples, confidence)


def metric_intervals(kind: str, targets, predictions, groups, *,
                     ks: Sequence[int] = metrics.RANKING_KS, num_resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, list[float]]:
    """{metric name: [low, high]} for one task's postprocessed targets and predictions.

    kind "ranking": hr@k, ndcg@k for k in ks; "rating": rmse, mae (over parseable predictions);
    "accuracy": accuracy. All metrics of one call share the same group draws.
    """
    if kind == "ranking":
        columns = {name: ("mean", values) for name, values
                   in per_example_ranking(targets, predictions, ks=ks).items()}
    elif kind == "rating":
        errors = per_example_rating_errors(targets, predictions)
        columns = {"rmse": ("rmse", errors), "mae": ("mae", errors)}
    elif kind == "accuracy":
        columns = {"accuracy": ("mean", per_example_accuracy(targets, predictions))}
    else:
        raise ValueError(f"kind must be ranking, rating or accuracy, got {kind!r}")
    samples = bootstrap_distributions(columns, groups, num_resamples=num_resamples, seed=seed)
    return {name: list(_percentiles(values, confidence)) for name, values in samples.items()}
