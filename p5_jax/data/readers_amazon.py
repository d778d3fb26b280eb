"""Amazon 2014 reviews (McAuley format: one JSON object a line, gzipped or not) and metadata."""
import ast
import json

from p5_jax.data import records
from p5_jax.data.errors import BadLinePolicy, DataError
from p5_jax.data.line_io import numbered_lines
from p5_jax.data.user_desc import amazon_user_desc

LEXICON_FILE = "features.txt"


def find_files(path) -> tuple:
    """(reviews file, metadata file or None, lexicon file or None) for a file or a folder."""
    path = records.source_path(path)
    if path.is_file():
        return path, None, None
    candidates = sorted(p for p in path.iterdir()
                        if p.is_file() and p.name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz")))
    reviews = [p for p in candidates if not p.name.startswith("meta")]
    meta = [p for p in candidates if p.name.startswith("meta")]
    if len(reviews) != 1:
        raise DataError(f"expected exactly one reviews file (*.json[.gz]) in the folder, found "
                        f"{[p.name for p in reviews]}", path=path)
    lexicon = path / LEXICON_FILE
    return reviews[0], (meta[0] if meta else None), (lexicon if lexicon.exists() else None)


def _parse_object(text, *, path, line):
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as json_err:
        try:  # the 2014 metadata files are Python literals, not strict JSON
            obj = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(f"malformed JSON ({json_err.msg})", path=path, line=line) from None
    if not isinstance(obj, dict):
        raise DataError("expected a JSON object", path=path, line=line)
    return obj


def _required_str(obj, field, *, path, line):
    if field not in obj:
        raise DataError("missing field", path=path, line=line, field=field)
    value = obj[field]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"expected a non-empty string, got {value!r}", path=path, line=line, field=field)
    return value.strip()


def _optional_str(obj, field, *, path, line):
    value = obj.get(field, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {value!r}", path=path, line=line, field=field)
    return " ".join(value.split())


def _integer(obj, field, *, path, line):
    if field not in obj:
        raise DataError("missing field", path=path, line=line, field=field)
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise DataError(f"expected a whole number, got {value!r}", path=path, line=line, field=field)
    return int(value)


def _parse_review(text, *, path, line, order):
    obj = _parse_object(text, path=path, line=line)
    rating = _integer(obj, "overall", path=path, line=line)
    if not 1 <= rating <= 5:
        raise DataError(f"rating {rating} is outside 1-5", path=path, line=line, field="overall")
    interaction = records.Interaction(
        user=_required_str(obj, "reviewerID", path=path, line=line),
        item=_required_str(obj, "asin", path=path, line=line),
        timestamp=_integer(obj, "unixReviewTime", path=path, line=line),
        order=order, rating=rating,
        review_text=_optional_str(obj, "reviewText", path=path, line=line),
        summary=_optional_str(obj, "summary", path=path, line=line))
    return interaction, _optional_str(obj, "reviewerName", path=path, line=line)


def _price_text(value, *, path, line):
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"expected a number or string, got {value!r}", path=path, line=line, field="price")
    return f"{value:.2f}" if isinstance(value, (int, float)) else value.strip()


def read_metadata(path, *, policy: BadLinePolicy) -> dict:
    """asin -> ItemMeta(title, brand, price) from a metadata file."""
    meta = {}
    for line, text in numbered_lines(path):
        try:
            obj = _parse_object(text, path=path, line=line)
            asin = _required_str(obj, "asin", path=path, line=line)
            meta[asin] = records.ItemMeta(
                title=_optional_str(obj, "title", path=path, line=line),
                brand=_optional_str(obj, "brand", path=path, line=line),
                price=_price_text(obj.get("price"), path=path, line=line))
        except DataError as err:
            policy.handle(err)
    return meta


def read_lexicon(path) -> list:
    """Feature words, one a line, most frequent first."""
    words = [line.strip().lower() for _, line in numbered_lines(path)]
    return list(dict.fromkeys(w for w in words if w))


def read_amazon(*, path, policy: BadLinePolicy) -> records.SourceDataset:
    reviews_path, meta_path, lexicon_path = find_files(path)
    interactions, names = [], {}
    for line, text in numbered_lines(reviews_path):
        try:
            interaction, name = _parse_review(text, path=reviews_path, line=line, order=len(interactions))
        except DataError as err:
            policy.handle(err)
            continue
        interactions.append(interaction)
        if name and interaction.user not in names:
            names[interaction.user] = name
    if not interactions:
        raise DataError("no valid reviews", path=reviews_path)
    item_meta = read_metadata(meta_path, policy=policy) if meta_path else {}
    fields = records.empty_fields()
    fields.update(rating=True, timestamps=True,
                  review_text=any(i.review_text for i in interactions),
                  summary=any(i.summary for i in interactions))
    fields.update(metadata_fields(item_meta, {i.item for i in interactions}))
    users = dict.fromkeys(i.user for i in interactions)
    return records.SourceDataset(
        format="amazon", interactions=interactions,
        user_desc={u: amazon_user_desc(reviewer_name=names.get(u, ""), reviewer_id=u) for u in users},
        item_meta=item_meta, original_item_ids={}, fields=fields,
        source_files=[p for p in (reviews_path, meta_path, lexicon_path) if p],
        lexicon=read_lexicon(lexicon_path) if lexicon_path else [])


def metadata_fields(item_meta, items) -> dict:
    """Which item metadata fields any of `items` has."""
    known = [item_meta[i] for i in items if i in item_meta]
    return {"item_title": any(m.title for m in known), "item_brand": any(m.brand for m in known),
            "item_price": any(m.price for m in known)}
