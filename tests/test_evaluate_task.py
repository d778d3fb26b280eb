"""`evaluation.evaluate_task` end to end on the tiny prepared dataset, with a scripted predictor
in place of the model: decodings, protocols, candidate lists, batching and splits."""
import math

import numpy as np
import pytest

import p5_tasks  # noqa: F401  (registers the tasks)
from p5_jax import batch_decoding, evaluation, item_index
from p5_jax.prefix_trie import ExcludingTrie
from p5_tasks import catalog

import eval_data

MI = eval_data.TASK_PREFIX

env = eval_data.module_environment("evaluate_task")
vocab = eval_data.module_vocabulary()


class ScriptedPredictor:
    """Stands in for `inference.Predictor`: fixed greedy text, fixed beams, candidates scored so
    that their mean per-token score falls with their position (the first shown is best)."""
    data_size, vocab_size = 8, 256

    def __init__(self, vocab, *, text="4", beams=("item_3", "item_1")):
        self.vocab, self.text, self.beams = vocab, text, beams
        self.tries = []

    def _tokens(self, text, length=16):
        ids = list(self.vocab.encode(text)) + [1]
        return np.pad(ids, (0, length - len(ids)))

    def greedy(self, batch, *, max_decode_length):
        return np.stack([self._tokens(self.text)] * len(batch["encoder_input_tokens"]))

    def beam_search(self, batch, *, num_decodes, max_decode_length, alpha, trie):
        self.tries.append(trie)
        rows = len(batch["encoder_input_tokens"])
        beams = [self._tokens(b) for b in self.beams] + [self._tokens("item_2")]
        scores = [-1.0 * k for k in range(len(self.beams))] + [-np.inf]
        return np.stack([beams] * rows), np.array([scores] * rows)

    def score_candidates(self, batch, candidates, *, chunk_size):
        lengths = (candidates > 0).sum(-1).astype(np.float32)
        return -np.arange(candidates.shape[1], dtype=np.float32)[None] * lengths


def _evaluate(name, vocab, predictor, max_users=None, protocol="exact", input_length=None,
              on_truncation="error", split="test"):
    plan = evaluation.plan_task(name, protocol=protocol)
    items = None
    if plan.decoding != evaluation.GREEDY:
        items = item_index.build_item_index(item_ids=[str(i) for i in range(20)],
                                            vocabulary=vocab, vocab_size=256)
    config = evaluation.EvalConfig(batch_size=4, progress=False, bootstrap_resamples=50,
                                   feature_lengths={"inputs": 128, "targets": 16},
                                   on_truncation=on_truncation, split=split)
    users = evaluation.sampled_users(list(catalog.users(plan.dataset)), max_users=max_users,
                                     seed=0)
    return evaluation.evaluate_task(predictor=predictor, plan=plan, vocabulary=vocab,
                                    items=items, config=config, users=users,
                                    input_length=input_length or 1024)


def test_rating_task_scores_the_decoded_text(vocab):
    out = _evaluate(f"{MI}_rating_1_1", vocab, ScriptedPredictor(vocab, text="4"))
    targets = [float(row["targets"]) for row in out.rows]
    assert len(targets) == out.result.metrics["count"] >= 6
    expected = math.sqrt(sum((4 - t) ** 2 for t in targets) / len(targets))
    assert out.result.metrics["rmse"] == pytest.approx(expected)
    assert out.result.metrics["unparseable"] == 0
    low, high = out.result.intervals["rmse"]
    assert low <= expected <= high


def test_unparseable_outputs_are_counted_not_raised(vocab):
    out = _evaluate(f"{MI}_rating_1_1", vocab, ScriptedPredictor(vocab, text="great"))
    count = out.result.metrics["count"]
    assert out.result.metrics["unparseable"] == count and math.isnan(out.result.metrics["rmse"])


def test_a_user_cap_keeps_only_sampled_users(vocab):
    out = _evaluate(f"{MI}_sequential_2_3", vocab, ScriptedPredictor(vocab), max_users=3)
    assert len({row["user_id"] for row in out.rows}) == len(out.rows) == 3


@pytest.mark.parametrize("prompt", ["direct_5_1", "sequential_2_7"])
def test_sampled_users_are_read_before_preprocessing_with_the_same_examples(env, prompt):
    task = evaluation.seqio.get_mixture_or_task(f"{MI}_{prompt}")
    config = evaluation.EvalConfig(feature_lengths={"inputs": 1024, "targets": 16})
    users = evaluation.sampled_users(list(catalog.users("musical_instruments")), max_users=3,
                                     seed=1)
    full = [e for e in evaluation.task_examples(task, config=config, input_length=1024)
            if e["user_id"].decode() in users]
    sampled = list(evaluation.task_examples(task, config=config, input_length=1024,
                                            users=users))
    assert len(sampled) == len(full) >= 3
    for a, b in zip(full, sampled):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_candidate_chunks_bound_the_rows_scored_at_once():
    assert batch_decoding.candidate_chunk(rows=32, width=112) == 4   # 128 rows at a time
    assert batch_decoding.candidate_chunk(rows=4, width=16) == 0     # all at once
    assert batch_decoding.candidate_chunk(rows=32, width=112, chunk_size=16) == 16
    assert batch_decoding.candidate_chunk(rows=512, width=16) == 1


def test_long_inputs_are_decoded_in_fewer_rows_per_call():
    assert batch_decoding.rows_per_call(batch_size=32, length=256) == 32
    assert batch_decoding.rows_per_call(batch_size=32, length=512) == 16
    assert batch_decoding.rows_per_call(batch_size=32, length=768) == 8
    assert batch_decoding.rows_per_call(batch_size=32, length=1024, data_size=8) == 8
    assert batch_decoding.rows_per_call(batch_size=5, length=64) == 5
    assert batch_decoding.rows_per_call(batch_size=5, length=64, data_size=8) == 8


def test_beam_task_ranks_finite_beams_with_the_item_trie(vocab):
    predictor = ScriptedPredictor(vocab)
    out = _evaluate(f"{MI}_sequential_2_3", vocab, predictor)
    assert all(row["prediction"] == ["3", "1"] for row in out.rows)
    hits = [row["targets"] in ("item_3", "item_1") for row in out.rows]
    assert out.result.metrics["hr@5"] == pytest.approx(sum(hits) / len(hits))
    assert all(trie is not None for trie in predictor.tries)
    assert all(len(row["history"]) >= 1 for row in out.rows)


def test_p5_protocol_decodes_without_a_constraint(vocab):
    predictor = ScriptedPredictor(vocab)
    out = _evaluate(f"{MI}_direct_5_5", vocab, predictor, protocol="p5")
    assert predictor.tries and all(trie is None for trie in predictor.tries)
    assert all(row["prediction"] == ["3", "1"] for row in out.rows)


def test_candidate_task_ranks_every_shown_candidate(vocab):
    out = _evaluate(f"{MI}_direct_5_5", vocab, ScriptedPredictor(vocab))
    assert all(row["prediction"] == row["candidates"] for row in out.rows)
    assert out.result.metrics["candidates_shown_min"] == eval_data.NUM_NEGATIVES + 1
    assert out.result.notes == ()
    top1 = [row["target"][0] == row["candidates"][0] for row in out.rows]
    assert out.result.metrics["hr@1"] == pytest.approx(sum(top1) / len(top1))


def test_short_inputs_shrink_candidates_never_the_history_and_are_flagged(vocab):
    out = _evaluate(f"{MI}_sequential_2_7", vocab, ScriptedPredictor(vocab), input_length=60,
                    on_truncation="warn")
    assert all(len(row["history"]) >= 1 for row in out.rows)
    assert all(row["targets"][len("item_"):] in row["candidates"] for row in out.rows)
    assert out.result.metrics["candidates_shown_min"] < eval_data.NUM_NEGATIVES + 1
    assert math.isnan(out.result.metrics["hr@1"]) and "withheld" in out.result.notes[-1]


def test_direct_yes_no_ranks_every_candidate_by_p_yes(vocab):
    out = _evaluate(f"{MI}_direct_5_1", vocab, ScriptedPredictor(vocab))
    users = catalog.users("musical_instruments")
    assert len(out.rows) == len(users)
    assert all(len(row["candidates"]) == eval_data.NUM_NEGATIVES + 1 for row in out.rows)
    assert all(row["targets"][len("item_"):] == row["candidates"][0] for row in out.rows)
    assert set(out.result.metrics) >= {"hr@1", "hr@5", "ndcg@10"}


def test_constrained_beams_bar_each_users_own_items(vocab):
    plan = evaluation.plan_task(f"{MI}_sequential_2_3")
    users = sorted(catalog.users(plan.dataset))[:3]
    excluded = {users[0]: ["3", "5"], users[2]: ["7", "not an item"]}
    items = item_index.build_item_index(item_ids=[str(i) for i in range(20)], vocabulary=vocab,
                                        vocab_size=256, excluded=excluded)
    assert items.constraint_for([users[1]], rows=4) is items.trie   # nothing to bar
    predictor = ScriptedPredictor(vocab)
    config = evaluation.EvalConfig(batch_size=4, progress=False, bootstrap_resamples=50,
                                   feature_lengths={"inputs": 128, "targets": 16})
    out = evaluation.evaluate_task(predictor=predictor, plan=plan, vocabulary=vocab, items=items,
                                   config=config, users=frozenset(users), input_length=1024)
    [trie] = predictor.tries
    assert isinstance(trie, ExcludingTrie) and trie.barred_BxS.shape[0] == 8  # padded rows
    order = [row["user_id"] for row in out.rows]
    for row, user in enumerate(order):
        barred = {items.trie.node_after(items.tokens[i][:-1])
                  for i in excluded.get(user, ()) if i in items.tokens}
        assert set(np.flatnonzero(np.asarray(trie.barred_BxS[row]))) == barred
    assert not np.asarray(trie.barred_BxS[len(order):]).any()


class LengthRecorder(ScriptedPredictor):
    """A scripted predictor that records the input length of every beam batch."""

    def __init__(self, vocab):
        super().__init__(vocab)
        self.lengths = []

    def beam_search(self, batch, **kwargs):
        self.lengths.append(batch["encoder_input_tokens"].shape[1])
        return super().beam_search(batch, **kwargs)


def test_batches_go_shortest_first_and_rows_come_back_in_the_task_order(vocab, monkeypatch):
    drops = []
    monkeypatch.setattr(evaluation, "drop_compiled_programs", lambda: drops.append(1))
    name = f"{MI}_sequential_2_3"
    recorder = LengthRecorder(vocab)
    out = _evaluate(name, vocab, recorder)
    assert len(set(recorder.lengths)) >= 2, "the fixture should give prompts of several lengths"
    assert recorder.lengths == sorted(recorder.lengths)
    assert len(drops) == len(set(recorder.lengths)) - 1   # once per change of length
    config = evaluation.EvalConfig(feature_lengths={"inputs": 1024, "targets": 16})
    stream = evaluation.task_examples(evaluation.seqio.get_mixture_or_task(name), config=config,
                                      input_length=1024)
    assert [row["user_id"] for row in out.rows] == [e["user_id"].decode() for e in stream]


def test_the_validation_split_scores_each_users_second_to_last_item(vocab):
    """What the benchmark chooses checkpoints on: the item before the test item, never it."""
    test_histories = catalog.full_histories(eval_data.DATASET, "test")
    out = _evaluate(f"{MI}_sequential_2_3", vocab, ScriptedPredictor(vocab), split="validation")
    assert len(out.rows) == len(test_histories)
    for row in out.rows:
        assert row["target"] == [test_histories[row["user_id"]][-1]]
    tested = _evaluate(f"{MI}_sequential_2_3", vocab, ScriptedPredictor(vocab))
    assert all(row["target"] != [test_histories[row["user_id"]][-1]] for row in tested.rows)
