"""End to end: prepare the tiny fixtures, read the TFDS records back, check every invariant."""
import json
import pathlib

import numpy as np
import pytest

from p5_jax.data import prepare, tfds_builders

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "data"


def _prepare(root, fmt, *, name="tiny", indexing="random", seed=0, negatives=2):
    return prepare.prepare_dataset(name=name, out_root=root, source=FIXTURES / fmt, fmt=fmt, indexing=indexing,
                                   seed=seed, num_negatives=negatives, progress=False)


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
    assert manifest["splits"]["rating"] == {"train": 9, "validation": 1, "test": 1}
    assert manifest["splits"]["sequential"] == {"train": 3, "validation": 3, "test": 3}
    assert not manifest["leaks_test_items"] and manifest["skipped_bad_lines"] == 0
    assert {f["md5"] for f in manifest["source_files"]} and len(manifest["source_files"]) == 3
    users = [json.loads(line) for line in (amazon_root / "tiny" / "users.jsonl").read_text().splitlines()]
    assert users[1] == {"user_id": "2", "raw_id": "U2", "user_desc": "U2"}
    items = [json.loads(line) for line in (amazon_root / "tiny" / "items.jsonl").read_text().splitlines()]
    assert items[0]["title"] == "Pop filter" and sorted(i["item_id"] for i in items) == list("123456")
    assert not list(amazon_root.glob(".tiny*"))  # no temporary folder left


def test_sequence_records_follow_leave_one_out(amazon_root):
    items = {json.loads(l)["raw_id"]: json.loads(l)["item_id"]
             for l in (amazon_root / "tiny" / "items.jsonl").read_text().splitlines()}
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
    assert len(_records(tmp_path, "reviews", "test")) == 1


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
    (source / "sequential_data.txt").write_text((FIXTURES / "p5_sequential" / "sequential_data.txt").read_text() + "4\n")
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
