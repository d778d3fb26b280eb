"""The fuzz harness of `python -m p5_jax.data.prepare` with corrupted inputs in all three source formats.

Each case cuts a small valid input from the shipped raw data, corrupts it (numbers that no
record can hold, nesting, lone surrogates, bytes that are not UTF-8, wrong types, truncated or
repeated lines, conflicting ids, folders where files belong, ...) and runs the CLI in-process
into an out_dir that already holds a prepared dataset of the same name. The run must end in
one of three ways: an error naming the file and a line the corruption touched, an error naming
a file as a whole, or a complete dataset whose counts match the input lines it did not skip.
Never a traceback, never a partial folder, and the earlier dataset survives every failed run.

tests/fuzz_judge.py runs and judges a case; tests/test_fuzz_prepare.py runs a few hundred
cases, benchmarks/fuzz_prepare.py runs them by
the thousand.
"""
import ast
import collections
import dataclasses
import functools
import gzip
import json
import pathlib

from p5_jax.data.indexing import SCHEMES

RAW = pathlib.Path(__file__).resolve().parents[1] / "data" / "raw"
FORMATS = ("amazon", "p5_sequential", "recbole")
NAME = "fuzz"
GOOD = ("line_error", "file_error", "success")
PRIMARY = {"amazon": "reviews_fuzz.json", "p5_sequential": "sequential_data.txt", "recbole": "fz.inter"}
SECOND = {"amazon": "more_reviews.json", "p5_sequential": "sequential.txt", "recbole": "more.inter"}
HEADERED = ("fz.inter", "fz.item", "fz.user", "more.inter")
DATAMAPS = "datamaps.json"

# Replacement values, as they appear in the file.
JSON_TOKENS = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", str(10 ** 30), str(2 ** 63), str(-2 ** 63 - 1),
               "9" * 5000, "[" * 3000 + "]" * 3000, "[" * 200000, '"\\ud800"', '"a\\udfffb"', "{}", "[]", "null",
               "true", '""', '"  "', '"text"', '"5"', "3.5", "0", "6", "-1", "4", "5.0", "1e3", '{"a": [1]}',
               "1393545600", str(2 ** 63 - 1))
LITERAL_TOKENS = ("1e400", "-1e400", str(10 ** 30), "'\\ud800'", "{[1]: 2}", "[" * 300 + "]" * 300,
                  "-" * 100000 + "1", "None", "True", "b'x'", "{1, 2}", "(1,)", "1j", "'text'", "'$1e400'",
                  "'$" + "9" * 400 + "'", "3.5", "-1", "float('nan')")
ID_TOKENS = (b"9" * 5000, b"-1", b"0", b"1.5", b"nan", b"x", b"[" * 200000, "\u0663".encode(), b"99999999",
             b"007", b"1e3")
CELL_TOKENS = (b"nan", b"inf", b"-inf", b"Infinity", b"1e400", b"1" * 5000, b"1" + b"0" * 30, str(2 ** 63).encode(),
               b"-1", b"6", b"3.5", b"[" * 200000, b"", "\uff14".encode(), b"1_0", b" 7 ", b"a\tb", b"NaN", b"4.0",
               b"881250949.5", b"1e18")
DATAMAPS_TOKENS = ("NaN", "1e400", "{}", "[]", "null", "true", '""', '"\\ud800"', str(10 ** 30), "9" * 5000,
                   "[" * 3000 + "]" * 3000, '"B00NEW"', "7")
BAD_BYTES = (b"\xff", b"\xfe\xff", b"\xed\xa0\x80", b"\xc3", b"\x80", b"\xc0\xaf", b"\r", b"\x00", b"\xef\xbb\xbf")
JUNK_LINES = (b"[" * 200000, b"{[1]: 2}", b'{"a": NaN}', b'"\\ud800"', b"null", b"[]", b"   ", b"", b"\t\t",
              b"{" * 50 + b"}" * 50, b'{"reviewerID": "U", "asin": "I", "overall": Infinity, "unixReviewTime": 1}',
              b"1 2 3", b"7\t10\t4\t1000")


# ---- small valid inputs cut from the shipped data ----

def _join(lines) -> bytes:
    return b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)


def _amazon_base() -> dict:
    raw = gzip.decompress((RAW / "musical_instruments" / "reviews_Musical_Instruments_5.json.gz").read_bytes())
    lines = raw.splitlines()
    users = [json.loads(line)["reviewerID"] for line in lines]
    chosen = set([user for user, count in collections.Counter(users).items() if 5 <= count <= 6][:8])
    reviews = [line for line, user in zip(lines, users) if user in chosen]
    asins = list(dict.fromkeys(json.loads(line)["asin"] for line in reviews))[:6]
    meta = [repr({"asin": a, "title": f"Item {n} &amp; case", "price": 9.5 + n,
                  "categories": [["Musical Instruments", "Parts"]]}) if n % 2 == 0 else
            json.dumps({"asin": a, "title": f"Item {n}", "brand": "Acme", "price": f"${n}.99",
                        "category": ["Musical Instruments"]}) for n, a in enumerate(asins)]
    features = (RAW / "musical_instruments" / "features.txt").read_bytes().splitlines()[:40]
    return {PRIMARY["amazon"]: _join(reviews), "meta_fuzz.json": _join(meta), "features.txt": _join(features)}


def _render_datamaps(tables: dict) -> str:
    """One entry a line, so that line-level corruptions hit one entry."""
    sections = []
    for name, table in tables.items():
        entries = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in table.items())
        sections.append(f"{json.dumps(name)}: {{\n{entries}\n}}")
    return "{\n" + ",\n".join(sections) + "\n}\n"


def _p5_base() -> dict:
    lines = (RAW / "beauty" / "sequential_data.txt").read_text().splitlines()[:8]
    maps = json.loads((RAW / "beauty" / DATAMAPS).read_text())
    users = sorted({line.split()[0] for line in lines}, key=int)
    items = sorted({token for line in lines for token in line.split()[1:]}, key=int)
    tables = {"user2id": {maps["id2user"][u]: u for u in users}, "item2id": {maps["id2item"][i]: i for i in items},
              "id2user": {u: maps["id2user"][u] for u in users}, "id2item": {i: maps["id2item"][i] for i in items}}
    return {PRIMARY["p5_sequential"]: _join(lines), DATAMAPS: _render_datamaps(tables).encode()}


def _recbole_base() -> dict:
    folder = RAW / "ml100k"
    header, *rows = (folder / "ml-100k.inter").read_text().splitlines()
    kept: dict[str, list[str]] = {}  # the first 6 rows of each of the first 8 users
    for row in rows:
        user = row.split("\t")[0]
        if user in kept or len(kept) < 8:
            kept.setdefault(user, []).append(row)
    kept = {user: user_rows[:6] for user, user_rows in kept.items()}
    inter = [row for user_rows in kept.values() for row in user_rows]
    items = {row.split("\t")[1] for row in inter}

    def table(name, keys):
        first, *body = (folder / name).read_text().splitlines()
        return _join([first] + [row for row in body if row.split("\t")[0] in keys])
    return {"fz.inter": _join([header] + inter), "fz.item": table("ml-100k.item", items),
            "fz.user": table("ml-100k.user", set(kept))}


@functools.cache
def base_files(fmt: str) -> dict:
    """file name -> bytes of a small valid input in `fmt`."""
    return {"amazon": _amazon_base, "p5_sequential": _p5_base, "recbole": _recbole_base}[fmt]()


# ---- cases: files as lines, each line marked when a corruption wrote or moved it ----

@dataclasses.dataclass
class Doc:
    lines: list
    touched: list
    whole: bool = False        # corrupted as a whole: any line, or none, may be named
    folder: bool = False       # replaced by a folder of the same name
    removed: bool = False
    gzipped: bool = False
    gzip_cut: float | None = None
    final_newline: bool = True

    @classmethod
    def of(cls, data: bytes) -> "Doc":
        lines = data.split(b"\n")
        final = lines[-1] == b""
        if final:
            lines.pop()
        return cls(lines=lines, touched=[False] * len(lines), final_newline=final)

    def text_bytes(self) -> bytes:
        return b"\n".join(self.lines) + (b"\n" if self.final_newline and self.lines else b"")

    def file_bytes(self) -> bytes:
        data = self.text_bytes()
        if self.gzipped:
            data = gzip.compress(data, mtime=0)
            if self.gzip_cut is not None:
                data = data[:int(len(data) * self.gzip_cut)]
        return data

    def touched_at(self, line: int) -> bool:
        return self.whole or (1 <= line <= len(self.lines) and self.touched[line - 1])


@dataclasses.dataclass
class Case:
    fmt: str
    docs: dict
    skip: bool
    indexing: str
    applied: list = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        return f"{self.fmt} skip={self.skip} indexing={self.indexing}: {', '.join(self.applied)}"


def clean_case(fmt, *, skip=False) -> Case:
    """The uncorrupted input of `fmt`."""
    return Case(fmt=fmt, docs={n: Doc.of(d) for n, d in base_files(fmt).items()}, skip=skip, indexing="random")


def _content(doc: Doc, name: str) -> list:
    """Indices of non-blank lines, the header of a RecBole file left out."""
    indices = [i for i, line in enumerate(doc.lines) if line.strip()]
    return indices[1:] if name in HEADERED else indices


def _mark(case: Case, name: str, index: int | None = None) -> None:
    """Marks a written line (or, without an index, the whole file); datamaps edits reach every sequence."""
    doc = case.docs[name]
    if index is None or name == DATAMAPS:
        doc.whole = True
        if name == DATAMAPS:
            case.docs[PRIMARY["p5_sequential"]].whole = True
    else:
        doc.touched[index] = True


def _insert(case, name, index, line) -> None:
    doc = case.docs[name]
    doc.lines.insert(index, line)
    doc.touched.insert(index, False)
    _mark(case, name, index)


def _pick_line(case, rng, names=None):
    """(file name, line index) of a non-blank line, or None."""
    names = [n for n in (names or case.docs) if _content(case.docs[n], n) and not case.docs[n].folder]
    if not names:
        return None
    name = rng.choice(sorted(names))
    return name, rng.choice(_content(case.docs[name], name))


def _lenient_object(line: bytes):
    """A line as JSON or a Python literal; None when it is neither (the harness's own parse)."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(line.decode("utf-8")), parse is ast.literal_eval
        except Exception:  # noqa: BLE001 - any failure means "not this kind of line"
            continue
    return None, False


def _corrupt_object(line: bytes, rng) -> bytes:
    obj, literal = _lenient_object(line)
    if not isinstance(obj, dict):
        return rng.choice(JUNK_LINES)
    key = rng.choice(list(obj) + ["overall", "unixReviewTime", "reviewerID", "asin", "reviewText", "reviewerName",
                                  "price", "title", "categories"])
    token = rng.choice(LITERAL_TOKENS if literal else JSON_TOKENS)
    dump = repr if literal else json.dumps
    parts = [f"{dump(k)}: {token if k == key else dump(v)}" for k, v in obj.items()]
    if key not in obj:
        parts.append(f"{dump(key)}: {token}")
    return ("{" + ", ".join(parts) + "}").encode("utf-8", "backslashreplace")


def _corrupt_tokens(line: bytes, rng, *, separator, tokens) -> bytes:
    cells = line.split(separator)
    position = rng.randrange(len(cells))
    other = rng.choice(cells)
    cells[position] = rng.choice(tokens + (other, None))
    return separator.join(cell for cell in cells if cell is not None)


def corrupt_value(case, rng) -> None:
    picked = _pick_line(case, rng, [n for n in case.docs if n != "features.txt"])
    if picked is None:
        return
    name, index = picked
    line = case.docs[name].lines[index]
    if name in HEADERED:
        line = _corrupt_tokens(line, rng, separator=b"\t", tokens=CELL_TOKENS)
    elif name == PRIMARY["p5_sequential"]:
        line = _corrupt_tokens(line, rng, separator=b" ", tokens=ID_TOKENS)
    elif name == DATAMAPS:
        key, _, _ = line.partition(b": ")
        line = key + b": " + rng.choice(DATAMAPS_TOKENS).encode() + (b"," if line.endswith(b",") else b"")
    else:
        line = _corrupt_object(line, rng)
    case.docs[name].lines[index] = line
    _mark(case, name, index)


def invalid_bytes(case, rng) -> None:
    picked = _pick_line(case, rng)
    if picked is None:
        return
    name, index = picked
    line = case.docs[name].lines[index]
    cut = rng.randrange(len(line) + 1)
    case.docs[name].lines[index] = line[:cut] + rng.choice(BAD_BYTES) + line[cut:]
    _mark(case, name, index)


def truncate_line(case, rng) -> None:
    picked = _pick_line(case, rng)
    if picked is None:
        return
    name, index = picked
    line = case.docs[name].lines[index]
    case.docs[name].lines[index] = line[:rng.randrange(len(line))]
    _mark(case, name, index)


def truncate_file(case, rng) -> None:
    name = rng.choice(sorted(case.docs))
    doc = case.docs[name]
    data = doc.text_bytes()
    cut = Doc.of(data[:rng.randrange(len(data) + 1)])
    doc.lines, doc.touched, doc.final_newline = cut.lines, doc.touched[:len(cut.lines)], cut.final_newline
    if doc.lines:
        _mark(case, name, len(doc.lines) - 1)


def junk_line(case, rng) -> None:
    name = rng.choice(sorted(case.docs))
    noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))).replace(b"\n", b"")
    junk = rng.choice(JUNK_LINES + (noise,))
    _insert(case, name, rng.randrange(len(case.docs[name].lines) + 1), junk)


def duplicate_line(case, rng) -> None:
    picked = _pick_line(case, rng)
    if picked is None:
        return
    name, index = picked
    doc = case.docs[name]
    start = _content(doc, name)[0] if name in HEADERED and _content(doc, name) else 0
    target = rng.randrange(start, len(doc.lines) + 1)
    _mark(case, name, index)
    _insert(case, name, target, doc.lines[index])


def delete_line(case, rng) -> None:
    picked = _pick_line(case, rng)
    if picked is None:
        return
    name, index = picked
    doc = case.docs[name]
    del doc.lines[index], doc.touched[index]
    if name == DATAMAPS:
        _mark(case, name)


def _user_of(fmt: str, line: bytes):
    if fmt == "amazon":
        obj, _ = _lenient_object(line)
        return obj.get("reviewerID") if isinstance(obj, dict) else None
    return line.split(b"\t")[0]


def _header_index(doc: Doc):
    """Index of the first line a reader sees as non-blank."""
    return next((i for i, line in enumerate(doc.lines) if line.decode("utf-8", "replace").strip()), None)


def shorten(case, rng) -> None:
    """Leaves no user with 3 interactions: nothing to write."""
    name = PRIMARY[case.fmt]
    doc = case.docs[name]
    if case.fmt == "p5_sequential":
        doc.lines = [b" ".join(line.split()[:3]) for line in doc.lines]
    else:
        header = _header_index(doc) if name in HEADERED else None
        seen: dict[str, int] = {}
        kept: list[str] = []
        for index, line in enumerate(doc.lines):
            user = repr(_user_of(case.fmt, line))
            seen[user] = seen.get(user, 0) + 1
            if index == header or seen[user] <= 2:
                kept.append(line)
        doc.lines = kept
    doc.touched = [False] * len(doc.lines)
    _mark(case, name)


def folder(case, rng) -> None:
    name = rng.choice(sorted(case.docs))
    case.docs[name].folder = True
    _mark(case, name)


def remove_file(case, rng) -> None:
    name = rng.choice(sorted(case.docs))
    case.docs[name].removed = True
    _mark(case, name)


def second_file(case, rng) -> None:
    """A copy of the main file under another name the reader also looks for."""
    name = SECOND[case.fmt]
    case.docs[name] = Doc.of(case.docs[PRIMARY[case.fmt]].text_bytes())
    _mark(case, name)


def empty_file(case, rng) -> None:
    name = rng.choice(sorted(case.docs))
    case.docs[name].lines, case.docs[name].touched = [], []
    _mark(case, name)


def gzip_file(case, rng) -> None:
    doc = case.docs[PRIMARY["amazon"]]
    doc.gzipped = True
    if rng.random() < 0.5:
        doc.gzip_cut = rng.uniform(0.2, 0.95)
        _mark(case, PRIMARY["amazon"])


def _entries(doc: Doc, section: bytes) -> list:
    """Line indices of one datamaps section's entries."""
    start = doc.lines.index(b'"%s": {' % section) if b'"%s": {' % section in doc.lines else None
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(doc.lines)) if doc.lines[i].startswith(b"}")), len(doc.lines))
    return list(range(start + 1, end))


def datamaps_edit(case, rng) -> None:
    """Two ids for one item, one id given twice, a section dropped (the other direction remains)."""
    doc = case.docs[DATAMAPS]
    section = rng.choice((b"id2item", b"item2id", b"id2user", b"user2id"))
    entries = _entries(doc, section)
    if len(entries) < 2:
        return
    index, other = rng.sample(entries, 2)
    key, _, value = doc.lines[index].rstrip(b",").partition(b": ")
    _, _, other_value = doc.lines[other].rstrip(b",").partition(b": ")
    choice = rng.randrange(3)
    if choice == 0:  # two keys, one value
        doc.lines[index] = key + b": " + other_value + (b"," if doc.lines[index].endswith(b",") else b"")
    elif choice == 1:  # one key twice, two values
        doc.lines.insert(index, key + b": " + other_value + b",")
        doc.touched.insert(index, True)
    else:
        start, end = entries[0] - 1, entries[-1] + 2
        del doc.lines[start:end], doc.touched[start:end]
        if doc.lines[start - 1].endswith(b"},") and doc.lines[start] == b"}":
            doc.lines[start - 1] = b"}"
    _mark(case, DATAMAPS)


def header_edit(case, rng) -> None:
    name = rng.choice([n for n in HEADERED if n in case.docs])
    doc = case.docs[name]
    if not doc.lines or doc.folder:
        return
    cells = doc.lines[0].split(b"\t")
    position = rng.randrange(len(cells))
    column, _, kind = cells[position].partition(b":")
    edits = (column + b":int", column, cells[0], b"", column + b"2:" + kind, b"\xef\xbb\xbf" + cells[position],
             b"score:float" if column == b"rating" else column + b":token")
    cells[position] = rng.choice(edits)
    doc.lines[0] = b"\t".join(cells)
    _mark(case, name)


_COMMON = (corrupt_value,) * 4 + (invalid_bytes, truncate_line, truncate_file, junk_line, duplicate_line, delete_line,
                                 shorten, folder, empty_file, remove_file, second_file)
CORRUPTIONS = {"amazon": _COMMON + (gzip_file,), "p5_sequential": _COMMON + (datamaps_edit, datamaps_edit),
               "recbole": _COMMON + (header_edit,)}


def _key(name: str, line: bytes):
    """The id a line gives once per file (a sequence's user, an .item/.user row's id), or None."""
    if name == PRIMARY["p5_sequential"]:
        return line.split()[0] if line.split() else None
    return line.split(b"\t")[0].strip() if name in ("fz.item", "fz.user") else None


def _mark_shared_keys(case: Case) -> None:
    """A touched line that repeats another line's id makes that line a reported duplicate too."""
    for name, doc in case.docs.items():
        touched_keys = {_key(name, line) for line, touched in zip(doc.lines, doc.touched) if touched}
        doc.touched = [touched or _key(name, line) in touched_keys - {None}
                       for line, touched in zip(doc.lines, doc.touched)]


def make_case(fmt: str, rng) -> Case:
    """A corrupted input of `fmt`: one to three corruptions drawn with `rng` (a random.Random)."""
    case = clean_case(fmt, skip=rng.random() < 0.5)
    case.indexing = rng.choice(SCHEMES)
    for _ in range(rng.randint(1, 3)):
        corruption = rng.choice(CORRUPTIONS[fmt])
        corruption(case, rng)
        case.applied.append(corruption.__name__)
    _mark_shared_keys(case)
    return case
