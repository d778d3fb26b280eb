"""Prepared records built shard by shard, never all at once.

A `RecordPlan` holds one unit per user (sequence records) or per review (review records) and a
`ShardBuilder`: how a unit becomes records, with the small context every unit shares. A shard is
a contiguous run of units, so a worker process or a Beam worker builds it alone. Records come in
the order the whole dataset gives them, each with an integer key (its unit's position) that sorts
them back into that order.
"""
import collections
import dataclasses
import functools
from collections.abc import Callable, Mapping

from p5_jax.data import records
from p5_jax.data.explanations import Explanation, FeatureLexicon, extract_explanation
from p5_jax.data.negatives import item_positions, sample_negative_positions
from p5_jax.data.splits import distinct

SHARD_UNITS = 1024  # users or reviews per shard
RECORDS = "records"  # the tally of every record; other tally keys are fields counted when non-empty


@dataclasses.dataclass(frozen=True)
class SequenceContext:
    items: list       # the sorted universe of raw item ids, where negatives are drawn from
    item_ids: dict    # raw item id -> item id
    seed: int
    num_negatives: int

    @functools.cached_property
    def positions(self) -> dict:
        """raw item id -> its position in `items`."""
        return item_positions(self.items)

    @functools.cached_property
    def ids_by_position(self) -> list:
        """The item id of each of `items`."""
        return [self.item_ids[item] for item in self.items]


def sequence_records(context: SequenceContext, user: tuple) -> tuple:
    """(split, record) for one user: (raw id, user id, user_desc, items in time order, LeaveOneOut)."""
    raw, user_id, user_desc, items, split = user
    ids, interacted = context.item_ids, distinct(items)
    negatives = sample_negative_positions(user=raw, interacted=list(map(context.positions.__getitem__, interacted)),
                                          num_items=len(context.items), seed=context.seed, count=context.num_negatives)
    common = {"user_id": user_id, "user_desc": user_desc,
              "negatives": list(map(context.ids_by_position.__getitem__, negatives)),
              "interacted": list(map(ids.__getitem__, interacted))}
    history = [ids[i] for i in split.train_history]
    return (("train", {**common, "history": history, "target": ""}),
            ("validation", {**common, "history": history, "target": ids[split.validation_target]}),
            ("test", {**common, "history": history + [ids[split.validation_target]],
                      "target": ids[split.test_target]}))


@dataclasses.dataclass(frozen=True)
class ReviewContext:
    lexicon: tuple  # feature words, most frequent first; empty: no explanations

    @functools.cached_property
    def feature_lexicon(self):
        return FeatureLexicon(self.lexicon) if self.lexicon else None


def review_records(context: ReviewContext, review: tuple) -> tuple:
    """(split, record) for one review: (split index, record without its explanation)."""
    label, row = review
    lexicon = context.feature_lexicon
    explanation = extract_explanation(text=row["review_text"], lexicon=lexicon) if lexicon else Explanation()
    return ((records.SPLITS[label], {**row, "explanation": explanation.sentence, "feature": explanation.feature}),)


@dataclasses.dataclass(frozen=True)
class Shard:
    first_key: int
    units: list


@dataclasses.dataclass(frozen=True)
class ShardBuilder:
    """What building any shard takes besides its units: small enough to send to every worker."""
    context: object
    build: Callable        # (context, unit) -> ((split, record), ...)
    counted_fields: tuple  # fields whose non-empty records are tallied per split

    def records(self, shard: Shard, counts: collections.Counter | None = None):
        """(split, key, record) for every record of `shard`, in order; each tallied into `counts`."""
        for offset, unit in enumerate(shard.units):
            for split, record in self.build(self.context, unit):
                if counts is not None:
                    tally(counts, split, record, self.counted_fields)
                yield split, shard.first_key + offset, record


@dataclasses.dataclass(frozen=True, eq=False)
class RecordPlan(Mapping):
    """One kind of records, built on demand; also a mapping split -> records (built anew per pass)."""
    kind: str
    builder: ShardBuilder
    num_units: int
    units: Callable        # (start, stop) -> the units in [start, stop)
    split_sizes: dict      # split -> number of records, known before any is built

    @property
    def num_shards(self) -> int:
        return -(-self.num_units // SHARD_UNITS)

    def shard(self, index: int) -> Shard:
        start = index * SHARD_UNITS
        return Shard(first_key=start, units=self.units(start, min(start + SHARD_UNITS, self.num_units)))

    def __getitem__(self, split: str):
        if split not in records.SPLITS:
            raise KeyError(split)
        return _SplitRecords(self, split)

    def __iter__(self):
        return iter(records.SPLITS)

    def __len__(self) -> int:
        return len(records.SPLITS)


@dataclasses.dataclass(frozen=True)
class _SplitRecords:
    plan: RecordPlan
    split: str

    def __iter__(self):
        for index in range(self.plan.num_shards):
            yield from (record for split, _, record in self.plan.builder.records(self.plan.shard(index))
                        if split == self.split)


def tally(counts: collections.Counter, split: str, record: dict, counted_fields: tuple) -> None:
    """Counts one record of `split`, and each of `counted_fields` it has non-empty."""
    counts[split, RECORDS] += 1
    for field in counted_fields:
        counts[split, field] += bool(record[field])
