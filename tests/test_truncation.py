"""No silent truncation: an input length that drops candidates or history items is refused, or
with `on_truncation="warn"` evaluated and recorded; a length that fits changes nothing."""
import json

import numpy as np
import pytest

import p5_tasks  # noqa: F401  (registers the tasks)
from p5_jax import eval_baselines, eval_lengths, eval_results, evaluation, item_index, recommend
from p5_tasks import catalog

import eval_data

MI = "p5_musical_instruments"
TASK = f"{MI}_sequential_2_7"   # a history and the candidates

env = eval_data.module_environment("truncation")


@pytest.fixture(scope="module")
def vocab(env):
    return p5_tasks.OUTPUT_FEATURES["targets"].vocabulary


class FakePredictor:
    """Stands in for `inference.Predictor`: candidates scored by position, one fixed beam, a
    fixed greedy text; counts its calls."""
    data_size, vocab_size = 1, 256

    def __init__(self, vocab):
        self.vocab, self.calls = vocab, 0

    def _tokens(self, text, rows):
        ids = list(self.vocab.encode(text)) + [1]
        return np.stack([np.pad(ids, (0, 16 - len(ids)))] * rows)

    def score_candidates(self, batch, candidates, *, chunk_size):
        self.calls += 1
        return -np.arange(candidates.shape[1], dtype=np.float32)[None].repeat(
            candidates.shape[0], 0)

    def beam_search(self, batch, *, num_decodes, max_decode_length, alpha=0.6, trie=None):
        self.calls += 1
        rows = len(batch["encoder_input_tokens"])
        return self._tokens("item_3", rows)[:, None], np.zeros((rows, 1), np.float32)

    def greedy(self, batch, *, max_decode_length):
        self.calls += 1
        return self._tokens("4", len(batch["encoder_input_tokens"]))


def _evaluate(vocab, *, input_length, on_truncation="error", predictor=None, min_share=0.0):
    plan = evaluation.plan_task(TASK)
    items = item_index.build_item_index(item_ids=catalog.item_ids(plan.dataset),
                                        vocabulary=vocab, vocab_size=256)
    config = evaluation.EvalConfig(batch_size=4, progress=False, bootstrap_resamples=20,
                                   feature_lengths={"inputs": input_length, "targets": 16},
                                   on_truncation=on_truncation, min_candidate_share=min_share)
    return evaluation.evaluate_task(predictor=predictor or FakePredictor(vocab), plan=plan,
                                    vocabulary=vocab, items=items, config=config,
                                    input_length=input_length)


def _fits(vocab) -> int:
    plan = evaluation.plan_task(TASK)
    return evaluation.fitting_length(plan, vocabulary=vocab, items=None)


def test_the_fit_records_how_many_ids_it_dropped(vocab):
    examples = list(evaluation.task_examples(
        evaluation.seqio.get_mixture_or_task(TASK), input_length=24,
        config=evaluation.EvalConfig(feature_lengths={"inputs": 24, "targets": 16})))
    offered = eval_data.NUM_NEGATIVES + 1
    assert all(len(e["candidates"]) + e["candidates_dropped"] == offered for e in examples)
    assert any(e["history_dropped"] > 0 for e in examples)
    assert all(eval_lengths.lost_lists(e) for e in examples)


def test_a_short_input_length_refuses_before_decoding(vocab):
    predictor = FakePredictor(vocab)
    users = len(catalog.users("musical_instruments"))
    with pytest.raises(eval_lengths.TruncationError) as caught:
        _evaluate(vocab, input_length=24, predictor=predictor)
    message = str(caught.value)
    assert message.startswith(f"{TASK}: input length 24 drops ids from {users} of {users} "
                              "examples (history from ")
    assert f"an input length of {_fits(vocab)} shows them all" in message
    assert "\n" not in message and predictor.calls == 0


def test_warn_evaluates_and_records_the_ids_shown(vocab, tmp_path):
    out = _evaluate(vocab, input_length=24, on_truncation="warn")
    m = out.result.metrics
    rows = out.rows
    assert m["history_shown_min"] == min(len(r["history"]) for r in rows)
    assert m["history_shown_mean"] == pytest.approx(np.mean([len(r["history"]) for r in rows]))
    assert m["candidates_shown_mean"] < m["candidates_offered"]
    assert m["history_cut"] >= 1 and m["candidates_cut"] == len(rows)
    assert "input length 24 drops ids" in out.result.notes[0]
    assert sum(r["history_dropped"] > 0 for r in rows) == m["history_cut"]
    eval_results.write_results(out_dir=tmp_path, outputs=[out], settings={},
                               baselines_fn=lambda dataset, outputs: {})
    task = json.loads((tmp_path / "results.json").read_text())["tasks"][0]
    assert task["metrics"]["history_shown_min"] == m["history_shown_min"]
    assert task["metrics"]["candidates_shown_min"] == m["candidates_shown_min"]
    markdown = (tmp_path / "results.md").read_text()
    assert "History items shown (min / mean)" in markdown
    assert f"({int(m['history_cut'])} cut)" in markdown and "input length 24 drops" in markdown


def _candidate_baseline(output) -> dict:
    got = eval_baselines.family_baselines(
        outputs=[output], train_histories=lambda: [catalog.item_ids(eval_data.DATASET)],
        train_ratings=lambda: [], all_items=lambda: catalog.item_ids(eval_data.DATASET),
        split_histories=lambda: {})
    return got["sequential"][eval_baselines.MOST_POPULAR_CANDIDATES]


def test_the_candidate_baseline_is_withheld_with_the_model(vocab, tmp_path):
    """At a length that leaves one candidate shown, popularity among the shown candidates
    would score HR@1 = 1.0: it is withheld with the model's ranking metrics."""
    out = _evaluate(vocab, input_length=24, on_truncation="warn", min_share=0.9)
    assert out.result.metrics["candidates_shown_min"] < 0.9 * out.result.metrics[
        "candidates_offered"] and np.isnan(out.result.metrics["hr@1"])
    withheld = _candidate_baseline(out)
    ranking = [k for k in withheld if k.startswith(("hr@", "ndcg@"))]
    assert ranking and all(np.isnan(withheld[k]) for k in ranking)
    assert "intervals" not in withheld and withheld["count"] == len(out.rows)
    eval_results.write_results(out_dir=tmp_path, outputs=[out], settings={},
                               baselines_fn=lambda dataset, outputs: {"sequential": {
                                   eval_baselines.MOST_POPULAR_CANDIDATES: withheld}})
    row = next(line for line in (tmp_path / "results.md").read_text().splitlines()
               if eval_baselines.MOST_POPULAR_CANDIDATES in line)
    assert "1.0000" not in row and "nan" in row
    shown = _candidate_baseline(_evaluate(vocab, input_length=_fits(vocab), min_share=0.9))
    assert all(np.isfinite(shown[k]) for k in ranking) and "intervals" in shown


def test_a_length_that_fits_passes_unchanged(vocab):
    length = _fits(vocab)
    strict = _evaluate(vocab, input_length=length)
    lenient = _evaluate(vocab, input_length=length, on_truncation="warn")
    assert strict.rows == lenient.rows and strict.result == lenient.result
    m = strict.result.metrics
    assert m["history_cut"] == m["candidates_cut"] == 0 and strict.result.notes == ()
    assert m["candidates_shown_min"] == m["candidates_offered"] == eval_data.NUM_NEGATIVES + 1
    assert all(r["history_dropped"] == r["candidates_dropped"] == 0 for r in strict.rows)


def test_bad_policy_is_named():
    with pytest.raises(ValueError, match="on_truncation must be one of"):
        evaluation.EvalConfig(on_truncation="ignore")


def _recommend(env, vocab, *, input_length, on_truncation="error"):
    user = sorted(recommend.read_users(env / eval_data.DATASET))[0]
    return recommend.recommend(predictor=FakePredictor(vocab), vocabulary=vocab, root=env,
                               dataset=eval_data.DATASET, user_id=user, top_k=1,
                               input_length=input_length, target_length=16,
                               on_truncation=on_truncation)


def test_inference_refuses_a_length_that_drops_history(env, vocab):
    with pytest.raises(eval_lengths.TruncationError,
                       match=r"input length 16 drops \d+ of the \d+ history items of prompt "
                             r"2-3; an input length of \d+ fits it"):
        _recommend(env, vocab, input_length=16)


def test_inference_with_warn_reports_what_it_dropped(env, vocab):
    answer = _recommend(env, vocab, input_length=16, on_truncation="warn")
    assert answer["history_dropped"] > 0 and "2-3" in answer["truncated_prompts"]
    full = _recommend(env, vocab, input_length=512)
    assert full["history_dropped"] == 0 and full["truncated_prompts"] == {}
    assert len(full["history"]) == len(answer["history"]) + answer["history_dropped"]
