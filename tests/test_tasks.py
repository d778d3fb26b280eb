"""Registered tasks end to end on injected records, registration by fields, mixture rates,
seed behaviour, and (slow) every task on the shipped data."""
import contextlib
import json

import numpy as np
import pytest
import seqio
import tensorflow as tf

import p5_tasks
from p5_jax import feature_converter, vocabulary
from p5_tasks import catalog, preprocessors, prompts, rates, registration

import eval_data

MI = "musical_instruments"
LENGTHS = {"inputs": 512, "targets": 64}
ITEMS = [str(i) for i in range(1, 301)]


def _review(user="5", item="9", rating=4):
    return {"user_id": user, "user_desc": "a reader", "item_id": item, "item_title": "",
            "item_brand": "", "item_price": "", "rating": np.int32(rating),
            "review_text": "the strap holds well", "summary": "solid strap",
            "explanation": "the strap holds well", "feature": "strap", "timestamp": np.int64(1)}


def _sequence(user="5", history=("1", "2", "3", "4"), target=""):
    history = list(history)
    return {"user_id": user, "user_desc": "a reader", "history": history, "target": target,
            "negatives": [str(i) for i in range(200, 299)],
            "interacted": history + ([target] if target else [])}


@contextlib.contextmanager
def injected(task_name, split, records):
    """Serves `records` (with is_train set from the split) as the task's source."""
    task = seqio.get_mixture_or_task(task_name)
    rows = [dict(r, is_train=split == "train") for r in records]

    def dataset_fn(split, shuffle_files, seed=None):
        ds = tf.data.Dataset.from_tensors(rows[0])
        for row in rows[1:]:
            ds = ds.concatenate(tf.data.Dataset.from_tensors(row))
        return ds

    saved, task._source = task._source, seqio.FunctionDataSource(dataset_fn, splits=[split])
    try:
        yield task
    finally:
        task._source = saved


def _examples(task_name, split, records, *, seed=0, lengths=LENGTHS):
    with injected(task_name, split, records) as task:
        ds = task.get_dataset(sequence_length=lengths, split=split, shuffle=False, seed=seed)
        return list(ds.as_numpy_iterator())


@pytest.fixture(scope="module", autouse=True)
def small_world(tmp_path_factory):
    """A prepared root holding only an item catalogue and a manifest, and a tiny vocabulary."""
    root = tmp_path_factory.mktemp("prepared")
    for dataset in p5_tasks.DATASETS:
        (root / dataset).mkdir()
        with open(root / dataset / "items.jsonl", "w") as file:
            for item in ITEMS:
                file.write(json.dumps({"item_id": item, "title": f"movie {item}"}) + "\n")
        (root / dataset / "manifest.json").write_text(json.dumps(
            {"name": dataset, "counts": {"users": 60, "reviews": 1000, "explanations": 800}}))
    model = vocabulary.train_sentencepiece(
        texts=prompts.vocabulary_texts() + ["the strap holds well solid a reader movie"],
        model_path=root / "tiny.model", vocab_size=400)
    with eval_data.tasks_read(root, model):
        yield root


def test_rating_task_renders_the_review():
    (ex,) = seqio.test_utils.test_preprocessing(
        f"p5_{MI}_rating_1_1", {"train": {**_review(), "is_train": True}}, seed=0,
        sequence_length=LENGTHS)
    assert ex["inputs_pretokenized"].decode() == \
        "What star rating from 1 to 5 would user_5 give to item_9 ?"
    assert ex["targets_pretokenized"].decode() == "4"
    vocab = p5_tasks.VOCABULARY
    assert vocab.decode(ex["inputs"].tolist()) == ex["inputs_pretokenized"].decode()
    assert ex["inputs"][-1] == 1 and len(ex["inputs_whole_word_ids"]) == len(ex["inputs"])


@pytest.mark.parametrize("task, split, record, expected_input, expected_target", [
    ("review_4_1", "test", _review(), "Write a short headline for this review by user_5 : "
     "the strap holds well", "solid strap"),
    ("explanation_3_2", "validation", _review(rating=2), "user_5 summed up item_9 as \" solid "
     "strap \" . Write a sentence explaining the opinion .", "the strap holds well"),
    ("explanation_3_8", "test", _review(rating=2), "Predict the star rating a reader gives item_9 "
     "and explain it .", "2 , the strap holds well"),
    ("sequential_2_3", "test", _sequence(history=("1", "2"), target="7"),
     "Given that user_5 interacted with item_1 {j} item_2 , recommend the next item for this "
     "user .", "item_7"),
])
def test_each_family_renders_inputs_and_targets(task, split, record, expected_input,
                                                expected_target):
    (ex,) = _examples(f"p5_{MI}_{task}", split, [record])
    text = ex["inputs_pretokenized"].decode()
    assert text in {expected_input.format(j=","), expected_input.format(j="->")}
    assert ex["targets_pretokenized"].decode() == expected_target


def test_direct_test_ranks_the_target_among_its_99_negatives():
    record = _sequence(target="7")
    (ex,) = _examples(f"p5_{MI}_direct_5_7", "test", [record], lengths={"inputs": 1024, "targets": 64})
    text = ex["inputs_pretokenized"].decode()
    listed = [w[len("item_"):] for w in text.split() if w.startswith("item_")]
    assert sorted(listed) == sorted(["7"] + record["negatives"])
    assert listed != ["7"] + record["negatives"]
    assert ex["targets_pretokenized"].decode() == "item_7"
    (again,) = _examples(f"p5_{MI}_direct_5_7", "test", [record], seed=5,
                         lengths={"inputs": 1024, "targets": 64})
    assert again["inputs_pretokenized"] == ex["inputs_pretokenized"]


@pytest.mark.parametrize("split, per_record", [("train", 1), ("validation", 100), ("test", 100)])
def test_direct_yes_no_probes_every_candidate_in_evaluation_even_when_repeated(split, per_record):
    records = [_sequence(user=str(u), target="" if split == "train" else "7") for u in range(2)]
    with injected(f"p5_{MI}_direct_5_1", split, records) as task:
        # num_epochs=None: seqio repeats the source before these preprocessors run.
        ds = task.get_dataset(sequence_length=LENGTHS, split=split, shuffle=False, seed=0,
                              num_epochs=None)
        examples = list(ds.take(2 * 2 * per_record).as_numpy_iterator())
    users = [ex["user_id"].decode() for ex in examples]
    assert users == (["0"] * per_record + ["1"] * per_record) * 2
    if split != "train":
        first = examples[:per_record]
        assert [ex["item_id"].decode() for ex in first] == ["7"] + records[0]["negatives"]
        assert [ex["targets_pretokenized"].decode() for ex in first] == ["yes"] + ["no"] * 99


def test_sequential_yes_no_and_direct_yes_no_answers_are_consistent():
    records = [_sequence(user=str(u), history=[str(i) for i in range(1, 9)]) for u in range(12)]
    for task in ("sequential_2_11", "direct_5_1"):
        for ex in _examples(f"p5_{MI}_{task}", "train", records):
            text, answer = ex["inputs_pretokenized"].decode(), ex["targets_pretokenized"]
            probe = text.split("Is " if task.startswith("seq") else "recommend ")[1].split()[0]
            probe_id = probe[len("item_"):]
            assert answer in (b"yes", b"no")
            assert (answer == b"no") == (probe_id not in [str(i) for i in range(1, 9)])


def test_title_yes_no_prompt_shows_the_probed_items_title():
    records = [_sequence(user=str(u), history=[str(i) for i in range(1, 9)]) for u in range(8)]
    for ex in _examples("p5_ml100k_direct_5_3", "train", records):
        title_number = ex["inputs_pretokenized"].decode().split('" movie ')[1].split()[0]
        is_positive = title_number in [str(i) for i in range(1, 9)]
        assert ex["targets_pretokenized"] == (b"yes" if is_positive else b"no")


def test_same_seed_same_stream_other_seed_other_stream():
    records = [_sequence(user=str(u), history=[str(i) for i in range(1, 16)]) for u in range(10)]
    name = f"p5_{MI}_sequential_2_7"
    stream = lambda seed: [ex["inputs_pretokenized"] for ex in _examples(name, "train", records, seed=seed)]  # noqa
    assert stream(3) == stream(3)
    assert stream(3) != stream(4)


def test_long_inputs_are_cut_between_ids():
    record = _sequence(history=[str(i) for i in range(100, 130)], target="7")
    (ex,) = _examples(f"p5_{MI}_sequential_2_7", "test", [record],
                      lengths={"inputs": 300, "targets": 16})
    assert len(ex["inputs"]) <= 300 and ex["inputs"][-1] == 1
    text = ex["inputs_pretokenized"].decode()
    assert p5_tasks.VOCABULARY.decode(ex["inputs"][:-1].tolist()) == text
    listed = [w for w in text.split() if w.startswith("item_")]
    assert all(w[len("item_"):] in set(record["negatives"]) | {"7"} | set(record["history"])
               for w in listed)
    assert "item_7" in listed


def test_prompts_register_only_when_their_fields_exist():
    names = set(seqio.TaskRegistry.names())
    assert f"p5_{MI}_rating_1_1" in names and f"p5_{MI}_rating_1_2" not in names
    assert "p5_ml100k_rating_1_2" in names and "p5_ml100k_direct_5_4" in names
    assert not any(n.startswith("p5_ml100k_explanation") or n.startswith("p5_ml100k_review")
                   for n in names)
    assert not any(n.startswith("p5_beauty_rating") for n in names)
    # Zero-shot: only ml100k has titles and ratings; the title-only Z-8, Z-9 register there.
    assert sorted(n for n in names if "zeroshot" in n) == ["p5_ml100k_zeroshot_z_8",
                                                           "p5_ml100k_zeroshot_z_9"]
    for dataset, count in (("musical_instruments", 33), ("beauty", 19), ("toys", 19),
                           ("ml100k", 33)):
        assert len([n for n in names if n.startswith(f"p5_{dataset}_")]) == count


def test_mixtures_hold_seen_prompts_and_unseen_ones_apart():
    unseen = {t.name for t in seqio.get_mixture_or_task("p5_beauty_unseen").tasks}
    assert unseen == {"p5_beauty_sequential_2_13", "p5_beauty_direct_5_8"}
    seen = {t.name for t in seqio.get_mixture_or_task("p5_beauty_all").tasks}
    assert len(seen) == 17 and not seen & unseen
    assert {t.name for t in seqio.get_mixture_or_task("p5_all_datasets").tasks} >= seen


def test_all_mixture_rates_follow_p5_sampling():
    mixture = seqio.get_mixture_or_task(f"p5_{MI}_all")
    rate = {t.name: mixture.get_rate(t) for t in mixture.tasks}
    users, reviews, explanations = 60, 1000, 800
    # Seen prompts on musical_instruments (no titles): sequential 12, direct 5 (5-1, 5-2,
    # 5-5..5-7), rating 4 (1-1, 1-3, 1-4, 1-6), review 3, explanation 5.
    for prompt in ("2_1", "2_7", "2_11"):
        assert rate[f"p5_{MI}_sequential_{prompt}"] == pytest.approx(20 * users / 12)
    for prompt in ("5_1", "5_5"):
        assert rate[f"p5_{MI}_direct_{prompt}"] == pytest.approx(15 * users / 5)
    assert rate[f"p5_{MI}_rating_1_1"] == pytest.approx(reviews / 4)
    assert rate[f"p5_{MI}_review_4_1"] == pytest.approx(reviews / 3)
    assert rate[f"p5_{MI}_explanation_3_2"] == pytest.approx(explanations / 5)
    assert sum(rate.values()) == pytest.approx(35 * users + 2 * reviews + explanations)


def _train_windows(task_name, length):
    """(history ids, target id) of a task's training examples on histories 1..length."""
    records = [_sequence(user=str(u), history=[str(i) for i in range(1, length + 1)])
               for u in range(40)]
    return _train_windows_of(task_name, "train", records)


def _train_windows_of(task_name, split, records):
    """(history ids, target id) of each example of `records` served as `split`."""
    return [([w[len("item_"):] for w in ex["inputs_pretokenized"].decode().split()
              if w.startswith("item_")], ex["targets_pretokenized"].decode()[len("item_"):])
            for ex in _examples(task_name, split, records)]


def test_sequential_sampling_switches_for_registered_datasets():
    name = f"p5_{MI}_sequential_2_3"
    try:
        registration.set_sequence_options(sampling="all_prefixes")
        assert registration.registered_spec(MI).sequential_sampling == "all_prefixes"
        windows = _train_windows(name, 10)
        assert all(h == [str(i) for i in range(1, int(t))] for h, t in windows)
        assert len({t for _, t in windows}) > 5
        mixed = {t.name: t for t in seqio.get_mixture_or_task(p5_tasks.ALL_DATASETS_MIXTURE).tasks}
        assert mixed[name] is seqio.TaskRegistry.get(name)
    finally:
        registration.set_sequence_options(sampling="p5")
    windows = _train_windows(name, 10)
    assert {t for _, t in windows} == {"8", "9", "10"}
    assert {h[0] for h, _ in windows} == {"1", "2", "3"}
    assert all(h == [str(i) for i in range(int(h[0]), int(t))] for h, t in windows)
    with pytest.raises(ValueError, match="sequential_sampling"):
        registration.set_sequence_options(sampling="every_cut")
    with pytest.raises(ValueError, match="sequential_sampling"):
        p5_tasks.DatasetSpec(name="x", fields=frozenset(), sequential_sampling="every_cut")


def test_history_length_applies_to_training_and_evaluation_examples():
    name = f"p5_{MI}_sequential_2_3"
    test_record = _sequence(history=[str(i) for i in range(1, 31)], target="31")
    try:
        registration.set_sequence_options(sampling="all_prefixes", max_history=4)
        assert registration.registered_spec(MI).max_history == 4
        windows = _train_windows(name, 30)
        # The newest 4 items before the target, whatever the cut point.
        assert all(h == [str(i) for i in range(max(1, int(t) - 4), int(t))] for h, t in windows)
        assert max(int(t) for _, t in windows) > 6
        shown, = _train_windows_of(name, "test", [test_record])
        assert shown == (["27", "28", "29", "30"], "31")
    finally:
        registration.set_sequence_options(sampling="p5", max_history=preprocessors.MAX_HISTORY)
    shown, = _train_windows_of(name, "test", [test_record])
    assert shown[0] == [str(i) for i in range(11, 31)]
    with pytest.raises(ValueError, match="max_history"):
        registration.set_sequence_options(max_history=0)


def test_continuation_prompt_registers_only_when_asked_and_lists_the_next_items():
    name = f"p5_{MI}_sequential_2_14"
    mixture = f"p5_{MI}_recommend"
    plain_rates = {t.name: seqio.get_mixture_or_task(mixture).get_rate(t)
                   for t in seqio.get_mixture_or_task(mixture).tasks}
    assert name not in seqio.TaskRegistry.names()
    try:
        registration.set_sequence_options(sampling="all_prefixes", continuation=3)
        recommend = seqio.get_mixture_or_task(mixture)
        rate = {t.name: recommend.get_rate(t) for t in recommend.tasks}
        # One more seen sequential prompt: the family's 20 per user shared 13 ways.
        assert rate[name] == rate[f"p5_{MI}_sequential_2_1"] == pytest.approx(20 * 60 / 13)
        records = [_sequence(user=str(u), history=[str(i) for i in range(1, 11)])
                   for u in range(20)]
        for ex in _examples(name, "train", records):
            shown = [w for w in ex["inputs_pretokenized"].decode().split() if w.startswith("item_")]
            end = int(shown[-1][len("item_"):])
            expected = [f"item_{i}" for i in range(end + 1, min(end + 3, 10) + 1)]
            assert ex["targets_pretokenized"].decode().split() == expected
        (test_ex,) = _examples(name, "test", [_sequence(target="31")])
        assert test_ex["targets_pretokenized"].decode() == "item_31"
    finally:
        registration.set_sequence_options(sampling="p5", continuation=0)
    assert name not in seqio.TaskRegistry.names()
    recommend = seqio.get_mixture_or_task(mixture)
    assert {t.name: recommend.get_rate(t) for t in recommend.tasks} == plain_rates
    with pytest.raises(ValueError, match="continuation must be >= 0"):
        registration.set_sequence_options(continuation=-1)


def test_task_examples_convert_to_model_batches():
    records = [_sequence(user=str(u)) for u in range(3)]
    with injected(f"p5_{MI}_sequential_2_1", "train", records) as task:
        ds = task.get_dataset(sequence_length=LENGTHS, split="train", shuffle=False, seed=0)
        batch = next(feature_converter.P5EncDecFeatureConverter()(ds, LENGTHS).batch(3)
                     .as_numpy_iterator())
    assert batch["encoder_input_tokens"].shape == (3, 512)
    assert ((batch["encoder_whole_word_ids"] > 0) == (batch["encoder_input_tokens"] > 1)).all()


@pytest.mark.slow
def test_every_registered_task_yields_examples_from_shipped_data(tmp_path, monkeypatch):
    from p5_jax.data import prepare

    monkeypatch.setenv("P5_DATA_DIR", str(tmp_path))
    catalog.clear_cache()
    rates._counts.cache_clear()
    try:
        for dataset in p5_tasks.DATASETS:
            prepare.prepare_dataset(name=dataset, out_root=tmp_path, progress=False)
        names = sorted(n for n in seqio.TaskRegistry.names() if n.startswith("p5_"))
        assert len(names) == 104
        for name in names:
            for split in ("train", "test"):
                ds = seqio.get_mixture_or_task(name).get_dataset(
                    sequence_length=LENGTHS, split=split, shuffle=False, seed=0)
                (ex,) = list(ds.take(1).as_numpy_iterator())
                assert ex["inputs_pretokenized"] and ex["targets_pretokenized"], name
                assert len(ex["inputs"]) <= LENGTHS["inputs"], name
    finally:
        catalog.clear_cache()
        rates._counts.cache_clear()
