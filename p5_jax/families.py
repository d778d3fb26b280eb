"""What each P5 task family is, in one place.

A family fixes the prepared records its prompts read, the dataset fields every one of its prompts
needs, how P5's training epoch sizes it, how its training target is drawn from a sequence record,
whether its yes/no prompts are evaluated as a ranking, and the metrics its report table shows.
Prompts (`p5_tasks.prompts`), data sources, mixture rates, pipelines, the prepare summary, split
sizes and the report all read these records; none keeps its own list.
"""
from __future__ import annotations

import dataclasses

_TEXT = ("p5_rouge1", "p5_rouge2", "p5_rougeL")
_RANKING = ("hr@5", "ndcg@5", "hr@10", "ndcg@10")


@dataclasses.dataclass(frozen=True)
class Family:
    """One task family.

    records: "reviews" or "sequences" (the prepared records its prompts read);
    fields: dataset fields every prompt of the family needs, whatever its slots;
    per_epoch, counted_in: P5's examples per epoch for the whole family, per record counted as
        `counted_in` in the manifest ("reviews", "explanations", "users");
    needs_text: a review field that must be non-empty for a record to serve the family;
    sequence_target: for sequence records, how a training target is drawn: "next_item" (an item
        after a history prefix) or "any_item" (any item the user interacted with);
    ranks_yes_no: its yes/no prompts are evaluated by ranking the user's candidates by p(yes);
    report_columns: the metrics its report table shows, in order.
    """
    name: str
    records: str
    fields: tuple[str, ...]
    per_epoch: int
    counted_in: str
    report_columns: tuple[str, ...]
    needs_text: str | None = None
    sequence_target: str | None = None
    ranks_yes_no: bool = False


FAMILIES: tuple[Family, ...] = (
    Family("rating", "reviews", ("rating",), per_epoch=1, counted_in="reviews",
           report_columns=("rmse", "mae", "accuracy")),
    # 5 next-item + 5 from candidates + 10 yes/no per user.
    Family("sequential", "sequences", ("sequences",), per_epoch=5 + 5 + 10, counted_in="users",
           report_columns=_RANKING + ("accuracy",), sequence_target="next_item"),
    Family("explanation", "reviews", ("explanation",), per_epoch=1, counted_in="explanations",
           report_columns=("p5_bleu4",) + _TEXT + ("bleu4", "rouge1", "rouge2", "rougeL",
                                                   "rmse", "mae"),
           needs_text="explanation"),
    Family("review", "reviews", ("review_text",), per_epoch=1, counted_in="reviews",
           report_columns=("p5_bleu2",) + _TEXT + ("bleu2", "rouge1", "rouge2", "rougeL",
                                                   "rmse", "mae"),
           needs_text="review_text"),
    # 10 yes/no + 5 from candidates per user.
    Family("direct", "sequences", ("sequences",), per_epoch=10 + 5, counted_in="users",
           report_columns=("hr@1",) + _RANKING + ("accuracy",), sequence_target="any_item",
           ranks_yes_no=True),
    Family("zeroshot", "reviews", ("rating",), per_epoch=1, counted_in="reviews",
           report_columns=("rmse", "mae", "accuracy", "p5_bleu4") + _TEXT),
)
BY_NAME = {family.name: family for family in FAMILIES}
NAMES = tuple(BY_NAME)


def get(name: str) -> Family:
    if name not in BY_NAME:
        raise ValueError(f"unknown task family {name!r}; known: {NAMES}")
    return BY_NAME[name]
