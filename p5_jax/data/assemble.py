"""Turns a source dataset into the prepared tables, the plans of its records and their statistics.

Every decision over the whole dataset (ids, leave-one-out splits, review splits) is taken here;
the records themselves are built later, shard by shard, as they are written (record_shards.py).
"""
import dataclasses
import functools
from collections.abc import Iterable

from p5_jax import families
from p5_jax.data import records
from p5_jax.data.errors import DataError
from p5_jax.data.indexing import index_items
from p5_jax.data.negatives import NUM_NEGATIVES, check_negatives
from p5_jax.data.record_shards import (RECORDS, RecordPlan, ReviewContext, SequenceContext, ShardBuilder,
                                       review_records, sequence_records)
from p5_jax.data.splits import (MIN_SEQUENCE_LENGTH, default_dedupe, held_out_pairs, held_out_pairs_in_training,
                                leave_one_out_all, split_reviews, user_sequences)


@dataclasses.dataclass
class PreparedData:
    users: Iterable[dict]       # dicts: user_id, raw_id, user_desc (read once, when written)
    items: list                 # dicts: item_id, raw_id, title, brand, price
    reviews: RecordPlan | None  # None without ratings
    sequences: RecordPlan
    stats: dict                 # all but what only the built records tell: see `final_stats`
    explainable_reviews: int | None  # reviews with text, where the lexicon can find explanations

    def plans(self) -> dict:
        """kind -> RecordPlan, for the kinds this dataset has."""
        return {plan.kind: plan for plan in (self.sequences, self.reviews) if plan is not None}

    def final_stats(self, written: dict) -> dict:
        """`stats` completed from the tallies (kind -> Counter, record_shards.tally) of the written
        records: explanations found and each family's split sizes."""
        explained = (sum(written["reviews"][split, "explanation"] for split in records.SPLITS)
                     if self.reviews is not None else 0)
        return {**self.stats, "counts": {**self.stats["counts"], "explanations": explained},
                "explanation_coverage": explained / self.explainable_reviews if self.explainable_reviews else None,
                "splits": _split_sizes(written)}


def _require_sequences(sequences, splits) -> None:
    """Every prepared dataset has sequence records; say why there are none (the source file is
    named by the caller)."""
    if splits:
        return
    longest = max(map(len, sequences.items_by_user.values()), default=0)
    repeats = f" after dropping {sequences.repeats:,} repeats" if sequences.duplicates_dropped else ""
    raise DataError(f"nothing to write: no user has {MIN_SEQUENCE_LENGTH} or more interactions "
                    f"({len(sequences.items_by_user):,} users, longest history {longest}{repeats})")


def _user_ids(source) -> dict:
    return {raw: str(number) for number, raw in enumerate(source.users(), start=1)}


def _item_rows(items, item_ids, item_meta):
    meta_fields = [field.name for field in dataclasses.fields(records.ItemMeta)]  # strings: no deep copy needed
    empty = records.ItemMeta()
    return ({"item_id": item_ids[raw], "raw_id": raw, **_meta_dict(item_meta.get(raw, empty), meta_fields)}
            for raw in items)


def _meta_dict(meta, names: list) -> dict:
    """`dataclasses.asdict(meta)` for an ItemMeta, whose fields are strings."""
    return {name: getattr(meta, name) for name in names}


def _counted_fields(kind: str) -> tuple:
    """The review fields some family of `kind` needs non-empty, tallied as records are written."""
    return tuple(sorted({f.needs_text for f in families.FAMILIES if f.records == kind and f.needs_text}))


def _review_units(source, labels, user_ids, item_ids, start: int, stop: int) -> list:
    """(split index, record without its explanation) for reviews [start, stop)."""
    units = []
    for position in range(start, stop):
        interaction = source.interactions[position]
        meta = source.item_meta.get(interaction.item, records.ItemMeta())
        units.append((int(labels[position]), {
            "user_id": user_ids[interaction.user], "user_desc": source.user_desc[interaction.user],
            "item_id": item_ids[interaction.item], "item_title": meta.title, "item_brand": meta.brand,
            "item_price": meta.price, "rating": interaction.rating, "review_text": interaction.review_text,
            "summary": interaction.summary, "timestamp": interaction.timestamp}))
    return units


def _review_plan(source, labels, *, user_ids, item_ids) -> RecordPlan:
    lexicon = tuple(source.lexicon) if source.fields["review_text"] else ()
    builder = ShardBuilder(context=ReviewContext(lexicon=lexicon), build=review_records,
                           counted_fields=_counted_fields("reviews"))
    return RecordPlan(kind="reviews", builder=builder, num_units=len(labels),
                      units=functools.partial(_review_units, source, labels, user_ids, item_ids),
                      split_sizes={split: int((labels == label).sum()) for label, split in enumerate(records.SPLITS)})


def _sequence_plan(source, splits, *, items_by_user, user_ids, context: SequenceContext) -> RecordPlan:
    for user in splits:  # fail before anything is written
        check_negatives(user=user, interacted=items_by_user[user], items=context.items, count=context.num_negatives)
    users = [(user, user_ids[user], source.user_desc[user], items_by_user[user], split)
             for user, split in splits.items()]
    builder = ShardBuilder(context=context, build=sequence_records, counted_fields=_counted_fields("sequences"))
    return RecordPlan(kind="sequences", builder=builder, num_units=len(users),
                      units=lambda start, stop: users[start:stop],
                      split_sizes=dict.fromkeys(records.SPLITS, len(users)))


def _split_sizes(written: dict) -> dict:
    """family -> split -> records that can serve it (reviews: those with the family's text)."""
    return {family.name: {s: written[family.records][s, family.needs_text or RECORDS] for s in records.SPLITS}
            for family in families.FAMILIES if family.records in written}


def _review_split_stats(*, scheme, labels, pairs, splits) -> dict:
    """Which review split was used, and how many held-out (user, item) pairs it leaks into training."""
    stats = {"review_split": scheme, "leaks_held_out_items": False, "held_out_pairs": len(held_out_pairs(splits)),
             "held_out_pairs_in_review_training": 0}
    if labels is not None:
        stats["held_out_pairs_in_review_training"] = held_out_pairs_in_training(pairs=pairs, labels=labels,
                                                                                held_out=splits)
        stats["leaks_held_out_items"] = scheme == "p5"
    return stats


def assemble(*, source: records.SourceDataset, indexing: str, seed: int, num_negatives: int = NUM_NEGATIVES,
             progress: bool = True, review_split: str = "aligned", dedupe: bool | None = None) -> PreparedData:
    """`review_split` and `dedupe` as in `p5_jax.data.prepare.prepare_dataset`. `progress` is unused (kept
    for callers): records are built, and their progress shown, as they are written."""
    dedupe = default_dedupe(source.format) if dedupe is None else dedupe
    sequences = user_sequences(source.interactions, dedupe=dedupe)
    splits = leave_one_out_all(sequences.items_by_user)
    _require_sequences(sequences, splits)
    items = source.items()
    item_ids = index_items(scheme=indexing, items=items, seed=seed, original_item_ids=source.original_item_ids,
                           train_histories={u: s.train_history for u, s in splits.items()},
                           full_sequences=sequences.items_by_user)
    user_ids = _user_ids(source)
    context = SequenceContext(items=items, item_ids=item_ids, seed=seed, num_negatives=num_negatives)
    sequence_plan = _sequence_plan(source, splits, items_by_user=sequences.items_by_user, user_ids=user_ids,
                                   context=context)
    reviews, labels, pairs = None, None, None
    if source.fields["rating"]:
        pairs = [(i.user, i.item) for i in source.interactions]
        labels = split_reviews(scheme=review_split, pairs=pairs, held_out=splits, seed=seed)
        reviews = _review_plan(source, labels, user_ids=user_ids, item_ids=item_ids)
    num_reviews = len(source.interactions) if reviews is not None else 0
    with_text = sum(bool(i.review_text) for i in source.interactions) if reviews is not None else 0
    stats = {
        "counts": {"users": len(user_ids), "items": len(items), "interactions": len(source.interactions),
                   "reviews": num_reviews},
        "users_too_short_for_sequences": len(sequences.items_by_user) - len(splits),
        "dedupe": dedupe,
        "repeat_interactions": sequences.repeats,
        "duplicate_interactions_dropped_from_sequences": sequences.duplicates_dropped,
        **_review_split_stats(scheme=review_split, labels=labels, pairs=pairs, splits=splits),
        "negatives_per_user": num_negatives,
    }
    users = ({"user_id": user_ids[raw], "raw_id": raw, "user_desc": source.user_desc[raw]} for raw in user_ids)
    return PreparedData(users=users, items=_item_rows(items, item_ids, source.item_meta), reviews=reviews,
                        sequences=sequence_plan, stats=stats,
                        explainable_reviews=with_text if source.lexicon else None)
