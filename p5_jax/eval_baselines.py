"""Simple baselines scored on exactly the examples the model was scored on, by the same metrics.

Per family, the first evaluated task of the right kind supplies the examples (the test records
are the same for every prompt of a family; only the wording differs):
- sequential: most popular items over all items (training interactions; the user's whole history
  before the evaluated item skipped: at test, the training items and the validation item, the
  protocol of RecBole's leave-one-out full ranking), from a free next-item prompt; a
  first-order Markov chain (the items that followed the user's last item in the training
  sequences, most often first, then the rest by popularity; the same items skipped); the
  shown candidates ranked by training popularity, from a candidate prompt (2-7..2-10 rank 100
  candidates, an easier task than ranking every item); and SASRec
  (train) when a cached model exists (`python -m p5_jax.baselines --dataset NAME` trains it; it is
  never trained here), ranking every item after the same whole history, the same items skipped;
- direct: the user's candidates ranked by training popularity, from a prompt that carries them;
  its ranking metrics are withheld where the model's are (too few candidates shown);
- rating: the training mean rating on a star-rating prompt, and the majority like/dislike of the
  training ratings (rating >= 4 is like) on a like prompt.
Candidates are the ids each example carries (never parsed back from text); every metric gets
the same per-user bootstrap interval as the model's rows.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

from p5_jax import baselines, intervals, metrics, report
from p5_jax.evaluation import TaskOutput

MOST_POPULAR = "most popular (train)"
LAST_ITEM_TRANSITIONS = "last-item transitions (train)"
MOST_POPULAR_CANDIDATES = "most popular among the candidates (train)"
MEAN_RATING = "training mean rating"
MAJORITY_LIKE = "majority like/dislike (train)"
SASREC = "SASRec (train)"
PROTOCOL_NOTE = (
    "most popular (train) ranks every item by its number of training interactions, leaving out "
    "the user's whole history before the evaluated item (at test: the training items and the "
    "validation item); equal counts in a seeded hashed order; as RecBole's leave-one-out full "
    "ranking (see docs/EVALUATION_PROTOCOL.md). last-item transitions (train), a first-order "
    "Markov chain, ranks first the items that came right after the user's last item in the "
    "training sequences (most often first), then the others by popularity, leaving out the "
    "same items. SASRec (train), a self-attentive sequential "
    "model trained on the training sequences (full softmax; its dropout rate and epoch chosen "
    "on validation NDCG@10), ranks every item after the last 50 items of the same whole "
    "history, leaving out the same items; its row appears only for a dataset with a cached "
    "model, made by `python -m p5_jax.baselines --dataset NAME`")


def _first(outputs: Sequence[TaskOutput], *, family: str, output: str,
           slots: tuple[str, ...] = (), without: str | None = None) -> TaskOutput | None:
    """The first output of a `family` prompt with that output kind, showing `slots` and not
    `without`, that has rows."""
    for task_output in outputs:
        prompt = task_output.plan.prompt
        if (prompt.family == family and prompt.output == output and task_output.rows
                and all(s in prompt.slots for s in slots) and without not in prompt.slots):
            return task_output
    return None


def _scored(kind: str, metric_fn, rows, predictions, *, seed: int) -> dict:
    targets = [row["target"] for row in rows]
    values = dict(metric_fn(targets, predictions))
    values[report.INTERVALS] = intervals.metric_intervals(
        kind, targets, predictions, [row["user_id"] for row in rows], seed=seed)
    return values


def _after_history(task_output: TaskOutput, rank: Callable[[list], list], *, full_histories,
                   seed) -> dict:
    """A ranking of every item by `rank` (whole histories -> ranked lists), one per row."""
    rows = task_output.rows
    predictions = rank([full_histories[row["user_id"]] for row in rows])
    return _scored("ranking", metrics.ranking_metrics, rows, predictions, seed=seed)


def _sequential_rankers(*, counts, train_histories, all_items) -> dict[str, Callable]:
    """{baseline name: whole histories -> ranked lists} of the count-based sequential rows."""
    def popular(histories):
        return baselines.most_popular_sequential(counts=counts, histories=histories,
                                                 all_items=all_items)

    def transitions(histories):
        return baselines.last_item_transitions(
            transitions=baselines.count_transitions(train_histories), counts=counts,
            histories=histories, all_items=all_items)

    return {MOST_POPULAR: popular, LAST_ITEM_TRANSITIONS: transitions}


def _withheld_as_model(task_output: TaskOutput, values: dict) -> dict:
    """`values` with the ranking metrics withheld (NaN, no intervals) where the model's are: the
    input length left too few candidates shown to rank (see `evaluation.candidate_check`)."""
    model = task_output.result.metrics
    if not any(k.startswith("hr@") and math.isnan(v) for k, v in model.items()):
        return values
    return {k: (math.nan if k.startswith(("hr@", "ndcg@")) else v) for k, v in values.items()
            if k != report.INTERVALS}


def _direct(task_output: TaskOutput, *, counts, seed) -> dict:
    """Shown candidates ranked by popularity, withheld with the model's ranking metrics."""
    rows = task_output.rows
    predictions = baselines.most_popular_candidates(
        counts=counts, candidates=[row["candidates"] for row in rows])
    return _withheld_as_model(task_output, _scored("ranking", metrics.ranking_metrics, rows,
                                                   predictions, seed=seed))


def _mean_rating(task_output: TaskOutput, *, ratings, seed) -> dict:
    rows = task_output.rows
    predictions = baselines.mean_rating_predictions(train_ratings=ratings, num_examples=len(rows))
    return _scored("rating", metrics.rating_metrics, rows, predictions, seed=seed)


def _majority_like(task_output: TaskOutput, *, ratings, seed) -> dict:
    rows = task_output.rows
    predictions = baselines.majority_label_predictions(
        train_labels=[r >= 4 for r in ratings], num_examples=len(rows))
    return _scored("accuracy", metrics.accuracy, rows, predictions, seed=seed)


def family_baselines(*, outputs: Sequence[TaskOutput], train_histories: Callable[[], list],
                     train_ratings: Callable[[], list], all_items: Callable[[], list],
                     split_histories: Callable[[], dict],
                     sasrec: Callable[[], object | None] = lambda: None, seed: int = 0) -> dict:
    """{family: {baseline name: metrics (with their intervals)}} for the families present.

    The callables load one dataset's training histories (lists of item ids), training ratings,
    item ids, {user id: every item before the evaluated one} of the evaluated split, and the
    cached SASRec ranker (None when there is none: its row is then left out); each is called
    only when a baseline needs it.
    """
    result: dict[str, dict[str, dict]] = {}
    sequential = _first(outputs, family="sequential", output="item", slots=("history",),
                        without="candidates")
    direct = _first(outputs, family="direct", output="item", slots=("candidates",))
    from_candidates = _first(outputs, family="sequential", output="item", slots=("candidates",))
    if sequential or direct or from_candidates:
        histories = train_histories()
        counts = baselines.count_interactions(histories)
        if sequential:
            full_histories = split_histories()
            rankers = _sequential_rankers(counts=counts, train_histories=histories,
                                          all_items=all_items())
            ranker: Any = sasrec()
            if ranker is not None:
                rankers[SASREC] = functools.partial(ranker.rank, top_k=baselines.DEFAULT_TOP_K)
            result["sequential"] = {
                name: _after_history(sequential, rank, full_histories=full_histories, seed=seed)
                for name, rank in rankers.items()}
        if from_candidates:   # the baseline that 2-7..2-10 (ranking 100 candidates) compare with
            result.setdefault("sequential", {})[MOST_POPULAR_CANDIDATES] = _direct(
                from_candidates, counts=counts, seed=seed)
        if direct:
            result.setdefault("direct", {})[MOST_POPULAR] = _direct(direct, counts=counts,
                                                                    seed=seed)
    rating = _first(outputs, family="rating", output="rating")
    like = _first(outputs, family="rating", output="like")
    if rating or like:
        ratings = train_ratings()
        if rating:
            result.setdefault("rating", {})[MEAN_RATING] = _mean_rating(rating, ratings=ratings,
                                                                        seed=seed)
        if like:
            result.setdefault("rating", {})[MAJORITY_LIKE] = _majority_like(
                like, ratings=ratings, seed=seed)
    return result


def cached_sasrec(*, root, dataset: str):
    """The cached SASRec ranker of a prepared dataset, or None (absent or stale: logged)."""
    from absl import logging

    from p5_jax import sasrec_cache

    cached, reason = sasrec_cache.cache_status(root, dataset)
    if cached is None:
        logging.warning("No SASRec row for %s: %s; train it with python -m p5_jax.baselines "
                     "--dataset %s", dataset, reason, dataset)
        return None
    return cached.ranker


def prepared_training_data(*, root, dataset: str, split: str = "test") -> dict[str, Callable]:
    """Loaders of a prepared dataset's training histories, ratings, item ids, the full
    histories of the evaluated `split` (test: training items plus the validation item) and
    its cached SASRec."""
    from p5_jax.data import tfds_builders
    from p5_tasks import catalog

    def histories(name):
        return catalog.full_histories_under(root, dataset, name)

    def ratings():
        records = tfds_builders.load(root=root, dataset=dataset, kind="reviews", split="train")
        return [float(r["rating"]) for r in records.as_numpy_iterator()]

    return {"train_histories": lambda: [list(h) for h in histories("train").values()],
            "train_ratings": ratings,
            "split_histories": lambda: {u: list(h) for u, h in histories(split).items()},
            "all_items": lambda: [str(i) for i in catalog.item_ids(dataset)],
            "sasrec": lambda: cached_sasrec(root=root, dataset=dataset)}
