"""Amazon 2014 reviews (McAuley format: one JSON object a line, gzipped or not) and metadata."""
from p5_jax.data import records
from p5_jax.data.errors import BadLinePolicy, DataError
from p5_jax.data.fields import RATING, TIMESTAMP, optional_str, parse_object, required_str, whole_number
from p5_jax.data.line_io import numbered_lines
from p5_jax.data.readers_meta import metadata_fields, read_item_metadata  # noqa: F401  (re-exported)
from p5_jax.data.user_desc import amazon_user_desc

LEXICON_FILE = "features.txt"


def find_files(path) -> tuple:
    """(reviews file, metadata file or None, lexicon file or None) for a file or a folder."""
    path = records.source_path(path)
    if path.is_file():
        return path, None, None
    # Folders with such names stay in, so that a misplaced folder is named rather than ignored.
    candidates = sorted(p for p in path.iterdir() if p.name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz")))
    reviews = [p for p in candidates if not p.name.startswith("meta")]
    meta = [p for p in candidates if p.name.startswith("meta")]
    if len(reviews) != 1:
        raise DataError(f"expected exactly one reviews file (*.json[.gz]) in the folder, found "
                        f"{[p.name for p in reviews]}", path=path)
    lexicon = path / LEXICON_FILE
    return reviews[0], (meta[0] if meta else None), (lexicon if lexicon.exists() else None)


def _number(obj, field, bounds, *, path, line) -> int:
    if field not in obj:
        raise DataError("missing field", path=path, line=line, field=field)
    return whole_number(obj[field], bounds, path=path, line=line, field=field)


def _parse_review(text, *, path, line, order):
    obj = parse_object(text, path=path, line=line)
    interaction = records.Interaction(
        user=required_str(obj, "reviewerID", path=path, line=line),
        item=required_str(obj, "asin", path=path, line=line),
        timestamp=_number(obj, "unixReviewTime", TIMESTAMP, path=path, line=line),
        order=order, rating=_number(obj, "overall", RATING, path=path, line=line),
        review_text=optional_str(obj, "reviewText", path=path, line=line),
        summary=optional_str(obj, "summary", path=path, line=line))
    return interaction, optional_str(obj, "reviewerName", path=path, line=line)


def read_metadata(path, *, policy: BadLinePolicy, items=None) -> dict:
    """asin -> ItemMeta(title, brand, price, category) from a metadata file (see readers_meta)."""
    return read_item_metadata(path, policy=policy, items=items)


def read_lexicon(path, policy: BadLinePolicy | None = None) -> list:
    """Feature words, one a line, most frequent first."""
    words = [line.strip().lower() for _, line in numbered_lines(path, policy)]
    return list(dict.fromkeys(w for w in words if w))


def read_amazon(*, path, policy: BadLinePolicy) -> records.SourceDataset:
    reviews_path, meta_path, lexicon_path = find_files(path)
    interactions: list[records.Interaction] = []
    names: dict[str, str] = {}
    for line, text in numbered_lines(reviews_path, policy):
        try:
            interaction, name = _parse_review(text, path=reviews_path, line=line, order=len(interactions))
        except DataError as err:
            policy.handle(err)
            continue
        interactions.append(interaction)
        if name and interaction.user not in names:
            names[interaction.user] = name
    if not interactions:
        raise policy.nothing_valid("reviews", reviews_path)
    item_meta = (read_metadata(meta_path, policy=policy, items={i.item for i in interactions})
                 if meta_path else {})
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
        lexicon=read_lexicon(lexicon_path, policy) if lexicon_path else [])

