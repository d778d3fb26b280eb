"""Metric functions with seqio's `metric_fn(targets, predictions) -> {name: float}` signature.

Inputs are the postprocessed values from `p5_jax.postprocessors` (a target goes through the same
postprocessor as its prediction). Unparseable predictions (None, or an empty item list) are
counted and reported in every result, never silently dropped. Text metrics are percentages, as
P5 reports them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import sacrebleu
from rouge_score import rouge_scorer

RATING_MIN, RATING_MAX = 1.0, 5.0
RANKING_KS = (1, 5, 10)
_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _check_pair(targets, predictions) -> None:
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    if not targets:
        raise ValueError("no examples to score")


def _unparseable_counts(num_unparseable: int, total: int) -> dict[str, float]:
    return {"unparseable": float(num_unparseable), "unparseable_rate": num_unparseable / total}


def rating_metrics(targets: Sequence[float], predictions: Sequence[float | None]) -> dict:
    """RMSE and MAE over the parseable predictions, each clipped to [1, 5] as P5 did.

    rmse = sqrt(mean((clip(p) - t)^2)), mae = mean(|clip(p) - t|) over examples whose prediction
    is not None; both are NaN when no prediction parses. `unparseable` counts the others.
    """
    _check_pair(targets, predictions)
    errors = []
    for target, prediction in zip(targets, predictions):
        if target is None:
            raise ValueError("a rating target is None: its text did not parse")
        if prediction is not None:
            clipped = min(max(float(prediction), RATING_MIN), RATING_MAX)
            errors.append(clipped - float(target))
    num_parsed = len(errors)
    result = {
        "rmse": math.sqrt(sum(e * e for e in errors) / num_parsed) if num_parsed else math.nan,
        "mae": sum(abs(e) for e in errors) / num_parsed if num_parsed else math.nan,
        "count": float(len(targets)),
    }
    result.update(_unparseable_counts(len(targets) - num_parsed, len(targets)))
    return result


def accuracy(targets: Sequence[bool], predictions: Sequence[bool | None]) -> dict:
    """Share of predictions equal to the target (yes/no, like/dislike); None counts as wrong."""
    _check_pair(targets, predictions)
    if any(t is None for t in targets):
        raise ValueError("a target is None: its text did not parse")
    correct = sum(p is not None and bool(p) == bool(t) for t, p in zip(targets, predictions))
    num_unparseable = sum(p is None for p in predictions)
    result = {"accuracy": correct / len(targets), "count": float(len(targets))}
    result.update(_unparseable_counts(num_unparseable, len(targets)))
    return result


def _relevant_set(target) -> frozenset[str]:
    if isinstance(target, str):
        relevant = frozenset({target})
    else:
        relevant = frozenset(target)
    if not relevant or any(not isinstance(i, str) or not i for i in relevant):
        raise ValueError(f"a ranking target must be a non-empty item id or ids, got {target!r}")
    return relevant


def _hit_ranks(relevant: frozenset[str], ranked: Sequence[str]) -> list[int]:
    """1-based ranks of the relevant items in the ranked list (duplicates ignored after first)."""
    seen, ranks = set(), []
    for item in ranked:
        if item in seen:
            continue
        seen.add(item)
        if item in relevant:
            ranks.append(len(seen))
    return ranks


def ranking_metrics(targets, predictions, *, ks: Sequence[int] = RANKING_KS) -> dict:
    """HR@k and NDCG@k of ranked item lists.

    targets: per example the relevant item id (a str) or a collection of relevant ids.
    predictions: per example a list of item ids, best first (an empty list is a miss and is
    counted in `unparseable`).
    With R the relevant set and rank(i) the 1-based position of item i in the prediction:
        HR@k   = 1 if any relevant item has rank <= k, else 0
        DCG@k  = sum over relevant i with rank(i) <= k of 1 / log2(rank(i) + 1)
        IDCG@k = sum over r = 1..min(|R|, k) of 1 / log2(r + 1)
        NDCG@k = DCG@k / IDCG@k   (one relevant item: 1 / log2(rank + 1) when rank <= k)
    Both are averaged over examples.
    """
    _check_pair(targets, predictions)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive cut-offs, got {ks!r}")
    hits = {k: 0.0 for k in ks}
    ndcgs = {k: 0.0 for k in ks}
    num_empty = 0
    for target, ranked in zip(targets, predictions):
        if isinstance(ranked, (str, bytes)):
            raise TypeError("a ranking prediction must be a list of item ids, not one string; "
                            "use postprocessors.item_list_postprocessor")
        relevant = _relevant_set(target)
        num_empty += not ranked
        ranks = _hit_ranks(relevant, ranked)
        for k in ks:
            in_top_k = [r for r in ranks if r <= k]
            hits[k] += bool(in_top_k)
            ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
            ndcgs[k] += sum(1.0 / math.log2(r + 1) for r in in_top_k) / ideal
    total = len(targets)
    result = {}
    for k in ks:
        result[f"hr@{k}"] = hits[k] / total
        result[f"ndcg@{k}"] = ndcgs[k] / total
    result["count"] = float(total)
    result.update(_unparseable_counts(num_empty, total))
    return result


def _as_texts(values, name: str) -> list[str]:
    texts = []
    for value in values:
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if not isinstance(value, str):
            raise TypeError(f"{name} must be strings, got {type(value).__name__}")
        texts.append(value)
    return texts


def corpus_bleu(targets: Sequence[str], predictions: Sequence[str], *, max_order: int) -> float:
    """sacrebleu corpus BLEU (0..100): one reference per example, 13a tokenizer, case-sensitive,
    'exp' smoothing, brevity penalty over the corpus; n-grams up to `max_order`."""
    bleu = sacrebleu.metrics.BLEU(max_ngram_order=max_order, tokenize="13a",
                                  smooth_method="exp", lowercase=False)
    return float(bleu.corpus_score(list(predictions), [list(targets)]).score)


def mean_rouge(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """rouge-score F-measures averaged over examples, in percent.

    Settings: rouge1, rouge2, rougeL (sentence-level LCS), default tokenizer (lowercases, keeps
    [a-z0-9] tokens), no stemming.
    """
    scorer = rouge_scorer.RougeScorer(list(_ROUGE_TYPES), use_stemmer=False)
    sums = dict.fromkeys(_ROUGE_TYPES, 0.0)
    for target, prediction in zip(targets, predictions):
        scores = scorer.score(target, prediction)
        for name in _ROUGE_TYPES:
            sums[name] += scores[name].fmeasure
    return {name: 100.0 * value / len(targets) for name, value in sums.items()}


def _text_metrics(targets, predictions, *, bleu_order: int) -> dict:
    _check_pair(targets, predictions)
    targets = _as_texts(targets, "targets")
    predictions = _as_texts(predictions, "predictions")
    result = {f"bleu{bleu_order}": corpus_bleu(targets, predictions, max_order=bleu_order)}
    result.update(mean_rouge(targets, predictions))
    result["count"] = float(len(targets))
    result.update(_unparseable_counts(sum(not p.strip() for p in predictions), len(targets)))
    return result


def explanation_metrics(targets: Sequence[str], predictions: Sequence[str]) -> dict:
    """bleu4 (corpus_bleu, max_order=4) and rouge1/rouge2/rougeL (mean_rouge), in percent.

    `unparseable` counts empty predictions (scored as they are, i.e. as zero overlap).
    """
    return _text_metrics(targets, predictions, bleu_order=4)


def review_summary_metrics(targets: Sequence[str], predictions: Sequence[str]) -> dict:
    """bleu2 (corpus_bleu, max_order=2) and rouge1/rouge2/rougeL (mean_rouge), in percent."""
    return _text_metrics(targets, predictions, bleu_order=2)


def rating_and_explanation_metrics(targets: Sequence[dict], predictions: Sequence[dict]) -> dict:
    """For "rating , sentence" prompts (3-7, 3-8): explanation_metrics on the sentences plus rmse
    and mae on the ratings, whose unparseable counts are `rating_unparseable(_rate)`.

    Each target and prediction is {"rating": float|None, "text": str}, as
    `postprocessors.rating_and_text_postprocessor` returns.
    """
    _check_pair(targets, predictions)
    result = explanation_metrics([t["text"] for t in targets], [p["text"] for p in predictions])
    rating = rating_metrics([t["rating"] for t in targets], [p["rating"] for p in predictions])
    result.update(rmse=rating["rmse"], mae=rating["mae"],
                  rating_unparseable=rating["unparseable"],
                  rating_unparseable_rate=rating["unparseable_rate"])
    return result
