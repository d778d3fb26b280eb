"""Fuzzing `python -m p5_jax.data.prepare`: corrupted inputs of all three source formats (the
cases and the judge are in tests/fuzz_cases.py) fail clearly or prepare exactly; plus the
issue's own bad inputs as fixed cases."""

import json
import pathlib
import random
import re
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p5_jax.data import prepare

from fuzz_cases import (
    DATAMAPS,
    FORMATS,
    GOOD,
    NAME,
    PRIMARY,
    Case,
    Doc,
    _entries,
    _join,
    _mark,
    _render_datamaps,
    base_files,
    clean_case,
    make_case,
    shorten,
)
from fuzz_judge import _WORK, Outcome, _write_source, run_case


def _run(case: Case) -> Outcome:
    with tempfile.TemporaryDirectory(dir=_WORK) as work:
        return run_case(case, pathlib.Path(work))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_corrupted_input_fails_clearly_or_prepares_exactly(fmt, rng):
    case = make_case(fmt, rng)
    outcome = _run(case)
    assert outcome.kind in GOOD, f"{case.describe()}\n{outcome.kind}: {outcome.detail}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_clean_input_prepares_exactly(fmt):
    outcome = _run(clean_case(fmt))
    assert outcome.kind == "success", outcome.detail


def _edited(fmt, name, index, line, *, skip=False) -> Case:
    case = clean_case(fmt, skip=skip)
    case.docs[name].lines[index] = line
    _mark(case, name, index)
    return case


def _review_line(**changes) -> bytes:
    obj = json.loads(base_files("amazon")[PRIMARY["amazon"]].split(b"\n")[2])
    parts = [f"{json.dumps(k)}: {changes.pop(k) if k in changes else json.dumps(v)}" for k, v in obj.items()]
    return ("{" + ", ".join(parts) + "}").encode()


@pytest.mark.parametrize("line, field, message", [
    (_review_line(overall="Infinity"), "overall", "expected a finite whole number"),
    (_review_line(overall="-Infinity"), "overall", "expected a finite whole number"),
    (_review_line(overall="1e400"), "overall", "expected a finite whole number"),
    (_review_line(overall="NaN"), "overall", "expected a finite whole number"),
    (_review_line(unixReviewTime="NaN"), "unixReviewTime", "expected a finite whole number"),
    (_review_line(unixReviewTime=str(10 ** 30)), "unixReviewTime", "outside the int64 range"),
    (_review_line(unixReviewTime=str(2 ** 63)), "unixReviewTime", "outside the int64 range"),
    (_review_line(reviewText='"bad \\ud800 text"'), "reviewText", "lone surrogate"),
    (b"[" * 200000, None, "nested more than"),
    (b"{[1]: 2}", None, "malformed JSON"),
    (_review_line(overall="9" * 5000), None, "malformed JSON"),
])
def test_issue_cases_name_file_line_and_field_and_can_be_skipped(line, field, message):
    outcome = _run(_edited("amazon", PRIMARY["amazon"], 2, line))
    assert outcome.kind == "line_error" and message in outcome.detail, outcome.detail
    assert f"{PRIMARY['amazon']}, line 3" in outcome.detail
    assert field is None or f"field '{field}'" in outcome.detail
    skipped = _run(_edited("amazon", PRIMARY["amazon"], 2, line, skip=True))
    assert skipped.kind == "success" and "1 skipped" in skipped.detail, skipped.detail


def test_a_bad_byte_is_reported_at_its_own_line_and_can_be_skipped():
    lines = [b"%d %d %d %d" % (user, user % 9 + 1, (user + 1) % 9 + 1, (user + 2) % 9 + 1) for user in range(1, 1001)]
    lines[900] = b"901 1 2 \xff3"  # line 901
    datamaps = _render_datamaps({"id2user": {str(u): f"U{u}" for u in range(1, 1001)},
                                 "id2item": {str(i): f"I{i}" for i in range(1, 10)}}).encode()
    case = Case(fmt="p5_sequential", docs={PRIMARY["p5_sequential"]: Doc.of(_join(lines)), DATAMAPS: Doc.of(datamaps)},
                skip=False, indexing="random")
    _mark(case, PRIMARY["p5_sequential"], 900)
    outcome = _run(case)
    assert outcome.kind == "line_error" and "sequential_data.txt, line 901" in outcome.detail, outcome.detail
    case.skip = True
    assert _run(case).kind == "success"


def test_nothing_to_write_says_why():
    case = clean_case("recbole")
    shorten(case, random.Random(0))
    outcome = _run(case)
    assert outcome.kind == "file_error", outcome.detail
    assert re.search(r"fz\.inter: nothing to write: no user has 3 or more interactions \(8 users, longest history 2\)",
                     outcome.detail), outcome.detail


@pytest.mark.parametrize("edit, message", [
    (0, "both name item"),      # two ids for one item
    (1, "is given twice"),      # one id for two items
])
def test_conflicting_datamaps_ids_are_errors(edit, message):
    case = clean_case("p5_sequential", skip=True)
    doc = case.docs[DATAMAPS]
    first, second = _entries(doc, b"id2item")[:2]
    key, _, _ = doc.lines[first].partition(b": ")
    value = doc.lines[second].rstrip(b",").partition(b": ")[2]
    if edit == 0:
        doc.lines[first] = key + b": " + value + b","
    else:
        doc.lines.insert(first, key + b": " + value + b",")
        doc.touched.insert(first, True)
    _mark(case, DATAMAPS)
    outcome = _run(case)
    assert outcome.kind == "file_error" and message in outcome.detail and "id2item" in outcome.detail, outcome.detail


@pytest.mark.parametrize("name", ["fz.inter", "fz.item", "fz.user"])
def test_a_folder_where_a_file_belongs_is_a_one_line_error(name):
    case = clean_case("recbole", skip=True)
    case.docs[name].folder = True
    _mark(case, name)
    outcome = _run(case)
    assert outcome.kind == "file_error" and outcome.detail.endswith(f"{name}: is a folder, expected a file")


def test_too_few_items_for_the_negatives_names_the_source_file(capsys):
    with tempfile.TemporaryDirectory(dir=_WORK) as work:
        source = pathlib.Path(work) / "source"
        _write_source(clean_case("recbole"), source)
        status = prepare.main(["--dataset", NAME, "--source", str(source), "--format", "recbole", "--out_dir",
                               str(pathlib.Path(work) / "out"), "--num_negatives", "1000"])
    assert status == 2
    assert re.search(r"error: \S+/fz\.inter, field 'negatives': user '\d+' has only \d+ never-interacted items",
                     capsys.readouterr().err)
