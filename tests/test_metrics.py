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


# P5's own text metrics (p5_bleu, p5_rouge): whitespace tokens, case-sensitive, no smoothing,
# distinct n-grams for ROUGE-N, ROUGE-L F with beta = P / R.
_CAT = ("the cat sat on a mat", "the cat sat on the mat")  # (reference, hypothesis)
_SOUND = ("great sound quality", "great sound")


def test_p5_metrics_on_one_pair_by_hand():
    # BLEU: as in test_partial_match_bleu_and_rouge_by_hand (6 tokens each, BP = 1):
    #   precisions 5/6, 3/5, 2/4, 1/3 -> BLEU-4 = (1/12) ** (1/4), BLEU-2 = (1/2) ** (1/2).
    # ROUGE-1 on distinct unigrams: hyp {the, cat, sat, on, mat} (5, "the" twice counts once),
    #   ref {the, cat, sat, on, a, mat} (6), overlap 5 -> P = 1, R = 5/6, F = 2 * 5/6 / (11/6)
    #   = 10/11 (rouge-score, counting "the" twice, gives 5/6).
    # ROUGE-2: hyp bigrams {the cat, cat sat, sat on, on the, the mat}, ref {the cat, cat sat,
    #   sat on, on a, a mat}, overlap 3 -> P = R = 3/5, F = 3/5.
    # ROUGE-L: LCS "the cat sat on mat" = 5, P = R = 5/6 -> F = 5/6.
    ref, hyp = _CAT
    assert metrics.p5_bleu([ref], [hyp], 4) == pytest.approx(100 * (1 / 12) ** 0.25)
    assert metrics.p5_bleu([ref], [hyp], 2) == pytest.approx(100 * 0.5 ** 0.5)
    rouge = metrics.p5_rouge([ref], [hyp])
    assert rouge["p5_rouge1"] == pytest.approx(100 * 10 / 11)
    assert rouge["p5_rouge2"] == pytest.approx(100 * 3 / 5)
    assert rouge["p5_rougeL"] == pytest.approx(100 * 5 / 6)


def test_p5_rouge_l_uses_beta_equal_p_over_r():
    # "great sound" vs "great sound quality": LCS 2, P = 2/2 = 1, R = 2/3, beta = P/R = 3/2.
    #   F = (1 + 9/4) * 1 * 2/3 / (2/3 + 9/4 * 1) = (13/6) / (35/12) = 26/35 (F1 would be 0.8).
    # ROUGE-1: overlap 2, P = 1, R = 2/3, F = 0.8. ROUGE-2: {great sound} vs
    #   {great sound, sound quality}: P = 1, R = 1/2, F = 2/3.
    ref, hyp = _SOUND
    rouge = metrics.p5_rouge([ref], [hyp])
    assert rouge["p5_rougeL"] == pytest.approx(100 * 26 / 35)
    assert rouge["p5_rouge1"] == pytest.approx(80.0)
    assert rouge["p5_rouge2"] == pytest.approx(100 * 2 / 3)


def test_p5_corpus_bleu_brevity_penalty_and_mean_rouge():
    # Corpus of both pairs: c = 6 + 2 = 8 hypothesis tokens, r = 6 + 3 = 9 -> BP = exp(1 - 9/8).
    #   1-grams 5 + 2 = 7 of 6 + 2 = 8; 2-grams 3 + 1 = 4 of 5 + 1 = 6;
    #   3-grams 2 + 0 of 4 + 0; 4-grams 1 + 0 of 3 + 0 (a 2-token hypothesis has none).
    #   BLEU-2 = sqrt(7/8 * 4/6) * BP;  BLEU-4 = (7/8 * 4/6 * 2/4 * 1/3) ** (1/4) * BP.
    # ROUGE is the mean of the two sentences' scores from the two tests above.
    refs, hyps = [_CAT[0], _SOUND[0]], [_CAT[1], _SOUND[1]]
    bp = math.exp(1 - 9 / 8)
    assert metrics.p5_bleu(refs, hyps, 2) == pytest.approx(100 * math.sqrt(7 / 12) * bp)
    assert metrics.p5_bleu(refs, hyps, 4) == pytest.approx(100 * (7 / 72) ** 0.25 * bp)
    rouge = metrics.p5_rouge(refs, hyps)
    assert rouge["p5_rouge1"] == pytest.approx(100 * (10 / 11 + 0.8) / 2)
    assert rouge["p5_rouge2"] == pytest.approx(100 * (3 / 5 + 2 / 3) / 2)
    assert rouge["p5_rougeL"] == pytest.approx(100 * (5 / 6 + 26 / 35) / 2)
    # A longer hypothesis than reference has no penalty: "a b c" vs ref "a b" -> 1-gram 2/3.
    assert metrics.p5_bleu(["a b"], ["a b c"], 1) == pytest.approx(100 * 2 / 3)


def test_p5_bleu_is_zero_without_smoothing_when_an_order_has_no_match():
    # No token in common: every order is 0.
    assert metrics.p5_bleu(["a dog barked"], ["the cat sat"], 4) == 0.0
    # "the cat is on a mat" vs "the cat sat on a mat": 1-grams 5/6, 2-grams 3/5 (the cat, on a,
    #   a mat), 3-grams 1/4 (on a mat), 4-grams 0/3 -> BLEU-4 = 0 unsmoothed, while BLEU-3 =
    #   (5/6 * 3/5 * 1/4) ** (1/3) and sacrebleu's 'exp'-smoothed BLEU-4 stays above 0.
    ref, hyp = _CAT[0], "the cat is on a mat"
    assert metrics.p5_bleu([ref], [hyp], 4) == 0.0
    assert metrics.p5_bleu([ref], [hyp], 3) == pytest.approx(100 * (1 / 8) ** (1 / 3))
    assert metrics.corpus_bleu([ref], [hyp], max_order=4) > 0.0
    # "great sound" has no 3-gram at all: BLEU-4 is 0 too.
    assert metrics.p5_bleu([_SOUND[0]], [_SOUND[1]], 4) == 0.0
    # Empty hypotheses score 0 rather than dividing by zero.
    assert metrics.p5_bleu([ref], [""], 2) == 0.0
    assert metrics.p5_rouge([ref], [""]) == {"p5_rouge1": 0.0, "p5_rouge2": 0.0, "p5_rougeL": 0.0}


def test_p5_metrics_are_case_sensitive_unlike_rouge_score():
    result = metrics.explanation_metrics(["Great Sound"], ["great sound"])
    assert result["rouge1"] == pytest.approx(100.0)  # rouge-score lowercases
    assert result["p5_rouge1"] == 0.0 and result["p5_bleu4"] == 0.0


def test_text_metrics_return_both_sets():
    ref, hyp = _CAT
    explanation = metrics.explanation_metrics([ref], [hyp])
    assert explanation["p5_bleu4"] == pytest.approx(100 * (1 / 12) ** 0.25)
    assert explanation["rouge1"] == pytest.approx(100 * 5 / 6)
    assert explanation["p5_rouge1"] == pytest.approx(100 * 10 / 11)
    summary = metrics.review_summary_metrics([ref], [hyp])
    assert {"bleu2", "p5_bleu2", "rouge1", "p5_rouge1", "rougeL", "p5_rougeL"} <= set(summary)
    assert "p5_bleu4" not in summary
    sentences = ["the sound is warm and clear", "great value for the price"]
    perfect = metrics.explanation_metrics(sentences, sentences)
    for name in ("p5_bleu4", "p5_rouge1", "p5_rouge2", "p5_rougeL"):
        assert perfect[name] == pytest.approx(100.0)


def test_per_example_functions_agree_with_the_aggregates():
    values, num_empty = metrics.ranking_per_example(["a", "b"], [["x", "a"], []], ks=(1, 2))
    assert values == {"hr@1": [0.0, 0.0], "ndcg@1": [0.0, 0.0],
                      "hr@2": [1.0, 0.0], "ndcg@2": [1 / math.log2(3), 0.0]}
    assert num_empty == 1
    assert metrics.rating_errors([5.0, 3.0, 2.0], [4.0, 7.0, None]) == [-1.0, 2.0, None]
    assert metrics.accuracy_per_example([True, False, True], [True, True, None]) == [1.0, 0.0, 0.0]
