"""Simple baselines scored by the same metric code as the model.

Each `*_predictions` function returns one prediction per example in the shape the matching
metric function takes: ranked lists of item ids for `metrics.ranking_metrics`, floats for
`metrics.rating_metrics`, booleans for `metrics.accuracy`. Popularity is counted on training
interactions only unless a caller asks otherwise, so by default no baseline sees a validation or
test item.

Leave-one-out protocol of the most-popular next-item baseline (`most_popular_leave_one_out`):
`count_from` says which interactions count toward an item's popularity and `exclude` which of
the user's own items are left out of the ranking. The standard full-ranking protocol, the one
RecBole's leave-one-out evaluation uses, is STANDARD_COUNT_FROM / STANDARD_EXCLUDE: popularity
from training interactions, the user's training items and validation item both left out when
the test item is ranked.

Run as a program, it trains SASRec (`p5_jax.sasrec`) on a prepared dataset's training
sequences, caches it under `<prepared_root>/<name>/baselines/sasrec/` for the evaluation's
reports, and prints validation and test HR@5/NDCG@5/HR@10/NDCG@10 with 95% intervals:

    python -m p5_jax.baselines --dataset ml100k [--epochs 200] [--patience 10] [--dropout 0.2 0.5]
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import itertools
import pathlib
import sys
from collections.abc import Iterable, Mapping, Sequence

from p5_jax import cli_errors

DEFAULT_TOP_K = 20  # as many items as the model's 20 beams give


def check_history(history) -> None:
    """Refuses one string where a list of item ids is meant (it would read as one id per
    character)."""
    if isinstance(history, (str, bytes)):
        raise TypeError("each history must be a list of item ids, not one string")


def count_interactions(histories: Iterable[Sequence[str]]) -> collections.Counter:
    """Number of training interactions per item id, from per-user item lists (train histories)."""
    counts: collections.Counter[str] = collections.Counter()
    for history in histories:
        check_history(history)
        counts.update(history)
    return counts


def _tie_break(item_id: str, seed: int) -> bytes:
    # A seeded hash: ties fall in an order unrelated to item numbering or candidate position
    # (P5-style indexing numbers items by time, and callers often put the target first).
    return hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest()


def popularity_order(counts: Mapping[str, int], *, all_items: Iterable[str] = (),
                     seed: int = 0) -> list[str]:
    """Item ids, most interactions first; ties in a fixed seeded pseudo-random order.

    Items in `all_items` without training interactions come last (count 0).
    """
    universe = set(counts) | set(all_items)
    return sorted(universe, key=lambda i: (-counts.get(i, 0), _tie_break(i, seed)))


def most_popular_sequential(*, counts: Mapping[str, int], histories: Sequence[Sequence[str]],
                            all_items: Iterable[str] = (), exclude_history: bool = True,
                            top_k: int = DEFAULT_TOP_K, seed: int = 0) -> list[list[str]]:
    """Per user, all items ranked by training popularity, cut to the first `top_k`.

    With `exclude_history` (the default) the items in `histories` are skipped; pass False to
    rank exactly as over all items. Only the items passed are skipped: give each user's whole
    history (for a test item, training items plus the validation item), not the window a prompt
    shows (the last 20 items), or items the user already has stay in the ranking.
    `most_popular_leave_one_out` builds counts and histories from a leave-one-out split.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be positive, got {top_k}")
    order = popularity_order(counts, all_items=all_items, seed=seed)
    predictions = []
    for history in histories:
        skip = frozenset(history) if exclude_history else frozenset()
        ranked = []
        for item in order:
            if item not in skip:
                ranked.append(item)
                if len(ranked) == top_k:
                    break
        predictions.append(ranked)
    return predictions


def count_transitions(histories: Iterable[Sequence[str]]) -> dict[str, collections.Counter]:
    """{item: {next item: how often it came right after `item`}} over per-user item lists in
    time order (train histories)."""
    following: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for history in histories:
        check_history(history)
        for item, next_item in zip(history, history[1:]):
            following[item][next_item] += 1
    return dict(following)


def last_item_transitions(*, transitions: Mapping[str, Mapping[str, int]],
                          counts: Mapping[str, int], histories: Sequence[Sequence[str]],
                          all_items: Iterable[str] = (), top_k: int = DEFAULT_TOP_K,
                          seed: int = 0) -> list[list[str]]:
    """Per user, a first-order Markov chain's ranking: the items that followed the user's last
    item in training, most often first, then every other item in popularity order; equal
    transition counts fall in popularity order too. The items in `histories` (each user's
    whole history, last item last) are skipped, as in `most_popular_sequential`."""
    if top_k < 1:
        raise ValueError(f"top_k must be positive, got {top_k}")
    order = popularity_order(counts, all_items=all_items, seed=seed)
    position = {item: rank for rank, item in enumerate(order)}
    predictions = []
    for history in histories:
        followers = transitions.get(history[-1], {}) if history else {}
        first = sorted(followers, key=lambda i: (-followers[i], position.get(i, len(order))))
        taken, ranked = set(history), []
        for item in itertools.chain(first, order):
            if item not in taken:
                taken.add(item)
                ranked.append(item)
                if len(ranked) == top_k:
                    break
        predictions.append(ranked)
    return predictions


# Which interactions count toward popularity, and which of the user's items leave the ranking.
COUNT_FROM = ("train", "train+validation")
EXCLUDE = ("train+validation", "train", "none")
STANDARD_COUNT_FROM = "train"
STANDARD_EXCLUDE = "train+validation"


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_split(train_histories, validation_targets) -> None:
    if len(train_histories) != len(validation_targets):
        raise ValueError(f"{len(train_histories)} training histories but "
                         f"{len(validation_targets)} validation targets")
    for target in validation_targets:
        if not isinstance(target, str):
            raise TypeError("each validation target must be one item id (a str)")


def leave_one_out_counts(*, train_histories: Sequence[Sequence[str]],
                         validation_targets: Sequence[str],
                         count_from: str = STANDARD_COUNT_FROM) -> collections.Counter:
    """Interactions per item: the training items only ("train", the standard) or also each
    user's validation item ("train+validation")."""
    _check_choice("count_from", count_from, COUNT_FROM)
    _check_split(train_histories, validation_targets)
    counts = count_interactions(train_histories)
    if count_from == "train+validation":
        counts.update(validation_targets)
    return counts


def leave_one_out_exclusions(*, train_histories: Sequence[Sequence[str]],
                             validation_targets: Sequence[str],
                             exclude: str = STANDARD_EXCLUDE) -> list[list[str]]:
    """Per user, the items left out when the test item is ranked: training items and the
    validation item ("train+validation", the standard), training items only ("train"), or
    nothing ("none")."""
    _check_choice("exclude", exclude, EXCLUDE)
    _check_split(train_histories, validation_targets)
    if exclude == "none":
        return [[] for _ in train_histories]
    if exclude == "train":
        return [list(history) for history in train_histories]
    return [list(history) + [target]
            for history, target in zip(train_histories, validation_targets)]


def most_popular_leave_one_out(*, train_histories: Sequence[Sequence[str]],
                               validation_targets: Sequence[str], all_items: Iterable[str] = (),
                               count_from: str = STANDARD_COUNT_FROM,
                               exclude: str = STANDARD_EXCLUDE, top_k: int = DEFAULT_TOP_K,
                               seed: int = 0) -> list[list[str]]:
    """Per user, the ranking the test item is scored in, under a leave-one-out split.

    `train_histories` are each user's complete training items (all but the last two, in time
    order) and `validation_targets` the second-to-last items; a prepared test record's history
    is exactly one followed by the other. `count_from` and `exclude` are as in
    `leave_one_out_counts` and `leave_one_out_exclusions`. Equal counts fall in the seeded
    order of `popularity_order`. Where sequences keep repeats (p5_sequential sources) the test
    item can also be a training item; excluding it then takes it out of reach.
    """
    counts = leave_one_out_counts(train_histories=train_histories,
                                  validation_targets=validation_targets, count_from=count_from)
    excluded = leave_one_out_exclusions(train_histories=train_histories,
                                        validation_targets=validation_targets, exclude=exclude)
    return most_popular_sequential(counts=counts, histories=excluded, all_items=all_items,
                                   exclude_history=exclude != "none", top_k=top_k, seed=seed)


def most_popular_candidates(*, counts: Mapping[str, int],
                            candidates: Sequence[Sequence[str]],
                            seed: int = 0) -> list[list[str]]:
    """Per user, their candidate items (e.g. 1 positive + 99 negatives) ranked by popularity."""
    for user_candidates in candidates:
        if isinstance(user_candidates, (str, bytes)) or not user_candidates:
            raise ValueError("each candidate set must be a non-empty list of item ids")
    all_candidates = {i for user_candidates in candidates for i in user_candidates}
    order = popularity_order(counts, all_items=all_candidates, seed=seed)
    position = {item: rank for rank, item in enumerate(order)}
    return [sorted(dict.fromkeys(user_candidates), key=position.__getitem__)
            for user_candidates in candidates]


def training_mean_rating(train_ratings: Iterable[float]) -> float:
    ratings = [float(r) for r in train_ratings]
    if not ratings:
        raise ValueError("no training ratings to average")
    return sum(ratings) / len(ratings)


def mean_rating_predictions(*, train_ratings: Iterable[float], num_examples: int) -> list[float]:
    """The training mean rating, predicted for every one of `num_examples` test examples."""
    return [training_mean_rating(train_ratings)] * num_examples


def majority_label_predictions(*, train_labels: Iterable[bool],
                               num_examples: int) -> list[bool]:
    """The most common training label (yes/no, like/dislike) for every test example; ties: True."""
    labels = [bool(label) for label in train_labels]
    if not labels:
        raise ValueError("no training labels")
    majority = sum(labels) * 2 >= len(labels)
    return [majority] * num_examples


# -- command line: train and cache SASRec -------------------------------------------------------
SUMMARY_METRICS = (("hr@5", "HR@5"), ("ndcg@5", "NDCG@5"), ("hr@10", "HR@10"),
                   ("ndcg@10", "NDCG@10"))


def _parser() -> argparse.ArgumentParser:
    parser = cli_errors.ArgumentParser(
        prog="python -m p5_jax.baselines",
        description="Train SASRec on a prepared dataset's training sequences (early stopping on "
                    "validation NDCG@10), cache it for the evaluation reports, and print "
                    "validation and test HR/NDCG with 95% bootstrap intervals.")
    parser.add_argument("--dataset", required=True, help="a prepared or shipped dataset")
    parser.add_argument("--data_dir", default=None,
                        help="prepared root (default: $P5_DATA_DIR or ./prepared)")
    parser.add_argument("--epochs", type=int, default=200,
                        help="most epochs (default 200; early stopping usually ends sooner)")
    parser.add_argument("--dropout", type=float, nargs="+", default=None, metavar="RATE",
                        help="dropout rates to train, the best by validation NDCG@10 kept "
                             "(default: 0.2 0.5, the paper's rates for dense and sparse data)")
    parser.add_argument("--patience", type=int, default=10,
                        help="stop after this many epochs without a better validation NDCG@10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--windows", default="all", choices=("all", "last"),
                        help="all: every training transition once per epoch (default); "
                             "last: each user's newest 51 items only")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even if a cache with these settings exists")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    cli_errors.add_debug_argument(parser)
    return parser


def _prepared_root(dataset: str, data_dir) -> pathlib.Path:
    """The prepared root holding `dataset`, preparing a shipped dataset first if needed."""
    from p5_jax import paths
    from p5_jax.data import shipped

    root = pathlib.Path(data_dir) if data_dir else paths.prepared_root()
    if not (root / dataset / "manifest.json").exists():
        if dataset not in shipped.SHIPPED:
            raise ValueError(
                f"unknown dataset {dataset!r}: not prepared under {root} and not shipped "
                f"({', '.join(sorted(shipped.SHIPPED))}); prepare it first with "
                f"python -m p5_jax.data.prepare --dataset {dataset} --source PATH --format FORMAT")
        from p5_jax.data import prepare

        print(f"preparing {dataset} under {root}", file=sys.stderr)
        prepare.ensure_prepared(name=dataset, out_root=root)
    return root


def _ranking_line(label: str, records, predictions) -> str:
    """"label (n users): HR@5 x [lo, hi]  ..." from `metrics.ranking_metrics` and
    `intervals.metric_intervals` on the same lists."""
    from p5_jax import intervals, metrics

    targets = [target for _, _, target in records]
    values = metrics.ranking_metrics(targets, predictions)
    bounds = intervals.metric_intervals("ranking", targets, predictions,
                                        [user for user, _, _ in records])
    cells = [f"{title} {values[key]:.4f} [{bounds[key][0]:.4f}, {bounds[key][1]:.4f}]"
             for key, title in SUMMARY_METRICS]
    return f"{label} ({len(targets)} users): " + "  ".join(cells)


def _dropout_line(info: dict) -> str:
    scores = " ".join(f"{rate}:{score:.4f}"
                      for rate, score in info["validation_ndcg10_by_dropout"].items())
    return f"dropout by validation NDCG@10: {scores}; kept {info['settings']['dropout']}"


def _curve_line(curve) -> str:
    return "validation NDCG@10 by epoch: " + " ".join(
        f"{row['epoch']}:{row['ndcg@10']:.4f}" for row in curve)


def _without_dropout(settings: dict) -> dict:
    return {name: value for name, value in settings.items() if name != "dropout"}


def _reusable(info: dict, settings, dropouts: list[float]) -> bool:
    """The cache was trained with these settings over the same dropout choices."""
    return (info.get("dropout_choices") == dropouts
            and _without_dropout(info["settings"]) == _without_dropout(dataclasses.asdict(settings)))


def _train_or_reuse(*, root, dataset, settings, dropouts: list[float], data, retrain: bool,
                    progress: bool):
    """(ranker, cache info, whether it was trained now)."""
    from p5_jax import sasrec, sasrec_cache

    cached, reason = sasrec_cache.cache_status(root, dataset)
    if cached and not retrain and _reusable(cached.info, settings, dropouts):
        return cached.ranker, cached.info, False
    if reason:
        print(f"training SASRec: {reason}", file=sys.stderr)
    result, scores = sasrec.train_choosing_dropout(
        dropouts=dropouts, settings=settings,
        train_histories=[h for _, h, _ in data["train"]],
        validation_histories=[h for _, h, _ in data["validation"]],
        validation_targets=[t for _, _, t in data["validation"]],
        item_ids=data["items"], progress=progress)
    sasrec_cache.save(result, root=root, dataset=dataset, extra={
        "dropout_choices": dropouts,
        "validation_ndcg10_by_dropout": {str(rate): score for rate, score in scores.items()}})
    saved, why_not = sasrec_cache.cache_status(root, dataset)
    if saved is None:
        raise RuntimeError(f"the SASRec just saved does not read back: {why_not}")
    return result.ranker, saved.info, True


def _load(args) -> tuple:
    """(prepared root, settings, dropout rates, data) or an exception for the user's mistake."""
    root = _prepared_root(args.dataset, args.data_dir)
    from p5_jax import sasrec, sasrec_cache

    settings = sasrec.Settings(max_epochs=args.epochs, patience=args.patience, seed=args.seed,
                               windows=args.windows)
    rates = args.dropout or sasrec.DROPOUT_CHOICES
    dropouts = list(dict.fromkeys(float(rate) for rate in rates))  # a repeated rate trains once
    for rate in dropouts:
        dataclasses.replace(settings, dropout=rate)  # Settings' check of each rate
    data: dict[str, list] = {split: sasrec_cache.prepared_sequences(root, args.dataset, split)
                             for split in ("train", "validation", "test")}
    if not data["test"]:
        raise ValueError(f"{args.dataset} has no test sequences to score")
    data["items"] = sasrec_cache.catalogue(root, args.dataset)
    return root, settings, dropouts, data


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        root, settings, dropouts, data = _load(args)
    except (ValueError, FileNotFoundError) as error:
        return cli_errors.handle(error, debug=args.debug)
    ranker, info, trained = _train_or_reuse(root=root, dataset=args.dataset, settings=settings,
                                            dropouts=dropouts, data=data, retrain=args.retrain,
                                            progress=not args.no_progress)
    from p5_jax import sasrec_cache

    how = "trained" if trained else "cached (use --retrain to train again)"
    ran, most = info["epochs_run"], info["settings"]["max_epochs"]
    stop = "stopped early" if ran < most else "reached --epochs before early stopping"
    print(f"SASRec on {args.dataset}: {how}; {ran} epochs ({stop}), best {info['best_epoch']} by "
          f"validation NDCG@10, {info['train_seconds']:.1f} s of training at the kept rate; "
          f"{sasrec_cache.cache_dir(root, args.dataset)}")
    print(_dropout_line(info))
    print(_curve_line(info["curve"]))
    for split in ("validation", "test"):
        records = data[split]
        print(_ranking_line(f"SASRec {split}", records, ranker.rank([h for _, h, _ in records])))
    counts = count_interactions(h for _, h, _ in data["train"])
    popular = most_popular_sequential(counts=counts, histories=[h for _, h, _ in data["test"]],
                                      all_items=data["items"])
    print(_ranking_line("most popular test", data["test"], popular))
    return 0


if __name__ == "__main__":
    sys.exit(main())
