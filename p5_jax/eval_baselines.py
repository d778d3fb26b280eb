"""Simple baselines scored on exactly the examples the model was scored on, by the same metrics.

Per family, the first evaluated task of the right kind supplies the examples (the test records
are the same for every prompt of a family; only the wording differs):
- sequential: most popular items over all items (training interactions, the user's history
  skipped), from a free item prompt (20-beam decoding);
- direct: the shown candidates ranked by training popularity, from a candidate prompt;
- rating: the training mean rating on a star-rating prompt, and the majority like/dislike of the
  training ratings (rating >= 4 is like) on a like prompt.
Histories and candidates are read back from each example's rendered input.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from p5_jax import baselines, metrics
from p5_jax.evaluation import BEAM, CANDIDATES, GREEDY, TaskOutput, shown_items

MOST_POPULAR = "most popular (train)"
MEAN_RATING = "training mean rating"
MAJORITY_LIKE = "majority like/dislike (train)"


def _first(outputs: Sequence[TaskOutput], *, family: str, decoding: str,
           output: str | None = None) -> TaskOutput | None:
    for task_output in outputs:
        plan = task_output.plan
        if (plan.family == family and plan.decoding == decoding and task_output.rows
                and (output is None or plan.prompt.output == output)):
            return task_output
    return None


def _sequential(task_output: TaskOutput, *, counts, all_items) -> dict:
    prompt = task_output.plan.prompt
    histories = [shown_items(prompt, row["inputs"], "history") for row in task_output.rows]
    predictions = baselines.most_popular_sequential(counts=counts, histories=histories,
                                                    all_items=all_items)
    return metrics.ranking_metrics([row["target"] for row in task_output.rows], predictions)


def _direct(task_output: TaskOutput, *, counts) -> dict:
    prompt = task_output.plan.prompt
    candidates = [shown_items(prompt, row["inputs"], "candidates") for row in task_output.rows]
    predictions = baselines.most_popular_candidates(counts=counts, candidates=candidates)
    return metrics.ranking_metrics([row["target"] for row in task_output.rows], predictions)


def _mean_rating(task_output: TaskOutput, *, ratings) -> dict:
    rows = task_output.rows
    predictions = baselines.mean_rating_predictions(train_ratings=ratings, num_examples=len(rows))
    return metrics.rating_metrics([row["target"] for row in rows], predictions)


def _majority_like(task_output: TaskOutput, *, ratings) -> dict:
    rows = task_output.rows
    predictions = baselines.majority_label_predictions(
        train_labels=[r >= 4 for r in ratings], num_examples=len(rows))
    return metrics.accuracy([row["target"] for row in rows], predictions)


def family_baselines(*, outputs: Sequence[TaskOutput], train_histories: Callable[[], list],
                     train_ratings: Callable[[], list], all_items: Callable[[], list]) -> dict:
    """{family: {baseline name: metrics}} for the families present in `outputs`.

    The callables load one dataset's training histories (lists of item ids), training ratings
    and item ids; each is called only when a baseline needs it.
    """
    result: dict[str, dict[str, dict]] = {}
    sequential = _first(outputs, family="sequential", decoding=BEAM)
    direct = _first(outputs, family="direct", decoding=CANDIDATES)
    if sequential or direct:
        counts = baselines.count_interactions(train_histories())
        if sequential:
            result.setdefault("sequential", {})[MOST_POPULAR] = _sequential(
                sequential, counts=counts, all_items=all_items())
        if direct:
            result.setdefault("direct", {})[MOST_POPULAR] = _direct(direct, counts=counts)
    rating = _first(outputs, family="rating", decoding=GREEDY, output="rating")
    like = _first(outputs, family="rating", decoding=GREEDY, output="like")
    if rating or like:
        ratings = train_ratings()
        if rating:
            result.setdefault("rating", {})[MEAN_RATING] = _mean_rating(rating, ratings=ratings)
        if like:
            result.setdefault("rating", {})[MAJORITY_LIKE] = _majority_like(like, ratings=ratings)
    return result


def prepared_training_data(*, root, dataset: str) -> dict[str, Callable[[], list]]:
    """Loaders of a prepared dataset's training histories, ratings and item ids."""
    from p5_jax.data import tfds_builders
    from p5_tasks import catalog

    def histories():
        records = tfds_builders.load(root=root, dataset=dataset, kind="sequences", split="train")
        return [[i.decode() for i in r["history"]] for r in records.as_numpy_iterator()]

    def ratings():
        records = tfds_builders.load(root=root, dataset=dataset, kind="reviews", split="train")
        return [float(r["rating"]) for r in records.as_numpy_iterator()]

    return {"train_histories": histories, "train_ratings": ratings,
            "all_items": lambda: [str(i) for i in catalog.item_ids(dataset)]}
