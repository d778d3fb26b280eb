"""Turns a source dataset into the prepared tables and per-split records (in memory)."""
import dataclasses

from tqdm.auto import tqdm

from p5_jax import families
from p5_jax.data import records
from p5_jax.data.errors import DataError
from p5_jax.data.explanations import Explanation, FeatureLexicon, extract_explanation
from p5_jax.data.indexing import index_items
from p5_jax.data.negatives import NUM_NEGATIVES, sample_negatives
from p5_jax.data.splits import (MIN_SEQUENCE_LENGTH, default_dedupe, distinct, held_out_pairs,
                                held_out_pairs_in_training, leave_one_out_all, split_reviews, user_sequences)


@dataclasses.dataclass
class PreparedData:
    users: list          # dicts: user_id, raw_id, user_desc
    items: list          # dicts: item_id, raw_id, title, brand, price
    reviews: dict | None  # split -> list of review records; None without ratings
    sequences: dict      # split -> list of sequence records
    stats: dict


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


def _item_rows(items, item_ids, item_meta) -> list:
    empty = records.ItemMeta()
    return [{"item_id": item_ids[raw], "raw_id": raw, **dataclasses.asdict(item_meta.get(raw, empty))}
            for raw in items]


def _review_records(source, labels, *, user_ids, item_ids, progress) -> tuple:
    """(split -> records, number with an explanation); `labels`: split index per interaction."""
    lexicon = FeatureLexicon(source.lexicon) if source.lexicon and source.fields["review_text"] else None
    by_split = {split: [] for split in records.SPLITS}
    explained = 0
    for interaction, label in tqdm(list(zip(source.interactions, labels)), desc="reviews", disable=not progress,
                                   unit="review", leave=False):
        explanation = (extract_explanation(text=interaction.review_text, lexicon=lexicon)
                       if lexicon else Explanation())
        explained += bool(explanation.sentence)
        meta = source.item_meta.get(interaction.item, records.ItemMeta())
        by_split[records.SPLITS[label]].append({
            "user_id": user_ids[interaction.user], "user_desc": source.user_desc[interaction.user],
            "item_id": item_ids[interaction.item], "item_title": meta.title, "item_brand": meta.brand,
            "item_price": meta.price, "rating": interaction.rating, "review_text": interaction.review_text,
            "summary": interaction.summary, "explanation": explanation.sentence,
            "feature": explanation.feature, "timestamp": interaction.timestamp})
    return by_split, explained


def _sequence_records(source, splits, negatives, *, items_by_user, user_ids, item_ids) -> dict:
    by_split = {split: [] for split in records.SPLITS}
    for user, split in splits.items():
        common = {"user_id": user_ids[user], "user_desc": source.user_desc[user],
                  "negatives": [item_ids[i] for i in negatives[user]],
                  "interacted": [item_ids[i] for i in distinct(items_by_user[user])]}
        history = [item_ids[i] for i in split.train_history]
        by_split["train"].append({**common, "history": history, "target": ""})
        by_split["validation"].append({**common, "history": history, "target": item_ids[split.validation_target]})
        by_split["test"].append({**common, "history": history + [item_ids[split.validation_target]],
                                 "target": item_ids[split.test_target]})
    return by_split


def _split_sizes(reviews, sequences) -> dict:
    """family -> split -> records that can serve it (reviews: those with the family's text)."""
    sizes = {}
    for family in families.FAMILIES:
        by_split = sequences if family.records == "sequences" else reviews
        if by_split is not None:
            sizes[family.name] = {s: sum(1 for r in by_split[s] if not family.needs_text or r[family.needs_text])
                                  for s in records.SPLITS}
    return sizes


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
    """`review_split` and `dedupe` as in `p5_jax.data.prepare.prepare_dataset`."""
    dedupe = default_dedupe(source.format) if dedupe is None else dedupe
    sequences = user_sequences(source.interactions, dedupe=dedupe)
    splits = leave_one_out_all(sequences.items_by_user)
    _require_sequences(sequences, splits)
    items = source.items()
    item_ids = index_items(scheme=indexing, items=items, seed=seed, original_item_ids=source.original_item_ids,
                           train_histories={u: s.train_history for u, s in splits.items()},
                           full_sequences=sequences.items_by_user)
    user_ids = _user_ids(source)
    negatives = sample_negatives(items_by_user={u: sequences.items_by_user[u] for u in splits},
                                 items=items, seed=seed, count=num_negatives, progress=progress)
    sequence_records = _sequence_records(source, splits, negatives, items_by_user=sequences.items_by_user,
                                         user_ids=user_ids, item_ids=item_ids)
    reviews, explained, labels = None, 0, None
    pairs = [(i.user, i.item) for i in source.interactions]
    if source.fields["rating"]:
        labels = split_reviews(scheme=review_split, pairs=pairs, held_out=splits, seed=seed)
        reviews, explained = _review_records(source, labels, user_ids=user_ids, item_ids=item_ids,
                                             progress=progress)
    num_reviews = len(source.interactions) if reviews is not None else 0
    with_text = sum(bool(i.review_text) for i in source.interactions) if reviews is not None else 0
    stats = {
        "counts": {"users": len(user_ids), "items": len(items), "interactions": len(source.interactions),
                   "reviews": num_reviews, "explanations": explained},
        "explanation_coverage": (explained / with_text) if source.lexicon and with_text else None,
        "splits": _split_sizes(reviews, sequence_records),
        "users_too_short_for_sequences": len(sequences.items_by_user) - len(splits),
        "dedupe": dedupe,
        "repeat_interactions": sequences.repeats,
        "duplicate_interactions_dropped_from_sequences": sequences.duplicates_dropped,
        **_review_split_stats(scheme=review_split, labels=labels, pairs=pairs, splits=splits),
        "negatives_per_user": num_negatives,
    }
    users = [{"user_id": user_ids[raw], "raw_id": raw, "user_desc": source.user_desc[raw]} for raw in user_ids]
    return PreparedData(users=users, items=_item_rows(items, item_ids, source.item_meta), reviews=reviews,
                        sequences=sequence_records, stats=stats)
