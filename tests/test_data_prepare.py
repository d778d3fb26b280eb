"""End to end: prepare the tiny fixtures, read the TFDS records back, check every invariant."""
import json
import pathlib
import shutil

import numpy as np
import pytest

from p5_jax.data import prepare, tfds_builders

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "data"


def _prepare(root, fmt, *, name="tiny", indexing="random", seed=0, negatives=2, source=None, **options):
    return prepare.prepare_dataset(name=name, out_root=root, source=source or FIXTURES / fmt, fmt=fmt,
                                   indexing=indexing, seed=seed, num_negatives=negatives, progress=False, **options)


def _decode(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [v.decode() for v in value]
    return int(value)


def _records(root, kind, split, name="tiny"):
    dataset = tfds_builders.load(root=root, dataset=name, kind=kind, split=split)
    return [{key: _decode(value) for key, value in row.items()} for row in dataset.as_numpy_iterator()]


@pytest.fixture(scope="module")
def amazon_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    _prepare(root, "amazon")
    return root


def test_amazon_manifest_and_tables(amazon_root):
    manifest = json.loads((amazon_root / "tiny" / "manifest.json").read_text())
    assert manifest["counts"] == {"users": 3, "items": 6, "interactions": 11, "reviews": 11, "explanations": 6}
    assert manifest["explanation_coverage"] == pytest.approx(0.6)
    # Aligned review split: each user's validation and test item review is held out (3 + 3), the
    # other 5 reviews split 8:1:1 (5 // 10 = 0 held out at random).
    assert manifest["splits"]["rating"] == {"train": 5, "validation": 3, "test": 3}
    assert (manifest["review_split"], manifest["leaks_held_out_items"]) == ("aligned", False)
    assert (manifest["held_out_pairs"], manifest["held_out_pairs_in_review_training"]) == (6, 0)
    assert (manifest["dedupe"], manifest["repeat_interactions"], manifest["users_too_short_for_sequences"]) == (
        True, 0, 0)
    assert manifest["splits"]["sequential"] == {"train": 3, "validation": 3, "test": 3}
    assert not manifest["leaks_test_items"] and manifest["skipped_bad_lines"] == 0
    assert {f["md5"] for f in manifest["source_files"]} and len(manifest["source_files"]) == 3
    users = [json.loads(line) for line in (amazon_root / "tiny" / "users.jsonl").read_text().splitlines()]
    assert users[1] == {"user_id": "2", "raw_id": "U2", "user_desc": "U2"}
    items = [json.loads(line) for line in (amazon_root / "tiny" / "items.jsonl").read_text().splitlines()]
    assert items[0]["title"] == "Pop filter" and sorted(i["item_id"] for i in items) == list("123456")
    assert not list(amazon_root.glob(".tiny*"))  # no temporary folder left


def test_sequence_records_follow_leave_one_out(amazon_root):
    items = {json.loads(line)["raw_id"]: json.loads(line)["item_id"]
             for line in (amazon_root / "tiny" / "items.jsonl").read_text().splitlines()}
    train, validation, test = (_records(amazon_root, "sequences", s) for s in ("train", "validation", "test"))
    alice = [train[0], validation[0], test[0]]
    assert [r["user_desc"] for r in alice] == ["Alice"] * 3
    assert alice[0]["history"] == [items["I1"], items["I2"]] and alice[0]["target"] == ""
    assert alice[1]["history"] == alice[0]["history"] and alice[1]["target"] == items["I3"]
    assert alice[2]["history"] == [items["I1"], items["I2"], items["I3"]] and alice[2]["target"] == items["I4"]
    for t, v, s in zip(train, validation, test):
        assert v["target"] not in t["history"] and s["target"] not in t["history"]
        assert not set(s["negatives"]) & set(s["interacted"])
        assert len(s["negatives"]) == 2 and t["negatives"] == v["negatives"] == s["negatives"]
        assert s["interacted"] == s["history"] + [s["target"]]


def test_review_records_carry_explanations_and_metadata(amazon_root):
    rows = [r for split in ("train", "validation", "test") for r in _records(amazon_root, "reviews", split)]
    assert len(rows) == 11 and sorted(r["rating"] for r in rows) == [1, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5]
    carol = [r for r in rows if r["review_text"] == "Sound is clear!Price is fair."][0]
    assert (carol["feature"], carol["explanation"]) == ("sound", "Sound is clear!")
    assert (carol["item_title"], carol["item_price"], carol["timestamp"]) == ("Pop filter", "12.50", 20)
    assert sum(bool(r["explanation"]) for r in rows) == 6


def _raw_pairs(root, kind, split, target):
    users = {json.loads(line)["user_id"]: json.loads(line)["raw_id"] for line in (root / "tiny" / "users.jsonl").open()}
    items = {json.loads(line)["item_id"]: json.loads(line)["raw_id"] for line in (root / "tiny" / "items.jsonl").open()}
    return sorted((users[r["user_id"]], items[r[target]]) for r in _records(root, kind, split))


def test_review_of_each_held_out_item_is_in_its_split(amazon_root):
    # U1: I1 I2 I3 I4 (I3 and I4 tie: line order), U2: I2 I5 I1, U3: I6 I1 I2 I3.
    validation = [("U1", "I3"), ("U2", "I5"), ("U3", "I2")]
    test = [("U1", "I4"), ("U2", "I1"), ("U3", "I3")]
    assert _raw_pairs(amazon_root, "sequences", "validation", "target") == validation
    assert _raw_pairs(amazon_root, "sequences", "test", "target") == test
    assert _raw_pairs(amazon_root, "reviews", "validation", "item_id") == validation
    assert _raw_pairs(amazon_root, "reviews", "test", "item_id") == test
    assert _raw_pairs(amazon_root, "reviews", "train", "item_id") == [
        ("U1", "I1"), ("U1", "I2"), ("U2", "I2"), ("U3", "I1"), ("U3", "I6")]


def test_p5_review_split_is_flagged(tmp_path, capsys):
    manifest = _prepare(tmp_path, "amazon", review_split="p5")
    assert manifest["splits"]["rating"] == {"train": 9, "validation": 1, "test": 1}
    assert (manifest["review_split"], manifest["leaks_held_out_items"]) == ("p5", True)
    assert manifest["held_out_pairs_in_review_training"] >= 4  # 6 held-out pairs, 2 reviews not in training
    args = ["--dataset", "tiny", "--source", str(FIXTURES / "amazon"), "--format", "amazon", "--out_dir",
            str(tmp_path / "cli"), "--num_negatives", "2"]
    assert prepare.main(args + ["--review_split", "p5"]) == 0
    leaked = manifest["held_out_pairs_in_review_training"]
    assert (f"review split                 p5 (independent 8:1:1)  ** LEAKS HELD-OUT ITEMS: {leaked} of 6 "
            "held-out (user, item) pairs are in review training **") in capsys.readouterr().out
    assert prepare.main(args) == 0
    out = capsys.readouterr().out
    assert "review split                 aligned (held-out items' reviews in validation/test" in out
    assert "LEAKS" not in out


@pytest.mark.parametrize("options, message", [({"review_split": "random"}, "unknown review split 'random'"),
                                              ({"dedupe": "yes"}, "dedupe must be True, False or None")])
def test_bad_split_options_are_clear_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        _prepare(tmp_path, "amazon", **options)
    assert not (tmp_path / "tiny").exists()


@pytest.fixture()
def repeat_source(tmp_path):
    """UA: X1 X2 X1 X3 X2 (two repeats); UB: X3 X5 X2; UC: X6 X1 (too short)."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "datamaps.json").write_text((FIXTURES / "p5_sequential" / "datamaps.json").read_text())
    (source / "sequential_data.txt").write_text("1 1 2 1 3 2\n2 3 5 2\n3 6 1\n")
    return source


def _histories_and_targets(root, split):
    return [(r["history"], r["target"], r["interacted"]) for r in _records(root, "sequences", split)]


def test_p5_sequences_keep_repeats_by_default(tmp_path, repeat_source, capsys):
    args = ["--dataset", "tiny", "--source", str(repeat_source), "--format", "p5_sequential", "--out_dir",
            str(tmp_path / "out"), "--num_negatives", "1", "--indexing", "original"]
    assert prepare.main(args) == 0
    out = capsys.readouterr().out
    assert "users too short              1 (fewer than 3 interactions: no sequential/direct records)" in out
    assert "repeat interactions          2 kept in sequences" in out
    assert "review split                 aligned (no reviews)" in out
    root = tmp_path / "out"
    manifest = json.loads((root / "tiny" / "manifest.json").read_text())
    assert (manifest["dedupe"], manifest["repeat_interactions"]) == (False, 2)
    assert manifest["duplicate_interactions_dropped_from_sequences"] == 0
    assert manifest["users_too_short_for_sequences"] == 1 and manifest["splits"]["sequential"]["test"] == 2
    # The last line item is the test item; the history holds X1 twice; `interacted` is distinct.
    assert _histories_and_targets(root, "test") == [(["1", "2", "1", "3"], "2", ["1", "2", "3"]),
                                                    (["3", "5"], "2", ["3", "5", "2"])]
    assert _histories_and_targets(root, "validation")[0] == (["1", "2", "1"], "3", ["1", "2", "3"])
    assert all(not set(r["negatives"]) & set(r["interacted"]) for r in _records(root, "sequences", "test"))


def test_p5_sequences_dedupe_drops_repeats(tmp_path, repeat_source, capsys):
    args = ["--dataset", "tiny", "--source", str(repeat_source), "--format", "p5_sequential", "--out_dir",
            str(tmp_path / "out"), "--num_negatives", "1", "--indexing", "original", "--dedupe"]
    assert prepare.main(args) == 0
    assert "repeat interactions          2 dropped from sequences" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "out" / "tiny" / "manifest.json").read_text())
    assert (manifest["dedupe"], manifest["duplicate_interactions_dropped_from_sequences"]) == (True, 2)
    assert _histories_and_targets(tmp_path / "out", "test")[0] == (["1", "2"], "3", ["1", "2", "3"])


def test_amazon_keeps_repeats_with_no_dedupe(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(FIXTURES / "amazon", source)
    with open(source / "reviews_tiny.json", "a") as handle:  # Alice reviews I1 again, last
        handle.write(json.dumps({"reviewerID": "U1", "asin": "I1", "overall": 2.0, "unixReviewTime": 400}) + "\n")
    deduped = _prepare(tmp_path / "a", "amazon", source=source)
    assert (deduped["dedupe"], deduped["duplicate_interactions_dropped_from_sequences"]) == (True, 1)
    assert _raw_pairs(tmp_path / "a", "sequences", "test", "target")[0] == ("U1", "I4")
    assert ("U1", "I1") in _raw_pairs(tmp_path / "a", "reviews", "train", "item_id")  # both I1 reviews
    kept = _prepare(tmp_path / "b", "amazon", source=source, dedupe=False)
    assert (kept["dedupe"], kept["repeat_interactions"]) == (False, 1)
    assert _raw_pairs(tmp_path / "b", "sequences", "test", "target")[0] == ("U1", "I1")
    # Both of Alice's I1 reviews follow her test item into the test split.
    assert _raw_pairs(tmp_path / "b", "reviews", "test", "item_id").count(("U1", "I1")) == 2


def test_splits_are_deterministic_under_the_seed(tmp_path):
    first = _prepare(tmp_path / "a", "amazon", seed=3)
    again = _prepare(tmp_path / "b", "amazon", seed=3)
    assert first["splits"] == again["splits"]
    for kind, split in [("reviews", "train"), ("sequences", "test")]:
        assert _records(tmp_path / "a", kind, split) == _records(tmp_path / "b", kind, split)


def test_p5_original_indexing_is_flagged_and_keeps_source_ids(tmp_path):
    manifest = _prepare(tmp_path, "p5_sequential", indexing="original", negatives=1)
    assert manifest["leaks_test_items"] and "reviews" not in manifest["splits"] and "rating" not in manifest["splits"]
    test = _records(tmp_path, "sequences", "test")
    assert [(r["history"], r["target"]) for r in test] == [
        (["1", "2", "3"], "4"), (["3", "5"], "2"), (["6", "1", "2", "3"], "5")]
    with pytest.raises(FileNotFoundError, match="no reviews records"):
        tfds_builders.load(root=tmp_path, dataset="tiny", kind="reviews", split="train")


def test_recbole_with_collaborative_ids_and_empty_splits(tmp_path):
    manifest = _prepare(tmp_path, "recbole", indexing="collaborative", negatives=1)
    assert manifest["fields"]["user_demographics"] and manifest["counts"]["reviews"] == 10
    assert manifest["splits"]["explanation"] == {"train": 0, "validation": 0, "test": 0}
    validation = _records(tmp_path, "sequences", "validation")
    assert [r["user_desc"] for r in validation] == ["24-year-old male technician", "53-year-old female", "9"]
    assert len(_records(tmp_path, "reviews", "test")) == 3  # aligned: each user's test item review


def test_ensure_prepared_only_prepares_once(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(prepare, "prepare_dataset", lambda **kw: calls.append(kw))
    (tmp_path / "beauty").mkdir()
    (tmp_path / "beauty" / "manifest.json").write_text("{}")
    assert prepare.ensure_prepared(name="beauty", out_root=tmp_path) == tmp_path / "beauty"
    prepare.ensure_prepared(name="toys", out_root=tmp_path)
    assert calls == [{"name": "toys", "out_root": tmp_path}]


def test_cli_skip_bad_lines_reports_and_replaces_atomically(tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    for f in (FIXTURES / "p5_sequential").iterdir():
        (source / f.name).write_text(f.read_text())
    original = (FIXTURES / "p5_sequential" / "sequential_data.txt").read_text()
    (source / "sequential_data.txt").write_text(original + "4\n")
    args = ["--dataset", "tiny", "--source", str(source), "--format", "p5_sequential", "--out_dir",
            str(tmp_path / "out"), "--num_negatives", "1", "--indexing", "sequential_train"]
    assert prepare.main(args) != 0
    assert prepare.main(args + ["--skip_bad_lines"]) == 0
    assert prepare.main(args + ["--skip_bad_lines", "--seed", "1"]) == 0  # replaces the earlier result
    captured = capsys.readouterr()
    assert "skipped bad lines            1" in captured.out and "empty history" in captured.err
    manifest = json.loads((tmp_path / "out" / "tiny" / "manifest.json").read_text())
    assert manifest["skipped_bad_lines"] == 1 and manifest["seed"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny"]
