"""RecBole atomic files: tab-separated `.inter`, `.item`, `.user` with a `name:type` header."""
from p5_jax.data import records
from p5_jax.data.errors import BadLinePolicy, DataError
from p5_jax.data.line_io import numbered_lines
from p5_jax.data.readers_amazon import metadata_fields
from p5_jax.data.user_desc import demographics_user_desc

TYPES = ("token", "token_seq", "float", "float_seq")
TITLE_COLUMNS = ("title", "movie_title", "item_title")


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


def _parse_header(text, *, path) -> list:
    columns = []
    for cell in text.split("\t"):
        name, sep, kind = cell.strip().partition(":")
        if not sep or kind not in TYPES or not name:
            raise DataError(f"header cell {cell!r} is not name:type with type in {TYPES}", path=path, line=1)
        columns.append((name, kind))
    return columns


def read_table(path, *, policy: BadLinePolicy, required=()) -> list:
    """Rows as dicts (line number under '__line__'); float columns are checked to parse."""
    lines = numbered_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError("empty file", path=path)
    columns = _parse_header(first[1], path=path)
    names = [name for name, _ in columns]
    for name in required:
        if name not in names:
            raise DataError("missing column in header", path=path, line=first[0], field=name)
    rows = []
    for line, text in lines:
        try:
            rows.append(_parse_row(text, columns, path=path, line=line))
        except DataError as err:
            policy.handle(err)
    return rows


def _parse_row(text, columns, *, path, line) -> dict:
    cells = text.split("\t")
    if len(cells) != len(columns):
        raise DataError(f"expected {len(columns)} tab-separated columns, got {len(cells)}", path=path, line=line)
    row = {"__line__": line}
    for (name, kind), cell in zip(columns, cells):
        cell = cell.strip()
        if kind == "float" and cell:
            try:
                float(cell)
            except ValueError:
                raise DataError(f"expected a number, got {cell!r}", path=path, line=line, field=name) from None
        row[name] = cell
    return row


def _whole_number(row, field, *, path):
    value = float(row[field]) if row[field] else None
    if value is None or value != int(value):
        raise DataError(f"expected a whole number, got {row[field]!r}", path=path, line=row["__line__"], field=field)
    return int(value)


def _interaction(row, *, path, order, has_rating, has_time):
    for field in ("user_id", "item_id"):
        if not row[field]:
            raise DataError("empty id", path=path, line=row["__line__"], field=field)
    rating = _whole_number(row, "rating", path=path) if has_rating else None
    if rating is not None and not 1 <= rating <= 5:
        raise DataError(f"rating {rating} is outside 1-5", path=path, line=row["__line__"], field="rating")
    timestamp = _whole_number(row, "timestamp", path=path) if has_time else order
    return records.Interaction(user=row["user_id"], item=row["item_id"], timestamp=timestamp,
                               order=order, rating=rating)


def _read_interactions(path, *, policy):
    rows = read_table(path, policy=policy, required=("user_id", "item_id"))
    has_rating = bool(rows) and "rating" in rows[0]
    has_time = bool(rows) and "timestamp" in rows[0]
    interactions = []
    for row in rows:
        try:
            interactions.append(_interaction(row, path=path, order=len(interactions),
                                             has_rating=has_rating, has_time=has_time))
        except DataError as err:
            policy.handle(err)
    if not interactions:
        raise DataError("no valid interactions", path=path)
    return interactions, has_rating, has_time


def _item_meta(path, *, policy) -> dict:
    meta = {}
    for row in read_table(path, policy=policy, required=("item_id",)):
        title = next((row[c] for c in TITLE_COLUMNS if c in row), "")
        meta[row["item_id"]] = records.ItemMeta(title=title, brand=row.get("brand", ""),
                                                price=row.get("price", ""))
    return meta


def _user_desc(path, users, *, policy) -> tuple:
    rows = read_table(path, policy=policy, required=("user_id",)) if path else []
    by_user = {row["user_id"]: row for row in rows}
    descs = {}
    for user in users:
        row = by_user.get(user, {})
        descs[user] = demographics_user_desc(age=row.get("age", ""), gender=row.get("gender", ""),
                                             occupation=row.get("occupation", ""), fallback=user)
    demographic = any(k in row for row in rows for k in ("age", "gender", "occupation"))
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
