"""Preprocessors on hand-made records: sampling invariants, determinism, rendering, fitting."""
import json

import numpy as np
import pytest
import seqio
import tensorflow as tf

from p5_jax import vocabulary
from p5_tasks import catalog, prompts, rendering
from p5_tasks import preprocessors as pre

ITEMS = [str(i) for i in range(1, 41)]


def _sequence(user="5", history=("1", "2", "3", "4", "5"), target="", is_train=True,
              negatives=None, interacted=None):
    history = list(history)
    negatives = negatives or [str(i) for i in range(30, 39)]
    return {"user_id": user, "user_desc": "a reader", "history": history, "target": target,
            "negatives": negatives, "interacted": interacted or history + ([target] if target else []),
            "is_train": is_train}


def _dataset(records):
    ds = tf.data.Dataset.from_tensors(records[0])
    for record in records[1:]:
        ds = ds.concatenate(tf.data.Dataset.from_tensors(record))
    return ds


def _run(ds, *steps, seed=0):
    with seqio.utils.map_seed_manager(seed):
        for step in steps:
            ds = step(ds)
    return list(ds.as_numpy_iterator())


def _strings(array):
    return [x.decode() for x in array]


@pytest.fixture
def prepared_root(tmp_path, monkeypatch):
    folder = tmp_path / "toyset"
    folder.mkdir()
    with open(folder / "items.jsonl", "w") as file:
        for item in ITEMS:
            file.write(json.dumps({"item_id": item, "title": f"title {item}"}) + "\n")
    monkeypatch.setenv("P5_DATA_DIR", str(tmp_path))
    catalog.clear_cache()
    yield tmp_path
    catalog.clear_cache()


def _windows(history, *, sampling="p5", users=60, seeds=range(4)):
    """(history, target) pairs drawn for `users` training records per pipeline seed."""
    records = [_sequence(user=str(u), history=history) for u in range(users)]
    step = lambda ds: pre.next_item_from_prefix(ds, sampling=sampling)  # noqa: E731
    return [(_strings(ex["history"]), ex["target"].decode()) for seed in seeds
            for ex in _run(_dataset(records), pre.add_sample_seed, step, seed=seed)]


def test_p5_training_target_is_one_of_the_last_three_and_history_starts_in_the_first_three():
    items = list("abcdefghij")
    starts, targets = set(), set()
    for history, target in _windows(items):
        position = items.index(target)
        assert history == items[items.index(history[0]):position]
        starts.add(history[0])
        targets.add(target)
    assert targets == {"h", "i", "j"} and starts == {"a", "b", "c"}


def test_p5_training_history_keeps_its_last_20_items():
    items = [str(i) for i in range(1, 31)]
    targets = set()
    for history, target in _windows(items, seeds=[0]):
        position = items.index(target)
        assert history == items[position - 20:position]
        targets.add(target)
    assert targets == {"28", "29", "30"}


@pytest.mark.parametrize("items, expected", [
    ("ab", {("a", "b")}),                       # P5's code has no such user; target b
    ("abc", {("ab", "c")}),                     # the history keeps at least two items
    ("abcd", {("ab", "c"), ("abc", "d"), ("bc", "d")}),
])
def test_p5_training_windows_of_short_histories(items, expected):
    drawn = {("".join(history), target) for history, target in _windows(list(items))}
    assert drawn == expected


def test_all_prefixes_training_target_is_any_item_after_the_first():
    items = [str(i) for i in range(1, 31)]
    cuts = set()
    for history, target in _windows(items, sampling="all_prefixes", users=40, seeds=[0]):
        end = int(target) - 1           # ids are positions + 1
        assert 1 <= end <= 29 and len(history) == min(end, 20)
        assert history == [str(i) for i in range(end - len(history) + 1, end + 1)]
        cuts.add(end)
    assert len(cuts) > 10


@pytest.mark.parametrize("sampling", ["p5", "all_prefixes"])
def test_continuation_lists_the_target_and_the_items_after_it(sampling):
    items = [str(i) for i in range(1, 9)]
    records = [_sequence(user=str(u), history=items) for u in range(40)]
    step = lambda ds: pre.next_item_from_prefix(ds, sampling=sampling, continuation=4)  # noqa: E731
    lengths = set()
    for ex in _run(_dataset(records), pre.add_sample_seed, step):
        end = int(ex["target"]) - 1     # ids are positions + 1
        listed = _strings(ex["continuation"])
        assert listed == items[end:end + 4]
        assert _strings(ex["history"])[-1] == items[end - 1]
        lengths.add(len(listed))
    # "p5" cuts before one of the last three items, so its lists hold 1, 2 or 3 items.
    assert lengths == ({1, 2, 3} if sampling == "p5" else {1, 2, 3, 4})


def test_continuation_in_evaluation_is_the_stored_target_alone():
    record = _sequence(history=[str(i) for i in range(1, 6)], target="33", is_train=False)
    step = lambda ds: pre.next_item_from_prefix(ds, continuation=4)  # noqa: E731
    (ex,) = _run(_dataset([record]), pre.add_sample_seed, step)
    assert _strings(ex["continuation"]) == ["33"]
    (plain,) = _run(_dataset([record]), pre.add_sample_seed, pre.next_item_from_prefix)
    assert "continuation" not in plain


def test_unknown_sequential_sampling_is_refused():
    with pytest.raises(ValueError, match="all_prefixes"):
        pre.next_item_from_prefix(_dataset([_sequence()]), sampling="prefixes")


def test_evaluation_keeps_stored_history_and_target_cut_to_20():
    record = _sequence(history=[str(i) for i in range(1, 26)], target="33", is_train=False)
    (ex,) = _run(_dataset([record]), pre.add_sample_seed, pre.next_item_from_prefix)
    assert ex["target"].decode() == "33"
    assert _strings(ex["history"]) == [str(i) for i in range(6, 26)]


def test_same_seed_same_draws_other_seed_other_draws_eval_ignores_seed():
    records = [_sequence(user=str(u), history=[str(i) for i in range(1, 21)]) for u in range(30)]
    steps = (pre.add_sample_seed, pre.next_item_from_prefix, pre.choose_joiner)
    draws = lambda seed: [(ex["target"], ex["joiner"]) for ex in _run(_dataset(records), *steps, seed=seed)]  # noqa
    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    evals = [dict(r, is_train=False, target="40") for r in records]
    eval_draws = lambda seed: [ex["joiner"] for ex in _run(_dataset(evals), *steps, seed=seed)]  # noqa
    assert eval_draws(1) == eval_draws(2)


def test_training_candidates_are_distinct_and_never_interacted(prepared_root):
    records = [_sequence(user=str(u)) for u in range(20)]
    out = _run(_dataset(records), pre.add_sample_seed, pre.next_item_from_prefix,
               lambda ds: pre.add_candidates(ds, dataset_name="toyset", num_candidates=10))
    for ex in out:
        candidates = _strings(ex["candidates"])
        assert len(candidates) == 10 and len(set(candidates)) == 10
        assert candidates[0] == ex["target"].decode()
        assert not set(candidates[1:]) & set(_strings(ex["interacted"]))
        assert set(candidates) <= set(ITEMS)


def test_candidates_stop_at_the_items_left_to_sample(prepared_root):
    record = _sequence(interacted=ITEMS[:35])          # 5 never-interacted items remain
    (ex,) = _run(_dataset([record]), pre.add_sample_seed, pre.next_item_from_prefix,
                 lambda ds: pre.add_candidates(ds, dataset_name="toyset", num_candidates=20))
    assert sorted(_strings(ex["candidates"])[1:]) == sorted(ITEMS[35:])


def test_evaluation_candidates_are_target_plus_fixed_negatives_shuffled(prepared_root):
    record = _sequence(target="6", is_train=False)
    steps = (pre.add_sample_seed, pre.next_item_from_prefix,
             lambda ds: pre.add_candidates(ds, dataset_name="toyset", num_candidates=10),
             pre.shuffle_candidates)
    (first,) = _run(_dataset([record]), *steps, seed=1)
    (second,) = _run(_dataset([record]), *steps, seed=2)
    candidates = _strings(first["candidates"])
    assert sorted(candidates) == sorted(["6"] + record["negatives"])
    assert candidates == _strings(second["candidates"])
    assert candidates != ["6"] + record["negatives"]


def test_probe_item_answer_matches(prepared_root):
    records = [_sequence(user=str(u)) for u in range(40)]
    out = _run(_dataset(records), pre.add_sample_seed, pre.next_item_from_prefix,
               lambda ds: pre.add_probe_item(ds, dataset_name="toyset"))
    answers = []
    for ex in out:
        is_target = ex["item_id"] == ex["target"]
        assert ex["answer"].decode() == ("yes" if is_target else "no")
        if not is_target:
            assert ex["item_id"].decode() not in _strings(ex["interacted"])
        answers.append(ex["answer"])
    assert 8 < answers.count(b"yes") < 32


def test_shown_star_is_true_or_another_star():
    records = [{"user_id": str(u), "item_id": "3", "rating": np.int32(u % 5 + 1),
                "is_train": True} for u in range(50)]
    out = _run(_dataset(records), pre.add_sample_seed, pre.add_shown_star)
    for ex in out:
        assert 1 <= ex["star"] <= 5
        assert (ex["star"] == ex["rating"]) == (ex["answer"] == b"yes")
    assert {ex["answer"] for ex in out} == {b"yes", b"no"}


def test_item_titles_come_from_the_catalogue(prepared_root):
    records = [{"item_id": "7"}, {"item_id": "missing"}]
    out = _run(_dataset(records), lambda ds: pre.add_item_titles(ds, dataset_name="toyset"))
    assert [ex["item_title"] for ex in out] == [b"title 7", b""]


def test_render_fills_templates():
    record = {"user_id": "5", "history": ["3", "9", "4"], "joiner": "->", "target": "8",
              "candidates": ["8", "1"]}
    prompt = prompts.get_prompt("2-7")
    (ex,) = _run(_dataset([record]), lambda ds: rendering.render(ds, prompt=prompt))
    assert ex["inputs"].decode() == ("user_5 bought item_3 -> item_9 -> item_4 . Pick the next "
                                     "item for this user from these candidates : item_8 , item_1")
    assert ex["targets"].decode() == "item_8"
    review = {"user_id": "2", "item_id": "4", "rating": np.int32(3), "feature": "tone",
              "explanation": "nice tone"}
    prompt = prompts.get_prompt("3-7")
    (ex,) = _run(_dataset([review]), lambda ds: rendering.render(ds, prompt=prompt))
    assert ex["targets"].decode() == "3 , nice tone"
    (ex,) = _run(_dataset([review]), lambda ds: rendering.render(ds, prompt=prompts.get_prompt("1-4")))
    assert ex["targets"].decode() == "dislike"


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    path = vocabulary.train_sentencepiece(
        texts=prompts.vocabulary_texts(), model_path=tmp_path_factory.mktemp("v") / "m.model",
        vocab_size=300)
    return seqio.SentencePieceVocabulary(str(path))


@pytest.mark.parametrize("prompt_id, length", [("2-3", 40), ("2-3", 17), ("2-7", 60),
                                               ("5-5", 30), ("2-9", 1000)])
def test_fit_drops_whole_ids_oldest_first(vocab, prompt_id, length):
    prompt = prompts.get_prompt(prompt_id)
    history = [str(100 + 37 * i) for i in range(20)]
    candidates = [str(5000 + 11 * i) for i in range(30)]
    record = {"user_id": "12", "user_desc": "a reader", "history": history, "joiner": "->",
              "target": candidates[0], "candidates": candidates}
    features = {"inputs": seqio.Feature(vocab, add_eos=True)}
    (ex,) = _run(_dataset([record]), lambda ds: rendering.fit_lists_to_length(
        ds, {"inputs": length}, features, prompt=prompt), lambda ds: rendering.render(ds, prompt=prompt))
    kept_history, kept_candidates = _strings(ex["history"]), _strings(ex["candidates"])
    assert kept_history == history[len(history) - len(kept_history):]
    assert kept_candidates == candidates[:len(kept_candidates)] and kept_candidates
    if "candidates" not in prompt.slots:
        assert kept_candidates == candidates
    tokens = len(vocab.encode(ex["inputs"].decode()))
    # Fits, or nothing droppable is left (the fixed text alone is longer than the budget).
    at_minimum = kept_history == [] and (len(kept_candidates) == 1
                                         or "candidates" not in prompt.slots)
    assert tokens + 1 <= length or at_minimum
    if length == 1000:
        assert kept_history == history and kept_candidates == candidates
        return
    # One more id would not have fitted: the fit keeps as much as the budget allows.
    if "history" in prompt.slots and len(kept_history) < len(history) and kept_candidates == candidates:
        longer = dict(record, history=history[len(history) - len(kept_history) - 1:])
        (grown,) = _run(_dataset([longer]), lambda ds: rendering.render(ds, prompt=prompt))
        assert len(vocab.encode(grown["inputs"].decode())) + 1 > length


def test_whole_word_ids_in_the_pipeline_match_numpy(vocab):
    text = "user_12 bought item_345 -> item_6 ."
    ds = tf.data.Dataset.from_tensors({"inputs": tf.constant(vocab.encode(text) + [1], tf.int32)})
    features = {"inputs": seqio.Feature(vocab)}
    (ex,) = list(rendering.add_whole_word_ids(ds, features).as_numpy_iterator())
    expected = vocabulary.whole_word_ids(token_ids=ex["inputs"],
                                         word_starts=vocabulary.word_start_table(vocab))
    np.testing.assert_array_equal(ex["inputs_whole_word_ids"], expected)
    words = ex["inputs_whole_word_ids"]
    assert words[-1] == 0 and words.max() == len(text.split())
    pieces = [vocab.tokenizer.id_to_piece(int(t)) for t in ex["inputs"][:-1]]
    for word_index in range(1, words.max() + 1):
        word = "".join(p for p, w in zip(pieces, words) if w == word_index).lstrip("\u2581")
        assert word == text.split()[word_index - 1]
