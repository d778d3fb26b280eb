"""Metric functions against values computed by hand."""
import math

import pytest

from p5_jax import metrics


def test_rating_metrics_clip_and_count_unparseable():
    # errors after clipping to [1, 5]: 4-5=-1, 5(clipped from 7)-3=2, 1(clipped from 0)-1=0.
    result = metrics.rating_metrics([5.0, 3.0, 1.0, 2.0], [4.0, 7.0, 0.0, None])
    assert result["rmse"] == pytest.approx(math.sqrt((1 + 4 + 0) / 3))
    assert result["mae"] == pytest.approx((1 + 2 + 0) / 3)
    assert result["unparseable"] == 1.0
    assert result["unparseable_rate"] == 0.25
    assert result["count"] == 4.0


def test_rating_metrics_all_unparseable_gives_nan_not_crash():
    result = metrics.rating_metrics([3.0, 4.0], [None, None])
    assert math.isnan(result["rmse"]) and math.isnan(result["mae"])
    assert result["unparseable_rate"] == 1.0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="2 targets but 1 predictions"):
        metrics.rating_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no examples"):
        metrics.accuracy([], [])
    with pytest.raises(TypeError, match="list of item ids"):
        metrics.ranking_metrics(["1"], ["item_1"])
    with pytest.raises(ValueError, match="non-empty item id"):
        metrics.ranking_metrics([""], [["1"]])


def test_accuracy_counts_unparseable_as_wrong():
    result = metrics.accuracy([True, False, True, False], [True, False, None, True])
    assert result["accuracy"] == 0.5
    assert result["unparseable"] == 1.0
    assert result["unparseable_rate"] == 0.25


def test_ranking_metrics_on_a_hand_computed_hit_matrix():
    # Relevant item per user and where it sits in the ranked prediction:
    #   u1: "a" at rank 1  -> hr@1=1, ndcg = 1/log2(2) = 1
    #   u2: "b" at rank 3  -> hr@5=1, ndcg@5 = 1/log2(4) = 0.5
    #   u3: "c" at rank 7  -> hr@10=1, ndcg@10 = 1/log2(8) = 1/3
    #   u4: "d" absent     -> 0 everywhere
    #   u5: empty list     -> 0 everywhere, counted as unparseable
    items = ["x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10"]
    predictions = [
        ["a"] + items[:9],
        ["x1", "x2", "b"] + items[2:9],
        items[:6] + ["c"] + items[6:9],
        items,
        [],
    ]
    result = metrics.ranking_metrics(["a", "b", "c", "d", "e"], predictions)
    assert result["hr@1"] == pytest.approx(1 / 5)
    assert result["hr@5"] == pytest.approx(2 / 5)
    assert result["hr@10"] == pytest.approx(3 / 5)
    assert result["ndcg@1"] == pytest.approx(1 / 5)
    assert result["ndcg@5"] == pytest.approx((1 + 0.5) / 5)
    assert result["ndcg@10"] == pytest.approx((1 + 0.5 + 1 / 3) / 5)
    assert result["unparseable"] == 1.0


def test_ranking_metrics_ignore_repeated_items_and_handle_several_relevant():
    # ["x", "x", "a"]: the repeat does not push "a" down, so "a" has rank 2: ndcg = 1/log2(3).
    single = metrics.ranking_metrics(["a"], [["x", "x", "a"]], ks=(2,))
    assert single["hr@2"] == 1.0
    assert single["ndcg@2"] == pytest.approx(1 / math.log2(3))
    # Relevant {a, b} at ranks 1 and 3, k=3: DCG = 1 + 1/2, IDCG = 1 + 1/log2(3).
    several = metrics.ranking_metrics([["a", "b"]], [["a", "x", "b"]], ks=(3,))
    assert several["ndcg@3"] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))


def test_perfect_text_scores_100():
    sentences = ["the sound is warm and clear", "great value for the price"]
    result = metrics.explanation_metrics(sentences, sentences)
    for name in ("bleu4", "rouge1", "rouge2", "rougeL"):
        assert result[name] == pytest.approx(100.0)
    assert metrics.review_summary_metrics(sentences, sentences)["bleu2"] == pytest.approx(100.0)


def test_partial_match_bleu_and_rouge_by_hand():
    # hyp: the cat sat on the mat   ref: the cat sat on a mat   (both 6 tokens, BP = 1)
    # clipped n-gram precisions: 1-gram 5/6, 2-gram 3/5, 3-gram 2/4, 4-gram 1/3
    #   BLEU-2 = (5/6 * 3/5) ** (1/2) = sqrt(1/2);  BLEU-4 = (5/6 * 3/5 * 1/2 * 1/3) ** (1/4)
    # ROUGE F: rouge1 overlap 5 of 6 and 6 -> 5/6; rouge2 overlap 3 of 5 and 5 -> 3/5;
    #   rougeL LCS "the cat sat on mat" = 5 -> 5/6
    hyp, ref = ["the cat sat on the mat"], ["the cat sat on a mat"]
    explanation = metrics.explanation_metrics(ref, hyp)
    assert explanation["bleu4"] == pytest.approx(100 * (1 / 12) ** 0.25, abs=1e-6)
    assert explanation["rouge1"] == pytest.approx(100 * 5 / 6)
    assert explanation["rouge2"] == pytest.approx(100 * 3 / 5)
    assert explanation["rougeL"] == pytest.approx(100 * 5 / 6)
    summary = metrics.review_summary_metrics(ref, hyp)
    assert summary["bleu2"] == pytest.approx(100 * math.sqrt(0.5), abs=1e-6)


def test_rouge_is_averaged_over_examples_and_empty_predictions_counted():
    # Example 1 perfect (100), example 2 empty prediction (0): mean 50.
    result = metrics.explanation_metrics(["good strings", "nice case"], ["good strings", ""])
    assert result["rouge1"] == pytest.approx(50.0)
    assert result["unparseable"] == 1.0


def test_rating_and_explanation_metrics():
    targets = [{"rating": 4.0, "text": "warm sound"}, {"rating": 2.0, "text": "thin case"}]
    predictions = [{"rating": 5.0, "text": "warm sound"}, {"rating": None, "text": "thin case"}]
    result = metrics.rating_and_explanation_metrics(targets, predictions)
    assert result["rmse"] == pytest.approx(1.0)
    assert result["rating_unparseable"] == 1.0
    assert result["rouge1"] == pytest.approx(100.0)
