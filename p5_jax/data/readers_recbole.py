"""RecBole atomic files: tab-separated `.inter`, `.item`, `.user` with a `name:type` header."""
import contextlib
import dataclasses

from p5_jax.data import records
from p5_jax.data.errors import BadLinePolicy, DataError, shown
from p5_jax.data.fields import RATING, TIMESTAMP, finite_number, whole_number
from p5_jax.data.line_io import numbered_lines
from p5_jax.data.readers_meta import metadata_fields
from p5_jax.data.user_desc import demographics_user_desc

TYPES = ("token", "token_seq", "float", "float_seq")
TITLE_COLUMNS = ("title", "movie_title", "item_title")


@dataclasses.dataclass(frozen=True)
class Row:
    line: int
    cells: dict  # column name -> text, stripped


def find_files(path) -> dict:
    """{'inter': path, 'item': path or None, 'user': path or None}."""
    path = records.source_path(path)
    folder = path.parent if path.is_file() else path
    found = {kind: sorted(folder.glob(f"*.{kind}")) for kind in ("inter", "item", "user")}
    if path.is_file():
        found["inter"] = [path]
    if len(found["inter"]) != 1:
        raise DataError(f"expected exactly one .inter file, found {[p.name for p in found['inter']]}",
                        path=folder)
    return {kind: (paths[0] if paths else None) for kind, paths in found.items()}


def _parse_header(text, *, path, line) -> list:
    columns = {}
    for cell in text.split("\t"):
        name, sep, kind = cell.strip().partition(":")
        if not sep or kind not in TYPES or not name:
            raise DataError(f"header cell {shown(cell)} is not name:type with type in {TYPES}", path=path, line=line)
        if name in columns:
            raise DataError("column named twice", path=path, line=line, field=name)
        columns[name] = kind
    return list(columns.items())


def _header(path, required) -> tuple:
    """(line number, [(name, type)]) of the first non-blank line, read strictly: never skipped."""
    with contextlib.closing(numbered_lines(path)) as lines:
        first = next(lines, None)
    if first is None:
        raise DataError("empty file", path=path)
    line, text = first
    columns = _parse_header(text, path=path, line=line)
    for name in required:
        if name not in dict(columns):
            raise DataError("missing column in header", path=path, line=line, field=name)
    return line, columns


def read_table(path, *, policy: BadLinePolicy, required=()) -> tuple:
    """(column names, rows); number columns are checked to be finite numbers."""
    header_line, columns = _header(path, required)
    rows = []
    for line, text in numbered_lines(path, policy):
        if line <= header_line:
            continue
        try:
            rows.append(_parse_row(text, columns, path=path, line=line))
        except DataError as err:
            policy.handle(err)
    return [name for name, _ in columns], rows


def _parse_row(text, columns, *, path, line) -> Row:
    cells = text.split("\t")
    if len(cells) != len(columns):
        raise DataError(f"expected {len(columns)} tab-separated columns, got {len(cells)}", path=path, line=line)
    row = {}
    for (name, kind), cell in zip(columns, cells):
        cell = cell.strip()
        numbers = cell.split() if kind == "float_seq" else [cell] if kind == "float" and cell else []
        for number in numbers:
            finite_number(number, path=path, line=line, field=name)
        row[name] = cell
    return Row(line=line, cells=row)


def _interaction(row, *, path, order, has_rating, has_time):
    where = dict(path=path, line=row.line)
    for field in ("user_id", "item_id"):
        if not row.cells[field]:
            raise DataError("empty id", **where, field=field)
    rating = (whole_number(row.cells["rating"], RATING, **where, field="rating", from_text=True)
              if has_rating else None)
    timestamp = (whole_number(row.cells["timestamp"], TIMESTAMP, **where, field="timestamp", from_text=True)
                 if has_time else order)
    return records.Interaction(user=row.cells["user_id"], item=row.cells["item_id"], timestamp=timestamp,
                               order=order, rating=rating)


def _read_interactions(path, *, policy):
    names, rows = read_table(path, policy=policy, required=("user_id", "item_id"))
    has_rating, has_time = "rating" in names, "timestamp" in names
    interactions = []
    for row in rows:
        try:
            interactions.append(_interaction(row, path=path, order=len(interactions),
                                             has_rating=has_rating, has_time=has_time))
        except DataError as err:
            policy.handle(err)
    if not interactions:
        raise policy.nothing_valid("interactions", path)
    return interactions, has_rating, has_time


def _unique_rows(path, key, *, policy) -> tuple:
    """(column names, key -> row) of an .item or .user file; a key given on two lines is a bad line."""
    names, rows = read_table(path, policy=policy, required=(key,))
    by_key: dict[str, Row] = {}
    for row in rows:
        first = by_key.setdefault(row.cells[key], row)
        if first is not row:
            policy.handle(DataError(f"{key} {shown(row.cells[key])} is already given on line {first.line}",
                                    path=path, line=row.line, field=key))
    return names, {k: row.cells for k, row in by_key.items()}


def _item_meta(path, *, policy) -> dict:
    _, rows = _unique_rows(path, "item_id", policy=policy)
    meta = {}
    for item, row in rows.items():
        title = next((row[c] for c in TITLE_COLUMNS if c in row), "")
        meta[item] = records.ItemMeta(title=title, brand=row.get("brand", ""), price=row.get("price", ""))
    return meta


def _user_desc(path, users, *, policy) -> tuple:
    names, by_user = _unique_rows(path, "user_id", policy=policy) if path else ([], {})
    descs = {}
    for user in users:
        row = by_user.get(user, {})
        descs[user] = demographics_user_desc(age=row.get("age", ""), gender=row.get("gender", ""),
                                             occupation=row.get("occupation", ""), fallback=user)
    demographic = bool(by_user) and any(k in names for k in ("age", "gender", "occupation"))
    return descs, demographic


def read_recbole(*, path, policy: BadLinePolicy) -> records.SourceDataset:
    files = find_files(path)
    interactions, has_rating, has_time = _read_interactions(files["inter"], policy=policy)
    item_meta = _item_meta(files["item"], policy=policy) if files["item"] else {}
    users = list(dict.fromkeys(i.user for i in interactions))
    descs, demographic = _user_desc(files["user"], users, policy=policy)
    fields = records.empty_fields()
    fields.update(rating=has_rating, timestamps=has_time, user_demographics=demographic)
    fields.update(metadata_fields(item_meta, {i.item for i in interactions}))
    return records.SourceDataset(
        format="recbole", interactions=interactions, user_desc=descs, item_meta=item_meta,
        original_item_ids={i.item: i.item for i in interactions}, fields=fields,
        source_files=[p for p in files.values() if p])
