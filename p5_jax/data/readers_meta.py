"""Item metadata in McAuley's Amazon format (`meta_<Category>.json[.gz]`), and attaching it to a
source read in any format whose item ids are ASINs (amazon reviews; p5_sequential, whose
datamaps.json id2item holds the ASINs).

One object a line, gzipped or not: Python literals in the 2014 files
(`{'asin': 'B000...', 'title': ..., 'price': 12.5, 'brand': ..., 'categories': [[...]]}`), strict
JSON in the 2018 files (`"category": [...]`, prices as text like "$12.99"). Every field but
`asin` may be missing. Titles and brands lose HTML entities (`&amp;` -> `&`) and runs of
whitespace; numeric prices are written with two decimals ("12.50"); a price text that is no
amount (the 2018 files hold page-layout text in some) counts as no price. The category is the
first category path, joined by " > ".

When the wanted items are known, a line whose `asin` is none of them is skipped before it is
parsed (a category file lists hundreds of thousands of items, a 5-core set a few thousand), so
bad lines are reported only among the lines that are read.
"""
import dataclasses
import html
import math
import re

from p5_jax.data import records
from p5_jax.data.errors import BadLinePolicy, DataError, shown
from p5_jax.data.fields import checked_text, optional_str, parse_object, required_str
from p5_jax.data.line_io import numbered_lines

# Every "asin": "..." (or 'asin': '...') pair of a line, found without parsing it.
_ASIN_PAIR = re.compile(r"""["']asin["']\s*:\s*["']([^"']*)["']""")
_AMOUNT = re.compile(r"^\$?\s*(\d[\d,]*(?:\.\d+)?)$")
_META_NAMES = tuple(f.name for f in dataclasses.fields(records.ItemMeta))


def _amount(text: str) -> str:
    match = _AMOUNT.match(text.strip())
    if not match:
        return ""
    amount = float(match.group(1).replace(",", ""))
    return f"{amount:.2f}" if math.isfinite(amount) else ""  # hundreds of digits are no amount


def price_text(value, *, path, line) -> str:
    """12.5 -> "12.50"; "$1,299.00" -> "1299.00"; "$5.99 - $9.99" -> "5.99 - 9.99"; other text -> ""."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"expected a number or string, got {shown(value)}", path=path, line=line, field="price")
    if isinstance(value, str):
        amounts = [_amount(part) for part in value.split(" - ")]
        return " - ".join(amounts) if all(amounts) else ""
    try:
        amount = float(value)
    except OverflowError:  # an integer too large for a float
        amount = math.inf
    if not (math.isfinite(amount) and amount >= 0):
        raise DataError(f"expected a finite price of 0 or more, got {shown(value)}", path=path, line=line,
                        field="price")
    return f"{amount:.2f}"


def category_text(obj, *, path, line) -> str:
    """The first category path: 2014 `categories` [["Toys & Games", "Puzzles"], ...] or 2018
    `category` ["Toys & Games", "Puzzles"] -> "Toys & Games > Puzzles"."""
    field = "categories" if "categories" in obj else "category"
    value = obj.get(field)
    if value is None or value == []:
        return ""
    paths = value if field == "categories" else [value]
    if not isinstance(paths, list) or not all(
            isinstance(p, list) and all(isinstance(c, str) for c in p) for p in paths):
        expected = "a list of lists of strings" if field == "categories" else "a list of strings"
        raise DataError(f"expected {expected}, got {shown(value)}", path=path, line=line, field=field)
    text = " > ".join(" ".join(html.unescape(c).split()) for c in paths[0] if c.strip())
    return checked_text(text, path=path, line=line, field=field)


def _text(obj, field, *, path, line) -> str:
    return " ".join(html.unescape(optional_str(obj, field, path=path, line=line)).split())


def parse_item(text, *, path, line) -> tuple:
    """(asin, ItemMeta) of one metadata line."""
    obj = parse_object(text, path=path, line=line)
    asin = required_str(obj, "asin", path=path, line=line)
    return asin, records.ItemMeta(
        title=_text(obj, "title", path=path, line=line),
        brand=_text(obj, "brand", path=path, line=line),
        price=price_text(obj.get("price"), path=path, line=line),
        category=category_text(obj, path=path, line=line))


def read_item_metadata(path, *, policy: BadLinePolicy, items=None) -> dict:
    """asin -> ItemMeta from a metadata file; only the asins in `items` when it is given.

    The first line of an asin wins over later ones (the 2018 files repeat some items).
    """
    wanted = None if items is None else set(items)
    meta = {}
    for line, text in numbered_lines(path, policy):
        if wanted is not None:
            named = _ASIN_PAIR.findall(text)
            if named and not any(asin.strip() in wanted for asin in named):
                continue
        try:
            asin, item = parse_item(text, path=path, line=line)
        except DataError as err:
            policy.handle(err)
            continue
        if (wanted is None or asin in wanted) and asin not in meta:
            meta[asin] = item
    return meta


def metadata_fields(item_meta, items) -> dict:
    """Which item metadata fields any of `items` has."""
    known = [item_meta[i] for i in items if i in item_meta]
    return {"item_title": any(m.title for m in known), "item_brand": any(m.brand for m in known),
            "item_price": any(m.price for m in known)}


def _merged(old: records.ItemMeta | None, new: records.ItemMeta) -> records.ItemMeta:
    """Field by field: the new non-empty values win, the old ones fill the gaps."""
    if old is None:
        return new
    return records.ItemMeta(**{name: getattr(new, name) or getattr(old, name)
                               for name in _META_NAMES})


def attach_metadata(source: records.SourceDataset, path, *, policy: BadLinePolicy) -> dict:
    """Reads the metadata of `source`'s items from `path` into `source.item_meta` (over what the
    source already knew, field by field), marks the metadata fields it now has in
    `source.fields` and lists the file in `source.source_files`. Returns `metadata_coverage`.

    Items are matched by raw id, the ASIN in the amazon and p5_sequential formats; a file that
    matches none of them is an error (another category's file, or a source without ASINs).
    """
    path = records.source_path(path)
    items = source.items()
    found = read_item_metadata(path, policy=policy, items=items)
    if not found:
        examples = ", ".join(items[:3])
        raise DataError(f"none of the source's {len(items):,} items is in this metadata file "
                        f"(source item ids: {examples}, ...); the ids must be the ASINs of the "
                        "same Amazon category", path=path)
    for asin, item in found.items():
        source.item_meta[asin] = _merged(source.item_meta.get(asin), item)
    for field, present in metadata_fields(source.item_meta, items).items():
        source.fields[field] = source.fields.get(field, False) or present
    source.source_files.append(path)
    return metadata_coverage(source)


def metadata_coverage(source: records.SourceDataset) -> dict:
    """How many of the source's items have a title, brand, price, category (for the manifest)."""
    items = source.items()
    known = [source.item_meta[i] for i in items if i in source.item_meta]
    counts = {"items": len(items)}
    for name in _META_NAMES:
        counts[f"with_{name}"] = sum(bool(getattr(m, name)) for m in known)
    return counts
