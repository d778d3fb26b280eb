"""Evaluation library: task plans, slot parsing, scoring, sharded decoding, metrics wiring."""
import json
import math

import jax
import numpy as np
import pytest

import eval_data
import p5_tasks  # noqa: F401  (registers the tasks)
from p5_jax import eval_baselines, eval_results, evaluation, inference, partitioning, scoring
from p5_jax.prefix_trie import PrefixTrie
from p5_tasks import prompts

MI = "p5_musical_instruments"


env = eval_data.module_environment("eval")


@pytest.fixture(scope="module")
def vocab(env):
    return p5_tasks.OUTPUT_FEATURES["targets"].vocabulary


# -- plans and prompt slots ----------------------------------------------------------------------
@pytest.mark.parametrize("name, dataset, prompt_id, decoding, unseen", [
    ("p5_beauty_sequential_2_3", "beauty", "2-3", "beam", False),
    ("p5_musical_instruments_sequential_2_13", "musical_instruments", "2-13", "beam", True),
    ("p5_toys_sequential_2_10", "toys", "2-10", "candidates", False),
    ("p5_beauty_direct_5_8", "beauty", "5-8", "candidates", True),
    ("p5_beauty_rating_1_1", "beauty", "1-1", "greedy", False),
    ("p5_beauty_zeroshot_z_1", "beauty", "Z-1", "greedy", True),
])
def test_plan_task(name, dataset, prompt_id, decoding, unseen):
    plan = evaluation.plan_task(name)
    assert (plan.dataset, plan.prompt.id, plan.decoding, plan.unseen) == (
        dataset, prompt_id, decoding, unseen)


def test_zero_shot_domain_marks_every_task_unseen():
    assert evaluation.plan_task("p5_toys_rating_1_1", zero_shot_domain=True).unseen


def test_plan_task_rejects_other_names():
    with pytest.raises(ValueError, match="not a P5 task"):
        evaluation.plan_task("glue_mnli")


def test_shown_items_reads_history_and_candidates_back():
    prompt = prompts.get_prompt("2-10")
    text = prompt.input_template.format(
        user_desc="a reader , of item_9", history="item_1 -> item_2 -> item_3-1-7",
        candidates="item_5 , item_6 , item_7")
    assert evaluation.shown_items(prompt, text, "history") == ["1", "2", "3-1-7"]
    assert evaluation.shown_items(prompt, text, "candidates") == ["5", "6", "7"]
    assert evaluation.shown_items(prompt, "unrelated text", "candidates") == []


def test_task_names_adds_unseen_prompts(env):
    names = evaluation.task_names(f"{MI}_direct")
    assert f"{MI}_direct_5_5" in names and f"{MI}_direct_5_8" in names
    assert f"{MI}_sequential_2_13" in names
    assert f"{MI}_direct_5_8" not in evaluation.task_names(f"{MI}_direct", include_unseen=False)


# -- scoring with a real tiny model --------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    model = eval_data.tiny_model(64)
    params = jax.jit(lambda r: jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x,
                     model.init(r, batch_size=1, input_length=8, target_length=4),
                     is_leaf=lambda x: hasattr(x, "unbox")))(jax.random.PRNGKey(1))
    return model, params


def test_candidate_log_likelihood_matches_score_batch(tiny):
    model, params = tiny
    rng = np.random.default_rng(0)
    inputs = rng.integers(3, 64, size=(2, 8)).astype(np.int32)
    candidates, valid = scoring.pad_candidates(
        [[[5, 6], [7], [8, 9, 10]], [[11], [12, 13]]], num_candidates=4, length=5)
    assert valid.tolist() == [[True, True, True, False], [True, True, False, False]]
    batch = {"encoder_input_tokens": inputs}
    got = scoring.candidate_log_likelihoods(module=model.module, params=params, batch=batch,
                                            candidates_BxCxT=candidates)
    chunked = scoring.candidate_log_likelihoods(module=model.module, params=params, batch=batch,
                                                candidates_BxCxT=candidates, chunk_size=2)
    score_batch = jax.jit(model.score_batch)
    for b in range(2):
        for c in range(4):
            if not valid[b, c]:
                continue
            targets = candidates[b, c][None]
            one = {"encoder_input_tokens": inputs[b:b + 1], "decoder_target_tokens": targets,
                   "decoder_input_tokens": np.asarray(scoring.shift_right(targets)),
                   "decoder_loss_weights": (targets > 0).astype(np.float32)}
            expected = float(score_batch(params, one)[0])
            assert got[b, c] == pytest.approx(expected, abs=1e-4)
    np.testing.assert_allclose(chunked, got, atol=1e-5)


def test_rank_by_scores_breaks_ties_without_list_order():
    assert scoring.rank_by_scores(candidates=["a", "b", "c"], scores=[-3.0, -1.0, -2.0]) == [
        "b", "c", "a"]
    tied = [scoring.rank_by_scores(candidates=list(order), scores=[0.0] * 4)
            for order in (("w", "x", "y", "z"), ("z", "y", "x", "w"))]
    assert tied[0] == tied[1]


def test_predictor_on_eight_devices_matches_one_device(tiny):
    model, params = tiny
    trie = PrefixTrie.from_sequences([[5, 6, 1], [5, 7, 1], [9, 1]], vocab_size=64, eos_id=1)
    rng = np.random.default_rng(1)
    batch = {"encoder_input_tokens": rng.integers(3, 64, size=(8, 8)).astype(np.int32)}
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = partitioning.make_mesh(data=-1, model=1, devices=devices)
        predictor = inference.Predictor(model=model, params=params, mesh=mesh)
        results.append(predictor.beam_search(batch, num_decodes=3, max_decode_length=4,
                                             trie=trie))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-5)
    rows = {tuple(int(t) for t in row if t) for row in results[1][0].reshape(-1, 4)}
    assert rows == {(5, 6, 1), (5, 7, 1), (9, 1)}


# -- one task end to end with a scripted predictor -----------------------------------------------
class ScriptedPredictor:
    """Stands in for `inference.Predictor`: fixed greedy text, fixed beams, candidates by order."""
    data_size, vocab_size = 8, 256

    def __init__(self, vocab, *, text="4", beams=("item_3", "item_1")):
        self.vocab, self.text, self.beams = vocab, text, beams

    def _tokens(self, text, length=16):
        ids = list(self.vocab.encode(text)) + [1]
        return np.pad(ids, (0, length - len(ids)))

    def greedy(self, batch, *, max_decode_length):
        return np.stack([self._tokens(self.text)] * len(batch["encoder_input_tokens"]))

    def beam_search(self, batch, *, num_decodes, max_decode_length, alpha, trie):
        rows = len(batch["encoder_input_tokens"])
        beams = [self._tokens(b) for b in self.beams] + [self._tokens("item_2")]
        scores = [-1.0 * k for k in range(len(self.beams))] + [-np.inf]
        return np.stack([beams] * rows), np.array([scores] * rows)

    def score_candidates(self, batch, candidates, *, chunk_size):
        return -np.arange(candidates.shape[1], dtype=np.float32)[None].repeat(len(candidates), 0)


def _evaluate(name, vocab, predictor, max_examples=6):
    plan = evaluation.plan_task(name)
    items = None
    if plan.decoding != evaluation.GREEDY:
        items = evaluation.build_item_index(item_ids=[str(i) for i in range(20)],
                                            vocabulary=vocab, vocab_size=256)
    config = evaluation.EvalConfig(batch_size=4, max_examples=max_examples, progress=False,
                                   feature_lengths={"inputs": 128, "targets": 16})
    return evaluation.evaluate_task(predictor=predictor, plan=plan, vocabulary=vocab,
                                    items=items, config=config)


def test_rating_task_scores_the_decoded_text(vocab):
    out = _evaluate(f"{MI}_rating_1_1", vocab, ScriptedPredictor(vocab, text="4"))
    targets = [float(row["targets"]) for row in out.rows]
    assert len(targets) == 6 and out.result.metrics["count"] == 6
    expected = math.sqrt(sum((4 - t) ** 2 for t in targets) / len(targets))
    assert out.result.metrics["rmse"] == pytest.approx(expected)
    assert out.result.metrics["unparseable"] == 0


def test_unparseable_outputs_are_counted_not_raised(vocab):
    out = _evaluate(f"{MI}_rating_1_1", vocab, ScriptedPredictor(vocab, text="great"),
                    max_examples=3)
    assert out.result.metrics["unparseable"] == 3 and math.isnan(out.result.metrics["rmse"])


def test_beam_task_ranks_finite_beams(vocab):
    out = _evaluate(f"{MI}_sequential_2_3", vocab, ScriptedPredictor(vocab))
    assert all(row["prediction"] == ["3", "1"] for row in out.rows)
    hits = [row["targets"] in ("item_3", "item_1") for row in out.rows]
    assert out.result.metrics["hr@5"] == pytest.approx(sum(hits) / len(hits))


def test_candidate_task_ranks_every_shown_candidate(vocab):
    out = _evaluate(f"{MI}_direct_5_5", vocab, ScriptedPredictor(vocab))
    prompt = prompts.get_prompt("5-5")
    firsts = [evaluation.shown_items(prompt, r["inputs"], "candidates") for r in out.rows]
    assert all(row["prediction"] == shown for row, shown in zip(out.rows, firsts))
    assert out.result.metrics["mean_candidates"] == eval_data.NUM_NEGATIVES + 1
    top1 = [row["target"][0] == shown[0] for row, shown in zip(out.rows, firsts)]
    assert out.result.metrics["hr@1"] == pytest.approx(sum(top1) / len(top1))


# -- baselines and result files ------------------------------------------------------------------
def _output(name, rows):
    plan = evaluation.plan_task(name)
    result = evaluation.report.TaskResult(task=name, family=plan.family, prompt=plan.prompt.id,
                                          metrics={"count": float(len(rows))}, unseen=plan.unseen)
    return evaluation.TaskOutput(plan=plan, result=result, rows=rows)


def test_baselines_score_the_evaluated_examples():
    seq = prompts.get_prompt("2-3").input_template
    rows = [{"inputs": seq.format(user_id="user_1", history="item_a , item_b"), "target": ["c"]},
            {"inputs": seq.format(user_id="user_2", history="item_c"), "target": ["a"]}]
    direct = prompts.get_prompt("5-7").input_template
    drows = [{"inputs": direct.format(user_id="user_1", candidates="item_d , item_a"),
              "target": ["d"]}]
    outputs = [_output("p5_x_sequential_2_3", rows), _output("p5_x_direct_5_7", drows),
               _output("p5_x_rating_1_1", [{"inputs": "", "target": 5.0},
                                           {"inputs": "", "target": 1.0}])]
    got = eval_baselines.family_baselines(
        outputs=outputs, train_histories=lambda: [["a", "a", "c"], ["c", "b"]],
        train_ratings=lambda: [4.0, 2.0], all_items=lambda: ["a", "b", "c", "d"])
    popular = got["sequential"][eval_baselines.MOST_POPULAR]
    # a:2, c:2, b:1, d:0; user 1 skips a, b -> [c, d]: hit at rank 1; user 2 -> [a, b, d]: rank 1.
    assert popular["hr@1"] == 1.0
    assert got["direct"][eval_baselines.MOST_POPULAR]["hr@1"] == 0.0  # a (2) before d (0)
    assert got["rating"][eval_baselines.MEAN_RATING]["mae"] == pytest.approx(2.0)


def test_write_results_records_the_example_cap(tmp_path):
    rows = [{"inputs": "x", "targets": "4", "output": "4", "target": 4.0, "prediction": 4.0}]
    outputs = [_output("p5_x_rating_1_1", rows), _output("p5_y_rating_1_1", rows)]
    written = eval_results.write_results(
        out_dir=tmp_path, outputs=outputs, settings={"max_examples_per_task": 7},
        baselines_fn=lambda dataset, outs: {})
    assert set(written) == {"x", "y"}
    payload = json.loads((tmp_path / "x" / "results.json").read_text())
    assert payload["settings"]["max_examples_per_task"] == 7
    assert payload["decoding"] == {"p5_x_rating_1_1": "greedy"}
    assert "at most 7 (capped)" in (tmp_path / "y" / "results.md").read_text()
    lines = (tmp_path / "x" / "predictions" / "p5_x_rating_1_1.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["prediction"] == 4.0
