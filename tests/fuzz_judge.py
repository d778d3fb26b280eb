"""Runs one fuzz case (tests/fuzz_cases.py) through the prepare CLI in-process and judges
the outcome: a file:line error the corruption explains, a file-level error, or a dataset
whose counts match the lines that were not skipped."""
import atexit
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import pathlib
import re
import shutil
import tempfile
import traceback
from unittest import mock

from p5_jax.data import prepare
from p5_jax.data.errors import BadLinePolicy

from fuzz_cases import DATAMAPS, HEADERED, NAME, PRIMARY, SECOND, Case, Doc, _header_index, _lenient_object, clean_case


@dataclasses.dataclass
class Outcome:
    kind: str  # one of GOOD, or "traceback", "unclear_error", "wrong"
    detail: str = ""


_WORK = pathlib.Path(tempfile.mkdtemp(prefix="fuzz_prepare_"))
atexit.register(shutil.rmtree, _WORK, ignore_errors=True)


def _write_source(case: Case, folder_path: pathlib.Path) -> None:
    folder_path.mkdir(parents=True)
    for name, doc in case.docs.items():
        if doc.folder:
            (folder_path / name).mkdir()
            (folder_path / name / "inside.txt").write_bytes(b"x\n")
        elif not doc.removed:
            (folder_path / name).write_bytes(doc.file_bytes())


@functools.cache
def earlier_dataset(fmt: str) -> pathlib.Path:
    """A dataset prepared from the clean input, copied into each case's out_dir first."""
    _write_source(clean_case(fmt), _WORK / f"clean_{fmt}")
    prepare.prepare_dataset(name=NAME, out_root=_WORK / f"earlier_{fmt}", source=_WORK / f"clean_{fmt}", fmt=fmt,
                            num_negatives=2, progress=False)
    return _WORK / f"earlier_{fmt}" / NAME


def _digest(folder_path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder_path.rglob("*")):
        digest.update(str(path.relative_to(folder_path)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_case(case: Case, workdir: pathlib.Path) -> Outcome:
    """Runs the CLI on `case` in `workdir` and judges the outcome."""
    source, out = workdir / "source", workdir / "out"
    _write_source(case, source)
    shutil.copytree(earlier_dataset(case.fmt), out / NAME)
    before = _digest(out / NAME)
    argv = ["--dataset", NAME, "--source", str(source), "--format", case.fmt, "--out_dir", str(out),
            "--num_negatives", "2", "--indexing", case.indexing] + (["--skip_bad_lines"] if case.skip else [])
    stdout, stderr = io.StringIO(), io.StringIO()
    every_example = functools.partial(BadLinePolicy, max_examples=10 ** 9)  # to know every skipped line
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                mock.patch.object(prepare, "BadLinePolicy", every_example):
            status = prepare.main(argv)
    except (Exception, SystemExit):  # noqa: BLE001 - any escape is the failure this suite looks for
        return Outcome("traceback", traceback.format_exc())
    return _judge(case, source, out, status, stderr.getvalue(), before)


def _judge(case, source, out, status, stderr, before) -> Outcome:
    left = sorted(p.name for p in out.iterdir())
    if left != [NAME]:
        return Outcome("wrong", f"out_dir holds {left} (a partial or stray folder)")
    if status == 0:
        return _judge_success(case, source, out / NAME)
    if _digest(out / NAME) != before:
        return Outcome("wrong", "a failed run changed the earlier dataset")
    match = re.search(r"^error: (.*) \(nothing was written\)$", stderr, re.MULTILINE)
    if status != 2 or match is None:
        return Outcome("unclear_error", f"exit status {status}, stderr:\n{stderr[-2000:]}")
    return _judge_error(case, source, match.group(1))


def _named_file(case, source, message):
    """(file name or "" for the source folder, rest of the message) for the input path the message starts with."""
    paths = [(name, str(source / name)) for name in case.docs] + [("", str(source))]
    for name, path in sorted(paths, key=lambda pair: -len(pair[1])):
        if message.startswith(path):
            return name, message[len(path):]
    return None, message


def _judge_error(case, source, message) -> Outcome:
    name, rest = _named_file(case, source, message)
    line = re.match(r", line (\d+)", rest)
    if name is None or not (line or rest.startswith((":", ", field"))):
        return Outcome("unclear_error", message)
    if line is None:
        return Outcome("file_error", message)
    if not (name and case.docs[name].touched_at(int(line.group(1)))):
        return Outcome("wrong", f"names a line no corruption touched: {message}")
    if case.skip and not _unskippable(case, name, int(line.group(1)), message):
        return Outcome("wrong", f"a bad line stopped a --skip_bad_lines run: {message}")
    return Outcome("line_error", message)


def _unskippable(case, name, line, message) -> bool:
    """Faults no skipping gets past: malformed datamaps JSON, a RecBole header, a cut gzip stream."""
    header = name in HEADERED and line == (_header_index(case.docs[name]) or 0) + 1
    return name == DATAMAPS or header or "gzip stream" in message


def _skipped(case, source, examples) -> set:
    skipped = set()
    for example in examples:
        name, rest = _named_file(case, source, example)
        line = re.match(r", line (\d+)", rest)
        if not name or line is None:
            raise AssertionError(f"skipped without a file and line: {example}")
        if not case.docs[name].touched_at(int(line.group(1))):
            raise AssertionError(f"skipped a line no corruption touched: {example}")
        skipped.add((name, int(line.group(1))))
    return skipped


def _accepted(doc: Doc, skipped: set) -> list:
    """The non-blank lines a reader must have kept: all but the skipped ones."""
    data = doc.text_bytes()
    kept = []
    for number, raw in enumerate(data.split(b"\n") if data else [], start=1):
        if number in skipped:
            continue
        text = raw.removeprefix(b"\xef\xbb\xbf" if number == 1 else b"").decode("utf-8").rstrip("\r\n")
        if text.strip():
            kept.append(text)
    return kept


def _histories(case: Case, lines: list) -> dict:
    """user -> items of the accepted lines of the main file (after a RecBole header)."""
    if case.fmt == "p5_sequential":
        maps = json.loads(case.docs[DATAMAPS].text_bytes())
        id2item = maps.get("id2item") or {str(v): k for k, v in maps["item2id"].items()}
        return {line.split()[0]: [id2item[t] for t in line.split()[1:]] for line in lines}
    if case.fmt == "amazon":
        objects = [_lenient_object(line.encode())[0] for line in lines]
        pairs = [(o["reviewerID"].strip(), o["asin"].strip()) for o in objects]
    else:
        columns = [cell.partition(":")[0].strip() for cell in lines[0].split("\t")]
        rows = [[cell.strip() for cell in line.split("\t")] for line in lines[1:]]
        pairs = [(row[columns.index("user_id")], row[columns.index("item_id")]) for row in rows]
    histories: dict[str, list[str]] = {}
    for user, item in pairs:
        histories.setdefault(user, []).append(item)
    return histories


def _main_file(case: Case) -> str:
    """The file the reader took the interactions from: the copy, when the main file is gone."""
    removed = case.docs[PRIMARY[case.fmt]].removed
    return SECOND[case.fmt] if removed and SECOND[case.fmt] in case.docs else PRIMARY[case.fmt]


def expected_counts(case: Case, skipped: set) -> dict:
    """users, items, interactions and users with sequence records, from the accepted lines."""
    name = _main_file(case)
    histories = _histories(case, _accepted(case.docs[name], {line for n, line in skipped if n == name}))
    repeats_kept = case.fmt == "p5_sequential"
    return {"users": len(histories), "items": len({i for h in histories.values() for i in h}),
            "interactions": sum(map(len, histories.values())),
            "sequence_users": sum(len(h if repeats_kept else set(h)) >= 3 for h in histories.values())}


def _judge_success(case, source, folder_path) -> Outcome:
    missing = [n for n in ("manifest.json", "users.jsonl", "items.jsonl", "tfds/p5_sequences")
               if not (folder_path / n).exists()]
    if missing:
        return Outcome("wrong", f"the prepared folder lacks {missing}")
    manifest = json.loads((folder_path / "manifest.json").read_text())
    try:
        skipped = _skipped(case, source, manifest["bad_line_examples"])
    except AssertionError as err:
        return Outcome("wrong", str(err))
    if len(skipped) != manifest["skipped_bad_lines"] or (skipped and not case.skip):
        return Outcome("wrong", f"{manifest['skipped_bad_lines']} skipped lines reported, {len(skipped)} named")
    try:
        expected = expected_counts(case, skipped)
    except Exception:  # noqa: BLE001 - a line the reader kept that no reader should keep
        return Outcome("wrong", f"accepted a line the reference cannot read:\n{traceback.format_exc()}")
    got = {key: manifest["counts"][key] for key in ("users", "items", "interactions")}
    got["sequence_users"] = manifest["splits"]["sequential"]["train"]
    tables = {key: len((folder_path / f"{key}.jsonl").read_text().splitlines()) for key in ("users", "items")}
    if got != expected or tables != {key: expected[key] for key in tables}:
        return Outcome("wrong", f"counts {got}, tables {tables}; expected {expected}")
    return Outcome("success", f"{got}, {len(skipped)} skipped")
