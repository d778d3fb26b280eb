"""Metric functions with seqio's `metric_fn(targets, predictions) -> {name: float}` signature.

Inputs are the postprocessed values from `p5_jax.postprocessors` (a target goes through the same
postprocessor as its prediction). Unparseable predictions (None, or an empty item list) are
counted and reported in every result, never silently dropped. Text metrics are percentages, as
P5 reports them.
"""
from __future__ import annotations

import math
from collections import Counter
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


def rating_errors(targets: Sequence[float], predictions: Sequence[float | None]) -> list:
    """Per example clip(prediction, 1, 5) - target, or None where the prediction did not parse."""
    _check_pair(targets, predictions)
    errors: list[float | None] = []
    for target, prediction in zip(targets, predictions):
        if target is None:
            raise ValueError("a rating target is None: its text did not parse")
        if prediction is None:
            errors.append(None)
        else:
            errors.append(min(max(float(prediction), RATING_MIN), RATING_MAX) - float(target))
    return errors


def rating_metrics(targets: Sequence[float], predictions: Sequence[float | None]) -> dict:
    """RMSE and MAE over the parseable predictions, each clipped to [1, 5] as P5 did.

    rmse = sqrt(mean((clip(p) - t)^2)), mae = mean(|clip(p) - t|) over examples whose prediction
    is not None; both are NaN when no prediction parses. `unparseable` counts the others.
    """
    errors = [e for e in rating_errors(targets, predictions) if e is not None]
    num_parsed = len(errors)
    result = {
        "rmse": math.sqrt(sum(e * e for e in errors) / num_parsed) if num_parsed else math.nan,
        "mae": sum(abs(e) for e in errors) / num_parsed if num_parsed else math.nan,
        "count": float(len(targets)),
    }
    result.update(_unparseable_counts(len(targets) - num_parsed, len(targets)))
    return result


def accuracy_per_example(targets: Sequence[bool], predictions: Sequence[bool | None]) -> list:
    """Per example 1.0 if the prediction equals the target, else 0.0 (None counts as wrong)."""
    _check_pair(targets, predictions)
    if any(t is None for t in targets):
        raise ValueError("a target is None: its text did not parse")
    return [float(p is not None and bool(p) == bool(t)) for t, p in zip(targets, predictions)]


def accuracy(targets: Sequence[bool], predictions: Sequence[bool | None]) -> dict:
    """Share of predictions equal to the target (yes/no, like/dislike); None counts as wrong."""
    correct = sum(accuracy_per_example(targets, predictions))
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


def ranking_per_example(targets, predictions, *, ks: Sequence[int] = RANKING_KS
                        ) -> tuple[dict[str, list[float]], int]:
    """Per-example HR@k and NDCG@k (defined in `ranking_metrics`), keyed "hr@k" / "ndcg@k", and
    the number of empty predictions."""
    _check_pair(targets, predictions)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive cut-offs, got {ks!r}")
    ks = tuple(dict.fromkeys(ks))
    values: dict[str, list[float]] = {f"{name}@{k}": [] for k in ks for name in ("hr", "ndcg")}
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
            ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
            values[f"hr@{k}"].append(float(bool(in_top_k)))
            values[f"ndcg@{k}"].append(sum(1.0 / math.log2(r + 1) for r in in_top_k) / ideal)
    return values, num_empty


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
    Both are averaged over examples (`ranking_per_example` gives the per-example values).
    """
    values, num_empty = ranking_per_example(targets, predictions, ks=ks)
    total = len(targets)
    result = {}
    for k in ks:
        result[f"hr@{k}"] = sum(values[f"hr@{k}"]) / total
        result[f"ndcg@{k}"] = sum(values[f"ndcg@{k}"]) / total
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


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def p5_bleu(targets: Sequence[str], predictions: Sequence[str], max_order: int) -> float:
    """Corpus BLEU (0..100) as P5's notebooks/evaluate/bleu.py computes it (the TensorFlow NMT /
    Papineni definition), one reference per example.

    Tokens: `str.split()` (whitespace), case-sensitive, no other normalisation.
    For n = 1..max_order, p_n = sum over examples of clipped n-gram matches (each hypothesis n-gram
    counted at most as often as it occurs in the reference) / sum of hypothesis n-gram counts.
    BLEU = BP * exp(mean_n log p_n), with no smoothing: 0 as soon as any order has no match.
    BP = exp(1 - r / c) if c < r else 1, with c and r the total hypothesis and reference token
    counts over the corpus (P5 writes the condition as c / r <= 1; at c = r both give 1).
    """
    _check_pair(targets, predictions)
    if max_order < 1:
        raise ValueError(f"max_order must be positive, got {max_order}")
    matches, possible = [0] * max_order, [0] * max_order
    hyp_length = ref_length = 0
    for target, prediction in zip(_as_texts(targets, "targets"),
                                  _as_texts(predictions, "predictions")):
        reference, hypothesis = target.split(), prediction.split()
        ref_length += len(reference)
        hyp_length += len(hypothesis)
        for n in range(1, max_order + 1):
            hyp_counts = Counter(_ngrams(hypothesis, n))
            matches[n - 1] += sum((hyp_counts & Counter(_ngrams(reference, n))).values())
            possible[n - 1] += sum(hyp_counts.values())
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / p) for m, p in zip(matches, possible)) / max_order
    brevity = 1.0 if hyp_length >= ref_length else math.exp(1.0 - ref_length / hyp_length)
    return 100.0 * brevity * math.exp(log_precision)


def _f1(precision: float, recall: float) -> float:
    return 2.0 * precision * recall / (precision + recall) if precision + recall else 0.0


def _p5_rouge_n(reference: list[str], hypothesis: list[str], n: int) -> float:
    ref_set, hyp_set = set(_ngrams(reference, n)), set(_ngrams(hypothesis, n))
    overlap = len(ref_set & hyp_set)
    if not overlap:
        return 0.0
    return _f1(overlap / len(hyp_set), overlap / len(ref_set))


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _p5_rouge_l(reference: list[str], hypothesis: list[str]) -> float:
    lcs = _lcs_length(reference, hypothesis)
    if not lcs:
        return 0.0
    p, r = lcs / len(hypothesis), lcs / len(reference)
    return p * r * (p * p + r * r) / (p ** 3 + r ** 3)


def p5_rouge(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F as P5's notebooks/evaluate/rouge.py computes them (TensorFlow NMT's script),
    averaged over examples, in percent: keys p5_rouge1, p5_rouge2, p5_rougeL.

    Tokens: whitespace-split, case-sensitive, no stemming (P5 splits on single spaces; the same
    tokens for text whose spaces are single, as `postprocessors.text_postprocessor` emits).
    ROUGE-N counts *distinct* n-grams: with H and R the sets of hypothesis and reference n-grams,
    P = |H & R| / |H|, R = |H & R| / |R|, F = 2PR / (P + R) (P5 adds 1e-8 to the denominator).
    ROUGE-L is sentence-level LCS: P = LCS / len(hypothesis), R = LCS / len(reference), and F is
    P5's F_beta with beta = P / R, i.e. (1 + beta^2) P R / (R + beta^2 P), which simplifies to
    F = P R (P^2 + R^2) / (P^3 + R^3) (P5's 1e-12 guards dropped). It is not the usual F1: P = 1,
    R = 2/3 gives 26/35, not 0.8; when P = R it is P. Empty strings score 0 (P5 would treat an
    empty string as one empty token, which matches only another empty string).
    """
    _check_pair(targets, predictions)
    sums = {"p5_rouge1": 0.0, "p5_rouge2": 0.0, "p5_rougeL": 0.0}
    for target, prediction in zip(_as_texts(targets, "targets"),
                                  _as_texts(predictions, "predictions")):
        reference, hypothesis = target.split(), prediction.split()
        sums["p5_rouge1"] += _p5_rouge_n(reference, hypothesis, 1)
        sums["p5_rouge2"] += _p5_rouge_n(reference, hypothesis, 2)
        sums["p5_rougeL"] += _p5_rouge_l(reference, hypothesis)
    return {name: 100.0 * value / len(targets) for name, value in sums.items()}


def _text_metrics(targets, predictions, *, bleu_order: int) -> dict:
    _check_pair(targets, predictions)
    targets = _as_texts(targets, "targets")
    predictions = _as_texts(predictions, "predictions")
    result = {f"bleu{bleu_order}": corpus_bleu(targets, predictions, max_order=bleu_order)}
    result.update(mean_rouge(targets, predictions))
    result[f"p5_bleu{bleu_order}"] = p5_bleu(targets, predictions, bleu_order)
    result.update(p5_rouge(targets, predictions))
    result["count"] = float(len(targets))
    result.update(_unparseable_counts(sum(not p.strip() for p in predictions), len(targets)))
    return result


def explanation_metrics(targets: Sequence[str], predictions: Sequence[str]) -> dict:
    """Two sets of text metrics, in percent: the standard bleu4 (corpus_bleu, max_order=4) and
    rouge1/rouge2/rougeL (mean_rouge), and P5's own p5_bleu4 (p5_bleu) and
    p5_rouge1/p5_rouge2/p5_rougeL (p5_rouge), which differ in tokenisation, case, smoothing and
    the ROUGE formulas (see those functions).

    `unparseable` counts empty predictions (scored as they are, i.e. as zero overlap).
    """
    return _text_metrics(targets, predictions, bleu_order=4)


def review_summary_metrics(targets: Sequence[str], predictions: Sequence[str]) -> dict:
    """As `explanation_metrics` with BLEU-2: bleu2, rouge1/2/L, p5_bleu2, p5_rouge1/2/L."""
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
