"""Every bad-input case: a DataError naming file, line and field; non-zero exit, nothing written;
--skip_bad_lines counts the line instead."""
import gzip
import json
import pathlib
import shutil

import pytest

from p5_jax.data import prepare
from p5_jax.data.errors import BadLinePolicy, DataError
from p5_jax.data.readers_amazon import read_amazon
from p5_jax.data.readers_p5 import read_p5_sequential
from p5_jax.data.readers_recbole import read_recbole

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "data"
GOOD_REVIEW = {"reviewerID": "U9", "asin": "I1", "overall": 4.0, "unixReviewTime": 5}


def _amazon_with_bad_line(tmp_path, bad_line: str) -> pathlib.Path:
    """A copy of the amazon fixture whose reviews file gets `bad_line` as line 3."""
    folder = tmp_path / "amazon"
    shutil.copytree(FIXTURES / "amazon", folder)
    reviews = folder / "reviews_tiny.json"
    lines = reviews.read_text().splitlines()
    reviews.write_text("\n".join(lines[:2] + [bad_line] + lines[2:]) + "\n")
    return folder


def _review(**changes) -> str:
    review = {**GOOD_REVIEW, **changes}
    return json.dumps({k: v for k, v in review.items() if v is not ...})


AMAZON_CASES = {
    "malformed_json": ('{"reviewerID": "U9", "asin": ', None),
    "missing_field": (_review(asin=...), "asin"),
    "mistyped_field": (_review(unixReviewTime="yesterday"), "unixReviewTime"),
    "mistyped_rating": (_review(overall="five"), "overall"),
    "rating_out_of_range": (_review(overall=6.0), "overall"),
    "fractional_rating": (_review(overall=3.5), "overall"),
    "mistyped_text": (_review(reviewText=42), "reviewText"),
}


@pytest.mark.parametrize("case", sorted(AMAZON_CASES))
def test_amazon_bad_line_names_file_line_and_field(tmp_path, case):
    bad_line, field = AMAZON_CASES[case]
    folder = _amazon_with_bad_line(tmp_path, bad_line)
    with pytest.raises(DataError) as caught:
        read_amazon(path=folder, policy=BadLinePolicy())
    assert caught.value.line == 3 and caught.value.field == field
    assert "reviews_tiny.json" in str(caught.value) and "line 3" in str(caught.value)
    policy = BadLinePolicy(skip=True)
    assert len(read_amazon(path=folder, policy=policy).interactions) == 11
    assert policy.count == 1


def test_truncated_gzip_is_reported_with_its_line(tmp_path):
    data = gzip.compress((FIXTURES / "amazon" / "reviews_tiny.json").read_bytes())
    truncated = tmp_path / "reviews.json.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt gzip") as caught:
        read_amazon(path=truncated, policy=BadLinePolicy(skip=True))
    assert caught.value.path == truncated and caught.value.line >= 1


def _p5_with(tmp_path, sequences: str) -> pathlib.Path:
    folder = tmp_path / "p5"
    shutil.copytree(FIXTURES / "p5_sequential", folder)
    (folder / "sequential_data.txt").write_text(sequences)
    return folder


@pytest.mark.parametrize("line, field, message", [
    ("4", "history", "empty history"),
    ("9 1 2", "user_id", "missing from datamaps"),
    ("3 1 77", "history", "item id 77 is missing from datamaps"),
    ("3 1 x2", "history", "whole-number id"),
    ("1 2 3", "user_id", "appears twice"),
])
def test_p5_bad_line(tmp_path, line, field, message):
    folder = _p5_with(tmp_path, f"1 1 2 3 4\n{line}\n")
    with pytest.raises(DataError, match=message) as caught:
        read_p5_sequential(path=folder, policy=BadLinePolicy())
    assert (caught.value.line, caught.value.field) == (2, field)
    policy = BadLinePolicy(skip=True)
    assert len(read_p5_sequential(path=folder, policy=policy).interactions) == 4 and policy.count == 1


def test_p5_malformed_datamaps(tmp_path):
    folder = _p5_with(tmp_path, "1 1 2 3\n")
    (folder / "datamaps.json").write_text('{"id2item": {"1": "X1"},\n "id2user": ')
    with pytest.raises(DataError, match="malformed JSON") as caught:
        read_p5_sequential(path=folder, policy=BadLinePolicy(skip=True))
    assert caught.value.path.name == "datamaps.json" and caught.value.line == 2


@pytest.mark.parametrize("row, field", [
    ("7\t10\t9\t1000", "rating"),
    ("7\t10\tgood\t1000", "rating"),
    ("7\t10\t4\tnoon", "timestamp"),
    ("7\t10\t4", None),
    ("\t10\t4\t1000", "user_id"),
])
def test_recbole_bad_row(tmp_path, row, field):
    folder = tmp_path / "rb"
    shutil.copytree(FIXTURES / "recbole", folder)
    inter = folder / "tiny.inter"
    inter.write_text(inter.read_text() + row + "\n")
    with pytest.raises(DataError) as caught:
        read_recbole(path=folder, policy=BadLinePolicy())
    assert (caught.value.line, caught.value.field) == (12, field)
    assert "tiny.inter" in str(caught.value)


def test_recbole_bad_header(tmp_path):
    folder = tmp_path / "rb"
    shutil.copytree(FIXTURES / "recbole", folder)
    (folder / "tiny.inter").write_text("user_id:token\titem_id\n7\t10\n")
    with pytest.raises(DataError, match="name:type") as caught:
        read_recbole(path=folder, policy=BadLinePolicy())
    assert caught.value.line == 1


def test_cli_fails_cleanly_and_writes_nothing(tmp_path, capsys):
    folder = _amazon_with_bad_line(tmp_path, _review(overall=0.0))
    out = tmp_path / "out"
    status = prepare.main(["--dataset", "bad", "--source", str(folder), "--format", "amazon",
                           "--out_dir", str(out), "--num_negatives", "2"])
    assert status != 0
    error = capsys.readouterr().err
    assert "reviews_tiny.json, line 3, field 'overall'" in error and "outside 1-5" in error
    assert not out.exists() or list(out.iterdir()) == []


def test_error_mid_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(**_):
        raise OSError("disk full")
    monkeypatch.setattr(prepare.tfds_builders, "build", fail)
    with pytest.raises(OSError):
        prepare.prepare_dataset(name="tiny", out_root=tmp_path, source=FIXTURES / "p5_sequential",
                                fmt="p5_sequential", num_negatives=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        prepare.prepare_dataset(name="nope", out_root=tmp_path)
    with pytest.raises(ValueError, match="needs --format"):
        prepare.prepare_dataset(name="x", out_root=tmp_path, source=FIXTURES / "recbole")
    with pytest.raises(ValueError, match="lower case"):
        prepare.prepare_dataset(name="Bad-Name", out_root=tmp_path)
    with pytest.raises(ValueError, match="unknown indexing"):
        prepare.prepare_dataset(name="beauty", out_root=tmp_path, indexing="alphabetical")
