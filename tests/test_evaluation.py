"""Evaluation library: task plans, slot parsing, scoring with a real model, sharded decoding,
baselines and result files (one task end to end: test_evaluate_task.py)."""
import json

import jax
import numpy as np
import pytest

import p5_tasks  # noqa: F401  (registers the tasks)
from p5_jax import (
    batch_decoding,
    eval_baselines,
    eval_results,
    evaluation,
    inference,
    partitioning,
    scoring,
)
from p5_jax.prefix_trie import PrefixTrie

import eval_data

MI = eval_data.TASK_PREFIX

env = eval_data.module_environment("eval")
vocab = eval_data.module_vocabulary()


# -- plans and prompt slots ----------------------------------------------------------------------
@pytest.mark.parametrize("name, dataset, prompt_id, exact, p5, unseen", [
    ("p5_beauty_sequential_2_3", "beauty", "2-3", "beam", "free_beam", False),
    ("p5_musical_instruments_sequential_2_13", "musical_instruments", "2-13", "beam",
     "free_beam", True),
    ("p5_toys_sequential_2_10", "toys", "2-10", "candidates", "free_beam", False),
    ("p5_beauty_direct_5_8", "beauty", "5-8", "candidates", "free_beam", True),
    ("p5_beauty_direct_5_4", "beauty", "5-4", "yes_rank", "yes_rank", False),
    ("p5_beauty_sequential_2_11", "beauty", "2-11", "greedy", "greedy", False),
    ("p5_beauty_rating_1_1", "beauty", "1-1", "greedy", "greedy", False),
    ("p5_beauty_zeroshot_z_1", "beauty", "Z-1", "greedy", "greedy", True),
])
def test_plan_task(name, dataset, prompt_id, exact, p5, unseen):
    plan = evaluation.plan_task(name)
    assert (plan.dataset, plan.prompt.id, plan.decoding, plan.unseen) == (
        dataset, prompt_id, exact, unseen)
    assert evaluation.plan_task(name, protocol="p5").decoding == p5


def test_zero_shot_domain_marks_every_task_unseen():
    assert evaluation.plan_task("p5_toys_rating_1_1", zero_shot_domain=True).unseen


def test_plan_task_rejects_other_names():
    with pytest.raises(ValueError, match="not a P5 task"):
        evaluation.plan_task("glue_mnli")


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown evaluation protocol 'p6'"):
        evaluation.plan_task("p5_beauty_sequential_2_3", protocol="p6")


def test_sampled_users_are_random_not_the_first_and_fixed_by_seed():
    users = [str(u) for u in range(1000)]
    picked = evaluation.sampled_users(users, max_users=200, seed=0)
    assert len(picked) == 200 and picked == evaluation.sampled_users(users, max_users=200, seed=0)
    assert picked != set(users[:200]) and picked != evaluation.sampled_users(
        users, max_users=200, seed=1)
    assert max(int(u) for u in picked) > 900   # drawn from the whole file
    assert evaluation.sampled_users(users, max_users=None, seed=0) is None
    assert evaluation.sampled_users(users, max_users=5000, seed=0) is None


def test_rank_probes_ranks_each_users_candidates_by_p_yes():
    rows = [{"user_id": "1", "inputs": "a", "targets": t, "item_id": i, "output": s}
            for i, t, s in (("7", "yes", -2.0), ("8", "no", -0.5), ("9", "no", -3.0))]
    rows += [{"user_id": "2", "inputs": "b", "targets": "yes", "item_id": "4", "output": -0.1},
             {"user_id": "2", "inputs": "b", "targets": "no", "item_id": "5", "output": -0.9}]
    ranked = evaluation.rank_probes(rows)
    assert [r["output"] for r in ranked] == [["item_8", "item_7", "item_9"], ["item_4", "item_5"]]
    assert [r["targets"] for r in ranked] == ["item_7", "item_4"]
    assert ranked[0]["candidates"] == ["7", "8", "9"]


def test_candidate_check_flags_short_lists_and_withholds_below_the_floor():
    rows = [{"candidates": ["1"] * n} for n in (100, 100, 95)]
    figures, notes, withhold = evaluation.candidate_check(rows, offered=100, min_share=0.9)
    assert figures == {"candidates_offered": 100.0, "candidates_shown_min": 95.0,
                       "candidates_shown_mean": pytest.approx(295 / 3), "candidates_cut": 0.0}
    assert notes == [] and not withhold
    _, notes, withhold = evaluation.candidate_check(rows + [{"candidates": ["1"] * 40}],
                                                    offered=100, min_share=0.9)
    assert withhold and "withheld" in notes[-1]
    assert evaluation.candidate_check(rows[:2], offered=100, min_share=0.9)[1:] == ([], False)


def test_task_names_adds_unseen_prompts(env):
    names = evaluation.task_names(f"{MI}_direct")
    assert f"{MI}_direct_5_5" in names and f"{MI}_direct_5_8" in names
    assert f"{MI}_sequential_2_13" in names
    assert f"{MI}_direct_5_8" not in evaluation.task_names(f"{MI}_direct", include_unseen=False)


def test_task_names_joins_comma_separated_names_in_order(env):
    names = evaluation.task_names(f"{MI}_sequential_2_3, {MI}_direct_5_8,{MI}_sequential_2_3",
                                  include_unseen=False)
    assert names == [f"{MI}_sequential_2_3", f"{MI}_direct_5_8"]


def test_recommend_mixture_holds_the_seen_item_family_tasks(env):
    names = evaluation.task_names(f"{MI}_recommend", include_unseen=False)
    expected = [n for family in ("sequential", "direct")
                for n in evaluation.task_names(f"{MI}_{family}", include_unseen=False)]
    assert sorted(names) == sorted(expected) and f"{MI}_direct_5_8" not in names


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


def test_padding_a_batch_to_the_input_length_changes_no_beam(tiny):
    """The ground for `pad_to_input_length`: extra pad columns change no token and no score."""
    model, params = tiny
    trie = PrefixTrie.from_sequences([[5, 6, 1], [5, 7, 1], [9, 1]], vocab_size=64, eos_id=1)
    inputs = np.random.default_rng(2).integers(3, 64, size=(8, 8)).astype(np.int32)
    inputs[:, 5:] = 0   # prompts of 5 tokens
    mesh = partitioning.make_mesh(data=-1, model=1, devices=jax.devices())
    predictor = inference.Predictor(model=model, params=params, mesh=mesh)
    short, long = (predictor.beam_search({"encoder_input_tokens": np.pad(inputs, ((0, 0), (0, extra)))},
                                         num_decodes=3, max_decode_length=4, trie=trie)
                   for extra in (0, 24))
    np.testing.assert_array_equal(short[0], long[0])
    np.testing.assert_allclose(short[1], long[1], atol=1e-5)


def test_batch_length_rounds_the_longest_prompt_or_takes_the_input_length():
    examples = [{"inputs": [7] * 10}, {"inputs": [7] * 70}]
    assert batch_decoding.batch_length(examples, input_length=512) == 128
    assert batch_decoding.batch_length(examples, input_length=100) == 100
    assert batch_decoding.batch_length(examples, input_length=512, pad_to_input_length=True) == 512


def test_length_order_puts_short_batches_first_and_keeps_ties_in_order():
    examples = [{"inputs": [7] * n} for n in (70, 10, 200, 64, 65, 3)]
    # lengths alone: 128, 64, 256, 64, 128, 64
    assert batch_decoding.length_order(examples, input_length=512) == [1, 3, 5, 0, 4, 2]
    assert batch_decoding.length_order(examples, input_length=100) == [1, 3, 5, 0, 2, 4]
    assert batch_decoding.length_order(examples, input_length=512,
                                       pad_to_input_length=True) == [0, 1, 2, 3, 4, 5]


# -- baselines and result files ------------------------------------------------------------------
def _output(name, rows):
    plan = evaluation.plan_task(name)
    result = evaluation.report.TaskResult(task=name, family=plan.family, prompt=plan.prompt.id,
                                          metrics={"count": float(len(rows))}, unseen=plan.unseen)
    return evaluation.TaskOutput(plan=plan, result=result, rows=rows)


def test_baselines_score_the_evaluated_examples_from_their_ids():
    rows = [{"user_id": "1", "history": ["a", "b"], "target": ["c"]},
            {"user_id": "2", "history": ["c"], "target": ["a"]}]
    drows = [{"user_id": "1", "candidates": ["d", "a"], "target": ["d"]}]
    outputs = [_output("p5_x_sequential_2_7", [dict(r, candidates=["c", "d"]) for r in rows]),
               _output("p5_x_sequential_2_3", rows), _output("p5_x_direct_5_7", drows),
               _output("p5_x_rating_1_1", [{"user_id": "1", "target": 5.0},
                                           {"user_id": "2", "target": 1.0}])]
    got = eval_baselines.family_baselines(
        outputs=outputs, train_histories=lambda: [["a", "a", "c"], ["c", "b"]],
        train_ratings=lambda: [4.0, 2.0], all_items=lambda: ["a", "b", "c", "d"],
        split_histories=lambda: {"1": ["a", "b"], "2": ["c"]})
    popular = got["sequential"][eval_baselines.MOST_POPULAR]
    # a:2, c:2, b:1, d:0; user 1 skips a, b -> [c, d]: hit at rank 1; user 2 -> [a, b, d]: rank 1.
    assert popular["hr@1"] == 1.0 and popular["intervals"]["hr@1"] == [1.0, 1.0]
    # Transitions a->a, a->c, c->b. User 1's last item b led nowhere: popularity, [c, d] (rank
    # 1); user 2's last item c was followed by b: [b, a, d], the target a at rank 2.
    markov = got["sequential"][eval_baselines.LAST_ITEM_TRANSITIONS]
    assert markov["hr@1"] == 0.5 and markov["hr@5"] == 1.0
    assert got["direct"][eval_baselines.MOST_POPULAR]["hr@1"] == 0.0  # a (2) before d (0)
    # 2-7 shows candidates [c, d]: c (2) before d (0); user 1's target c is first, user 2's a absent.
    among = got["sequential"][eval_baselines.MOST_POPULAR_CANDIDATES]
    assert among["hr@1"] == 0.5 and among["count"] == 2
    assert got["rating"][eval_baselines.MEAN_RATING]["mae"] == pytest.approx(2.0)


def test_most_popular_skips_the_whole_history_not_the_shown_window():
    shown = {"user_id": "1", "history": ["c"], "target": ["b"]}   # the prompt showed only c
    got = eval_baselines.family_baselines(
        outputs=[_output("p5_x_sequential_2_3", [shown])],
        train_histories=lambda: [["a", "a", "c", "b"]], train_ratings=lambda: [],
        all_items=lambda: ["a", "b", "c", "d"], split_histories=lambda: {"1": ["a", "c"]})
    # counts a:2, b:1, c:1; skipping a and c (the full history) leaves [b, d]: b at rank 1.
    assert got["sequential"][eval_baselines.MOST_POPULAR]["hr@1"] == 1.0


class _FakeRanker:
    """Ranks a fixed order, skipping the history it is given; records what it was asked."""

    def __init__(self, order):
        self.order, self.calls = order, []

    def rank(self, histories, *, top_k):
        self.calls.append((list(histories), top_k))
        return [[i for i in self.order if i not in h][:top_k] for h in histories]


def test_sasrec_row_scores_the_same_users_on_their_whole_history_when_cached():
    rows = [{"user_id": "2", "history": ["c"], "target": ["d"]},
            {"user_id": "1", "history": ["b"], "target": ["a"]}]
    loaders = dict(train_histories=lambda: [["a", "b"]], train_ratings=lambda: [],
                   all_items=lambda: ["a", "b", "c", "d"],
                   split_histories=lambda: {"1": ["c", "b"], "2": ["a", "c"], "3": ["d"]})
    ranker = _FakeRanker(["c", "d", "a", "b"])
    got = eval_baselines.family_baselines(outputs=[_output("p5_x_sequential_2_3", rows)],
                                          sasrec=lambda: ranker, **loaders)
    # user 2 skips a, c -> [d, b]: d at rank 1; user 1 skips c, b -> [d, a]: a at rank 2.
    assert ranker.calls == [([["a", "c"], ["c", "b"]], 20)]
    row = got["sequential"][eval_baselines.SASREC]
    assert row["hr@1"] == 0.5 and row["hr@5"] == 1.0 and row["count"] == 2.0
    assert set(row["intervals"]) >= {"hr@5", "ndcg@10"}
    counted = [eval_baselines.MOST_POPULAR, eval_baselines.LAST_ITEM_TRANSITIONS]
    assert list(got["sequential"]) == [*counted, eval_baselines.SASREC]
    absent = eval_baselines.family_baselines(outputs=[_output("p5_x_sequential_2_3", rows)],
                                             sasrec=lambda: None, **loaders)
    assert list(absent["sequential"]) == counted
    assert "python -m p5_jax.baselines --dataset NAME" in eval_baselines.PROTOCOL_NOTE


def test_write_results_records_protocol_users_and_data_flags(tmp_path):
    rows = [{"inputs": "x", "targets": "4", "output": "4", "target": 4.0, "prediction": 4.0}]
    outputs = [_output("p5_x_rating_1_1", rows), _output("p5_y_rating_1_1", rows)]
    written = eval_results.write_results(
        out_dir=tmp_path, outputs=outputs, settings={"max_users_per_task": 7, "seed": 3},
        baselines_fn=lambda dataset, outs: {}, protocol="p5",
        flags_fn=lambda dataset: {"review_split": "p5", "warnings": ["leaks"]})
    assert set(written) == {"x", "y"}
    payload = json.loads((tmp_path / "x" / "results.json").read_text())
    assert payload["settings"]["max_users_per_task"] == 7
    assert payload["protocol"]["name"] == "p5" and payload["data"]["warnings"] == ["leaks"]
    assert payload["decoding"] == {"p5_x_rating_1_1": "greedy"}
    text = (tmp_path / "y" / "results.md").read_text()
    assert "at most 7, sampled at random (seed 3)" in text and "protocol: **p5**" in text
    assert "**warning: leaks**" in text
    lines = (tmp_path / "x" / "predictions" / "p5_x_rating_1_1.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["prediction"] == 4.0
