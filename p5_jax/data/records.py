"""In-memory form of a source dataset, shared by every reader, and the prepared record fields."""
import dataclasses
import pathlib
from typing import NamedTuple

FIELD_NAMES = ("rating", "review_text", "summary", "item_title", "item_brand", "item_price",
               "timestamps", "user_demographics")

REVIEW_STRING_FIELDS = ("user_id", "user_desc", "item_id", "item_title", "item_brand", "item_price",
                        "review_text", "summary", "explanation", "feature")
SEQUENCE_STRING_FIELDS = ("user_id", "user_desc", "target")
SEQUENCE_LIST_FIELDS = ("history", "negatives", "interacted")
SPLITS = ("train", "validation", "test")


class Interaction(NamedTuple):
    """One user-item event. `order` is its position in the source, the tie-breaker for equal times.
    (A NamedTuple: a source holds one per interaction, built twice as fast and half the size of a
    frozen dataclass.)"""
    user: str
    item: str
    timestamp: int
    order: int
    rating: int | None = None
    review_text: str = ""
    summary: str = ""


@dataclasses.dataclass(frozen=True)
class ItemMeta:
    """What a source says about an item; "" where it says nothing. `category` is a path like
    "Toys & Games > Puzzles" (written to items.jsonl; no prompt reads it yet)."""
    title: str = ""
    brand: str = ""
    price: str = ""
    category: str = ""


@dataclasses.dataclass
class SourceDataset:
    """What a reader returns: raw ids throughout, plus what the source knows about them.

    `original_item_ids` maps raw item ids to the source's own numbering (the `original` indexing).
    """
    format: str
    interactions: list
    user_desc: dict
    item_meta: dict
    original_item_ids: dict
    fields: dict
    source_files: list
    lexicon: list = dataclasses.field(default_factory=list)
    skipped_bad_lines: int = 0
    bad_line_examples: list = dataclasses.field(default_factory=list)

    def users(self) -> list:
        """Raw user ids in order of first appearance."""
        return list(dict.fromkeys(i.user for i in self.interactions))

    def items(self) -> list:
        """Raw item ids, sorted: a universe whose order depends on no split or source order."""
        return sorted({i.item for i in self.interactions})


def empty_fields() -> dict:
    return {name: False for name in FIELD_NAMES}


def source_path(path) -> pathlib.Path:
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return path
