"""The P5 prompt collection as frozen records: one `Prompt` per template.

Placeholders (`{slot}`) name what a prompt shows; `slots` and `required_fields` are read from the
templates, never counted by hand. Slot values are rendered text: `user_id` -> "user_17",
`item_id` / `target_item` -> "item_42", `history` / `candidates` -> ids joined by " , " or " -> ",
`continuation` -> ids joined by spaces, `rating` / `star` -> "4", `answer` -> "yes" | "no",
`like` -> "like" | "dislike".
The wording is this project's own; ids, inputs and outputs follow P5's collection.
"""
from __future__ import annotations

import dataclasses
import string

from p5_jax import families
from p5_jax.id_text import item_text, user_text

FAMILIES = families.NAMES
OUTPUTS = ("rating", "yes_no", "like", "item", "explanation", "rating_explanation", "summary")
LIST_SLOTS = ("history", "candidates")
SLOTS = ("user_id", "user_desc", "item_id", "item_title", "item_brand", "item_price", "rating",
         "star", "answer", "like", "review_text", "summary", "explanation", "feature",
         "history", "candidates", "target_item", "continuation")

# Dataset fields (see DatasetSpec.fields) a slot needs; user_id and user_desc always exist.
_SLOT_FIELDS = {
    "item_title": "item_title", "item_brand": "item_brand", "item_price": "item_price",
    "rating": "rating", "star": "rating", "like": "rating", "review_text": "review_text",
    "summary": "summary", "explanation": "explanation", "feature": "explanation",
    "history": "sequences", "candidates": "sequences", "target_item": "sequences",
    "continuation": "sequences",
}



def _placeholders(template: str) -> tuple[str, ...]:
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt: `id` like "2-3", its family, output kind, seen (trained) or held out."""
    id: str
    family: str
    output: str
    seen: bool
    input_template: str
    target_template: str

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"prompt {self.id}: unknown family {self.family!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"prompt {self.id}: unknown output {self.output!r}")
        unknown = set(self.slots) - set(SLOTS)
        if unknown:
            raise ValueError(f"prompt {self.id}: unknown placeholders {sorted(unknown)}")
        for slot in LIST_SLOTS:
            if slot in self.input_template and not _spaced(self.input_template, slot):
                raise ValueError(f"prompt {self.id}: {{{slot}}} must stand between spaces so "
                                 "its ids stay whole words")

    @property
    def slots(self) -> tuple[str, ...]:
        """Placeholders of the input template, in order."""
        return _placeholders(self.input_template)

    @property
    def target_slots(self) -> tuple[str, ...]:
        return _placeholders(self.target_template)

    @property
    def required_fields(self) -> frozenset[str]:
        needed = set(families.get(self.family).fields)
        for slot in self.slots + self.target_slots:
            if slot in _SLOT_FIELDS:
                needed.add(_SLOT_FIELDS[slot])
        return frozenset(needed)

    @property
    def task_suffix(self) -> str:
        """"2-3" -> "2_3", "Z-1" -> "z_1" (for task names)."""
        return self.id.replace("-", "_").lower()


def _spaced(template: str, slot: str) -> bool:
    token = "{" + slot + "}"
    start = template.index(token)
    end = start + len(token)
    before_ok = start == 0 or template[start - 1] == " "
    after_ok = end == len(template) or template[end] == " "
    return before_ok and after_ok


def _p(id_, family, output, input_template, target_template, *, seen=True) -> Prompt:
    return Prompt(id=id_, family=family, output=output, seen=seen,
                  input_template=input_template, target_template=target_template)


_RATING = "{rating}"
_ITEM = "{target_item}"
_EXPL = "{explanation}"

PROMPTS: tuple[Prompt, ...] = (
    # Rating: predict a star, check a shown star, or like/dislike.
    _p("1-1", "rating", "rating", "What star rating from 1 to 5 would {user_id} give to {item_id} ?", _RATING),
    _p("1-2", "rating", "rating", "{user_id} bought the product titled \" {item_title} \" . "
       "Predict the star rating ( 1 to 5 ) this user gives it .", _RATING),
    _p("1-3", "rating", "yes_no", "Will {user_id} rate {item_id} with {star} stars ? Answer yes or no .", "{answer}"),
    _p("1-4", "rating", "like", "Does {user_id} like or dislike {item_id} ?", "{like}"),
    _p("1-5", "rating", "rating", "Rate from 1 to 5 how {user_id} feels about {item_id} , "
       "whose title is \" {item_title} \" .", _RATING),
    _p("1-6", "rating", "rating", "Here is a shopper : {user_desc} . How many stars out of 5 "
       "will this shopper give {item_id} ?", _RATING),
    _p("1-7", "rating", "rating", "How many stars will {user_desc} give the item \" {item_title} \" ? "
       "Answer with a number from 1 to 5 .", _RATING),
    _p("1-8", "rating", "yes_no", "{user_desc} reviews \" {item_title} \" . Is the score {star} out "
       "of 5 ? Say yes or no .", "{answer}"),
    _p("1-9", "rating", "like", "Would {user_desc} like the item \" {item_title} \" ? "
       "Answer like or dislike .", "{like}"),
    _p("1-10", "rating", "rating", "Guess the 1 to 5 star score that {user_desc} assigns to "
       "\" {item_title} \" .", _RATING, seen=False),
    # Sequential: the next item after a history, free or from candidates, or yes/no on one item.
    _p("2-1", "sequential", "item", "{user_id} has bought these items in order : {history} . "
       "Which item comes next ?", _ITEM),
    _p("2-2", "sequential", "item", "Purchase history of {user_id} : {history} . Predict the next "
       "item this user will buy .", _ITEM),
    _p("2-3", "sequential", "item", "Given that {user_id} interacted with {history} , recommend "
       "the next item for this user .", _ITEM),
    _p("2-4", "sequential", "item", "{user_desc} bought {history} in this order . What will they "
       "buy next ?", _ITEM),
    _p("2-5", "sequential", "item", "The shopper {user_desc} has this history : {history} . "
       "Name the next item .", _ITEM),
    _p("2-6", "sequential", "item", "Based on the items {history} chosen by {user_desc} , "
       "which item will follow ?", _ITEM),
    _p("2-7", "sequential", "item", "{user_id} bought {history} . Pick the next item for this "
       "user from these candidates : {candidates}", _ITEM),
    _p("2-8", "sequential", "item", "History of {user_desc} : {history} . Choose the next "
       "purchase from : {candidates}", _ITEM),
    _p("2-9", "sequential", "item", "From the candidates {candidates} , select what {user_id} "
       "buys after {history} .", _ITEM),
    _p("2-10", "sequential", "item", "{user_desc} has the history {history} . Which of "
       "{candidates} is the next item ?", _ITEM),
    _p("2-11", "sequential", "yes_no", "{user_id} bought {history} . Is {item_id} the next "
       "item ? Answer yes or no .", "{answer}"),
    _p("2-12", "sequential", "yes_no", "After {history} , will {user_desc} buy {item_id} next ? "
       "yes or no ?", "{answer}"),
    _p("2-13", "sequential", "item", "Here is the purchase sequence of {user_desc} : {history} . "
       "Recommend the item that comes next .", _ITEM, seen=False),
    # Explanation: the review sentence that explains a user's opinion of an item.
    _p("3-1", "explanation", "explanation", "Explain why {user_id} would enjoy \" {item_title} \" .", _EXPL),
    _p("3-2", "explanation", "explanation", "{user_id} summed up {item_id} as \" {summary} \" . "
       "Write a sentence explaining the opinion .", _EXPL),
    _p("3-3", "explanation", "explanation", "{user_id} gave {rating} stars to \" {item_title} \" . "
       "Give a reason for this score .", _EXPL),
    _p("3-4", "explanation", "explanation", "Write what {user_desc} would say about \" {item_title} \" .", _EXPL),
    _p("3-5", "explanation", "explanation", "Headline by {user_desc} for \" {item_title} \" : "
       "\" {summary} \" . Expand it into an explanation .", _EXPL),
    _p("3-6", "explanation", "explanation", "{user_desc} rated {item_id} {rating} out of 5 . "
       "Explain the rating .", _EXPL),
    _p("3-7", "explanation", "rating_explanation", "Speak about the {feature} of {item_id} as "
       "{user_id} would : give a star rating and a reason .", "{rating} , {explanation}"),
    _p("3-8", "explanation", "rating_explanation", "Predict the star rating {user_desc} gives "
       "{item_id} and explain it .", "{rating} , {explanation}"),
    _p("3-9", "explanation", "explanation", "Write an explanation mentioning {feature} for why "
       "{user_id} picks \" {item_title} \" .", _EXPL),
    _p("3-10", "explanation", "explanation", "Using the word {feature} , explain the view of "
       "{user_desc} on \" {item_title} \" .", _EXPL),
    _p("3-11", "explanation", "explanation", "{user_id} gave {item_id} {rating} stars . Explain "
       "the score with a remark on {feature} .", _EXPL),
    _p("3-12", "explanation", "explanation", "Mention {feature} and explain why {user_desc} "
       "rated {item_id} {rating} out of 5 .", _EXPL, seen=False),
    # Review: headline or star from the review text.
    _p("4-1", "review", "summary", "Write a short headline for this review by {user_id} : {review_text}", "{summary}"),
    _p("4-2", "review", "rating", "{user_id} wrote : {review_text} . What star rating goes with "
       "this review ?", _RATING),
    _p("4-3", "review", "summary", "Summarise in a few words what {user_desc} wrote : {review_text}", "{summary}"),
    _p("4-4", "review", "rating", "From this review by {user_desc} , infer the star rating from "
       "1 to 5 : {review_text}", _RATING, seen=False),
    # Direct: yes/no on one item, or the best item among 100 candidates.
    _p("5-1", "direct", "yes_no", "Should we recommend {item_id} to {user_id} ? Answer yes or no .", "{answer}"),
    _p("5-2", "direct", "yes_no", "Is {item_id} a good match for {user_desc} ? yes or no ?", "{answer}"),
    _p("5-3", "direct", "yes_no", "Would {user_desc} be interested in \" {item_title} \" ? "
       "Answer yes or no .", "{answer}"),
    _p("5-4", "direct", "yes_no", "Recommend \" {item_title} \" to {user_id} ? yes or no ?", "{answer}"),
    _p("5-5", "direct", "item", "Pick the best item for {user_desc} among : {candidates}", _ITEM),
    _p("5-6", "direct", "item", "{user_desc} needs one suggestion . Candidates : {candidates} . "
       "Which one fits best ?", _ITEM),
    _p("5-7", "direct", "item", "Which of these items should {user_id} get ? {candidates}", _ITEM),
    _p("5-8", "direct", "item", "Out of {candidates} , choose one item to recommend to {user_id} .",
       _ITEM, seen=False),
    # Zero-shot cold start: item metadata only, never trained on. Z-1..Z-7 follow P5 (title,
    # brand, price); Z-8 and Z-9 are this project's and show only the title, the one piece of
    # metadata a dataset without brands or prices (MovieLens) has, as P5's own Z-7 does.
    _p("Z-1", "zeroshot", "like", "{user_id} sees \" {item_title} \" by {item_brand} at "
       "{item_price} . like or dislike ?", "{like}", seen=False),
    _p("Z-2", "zeroshot", "rating", "The item \" {item_title} \" from {item_brand} costs "
       "{item_price} . What star rating will {user_desc} give ?", _RATING, seen=False),
    _p("Z-3", "zeroshot", "rating", "Predict the rating {user_id} gives \" {item_title} \" , "
       "price {item_price} , brand {item_brand} .", _RATING, seen=False),
    _p("Z-4", "zeroshot", "like", "{user_desc} considers \" {item_title} \" ( {item_price} , "
       "{item_brand} ) . like or dislike ?", "{like}", seen=False),
    _p("Z-5", "zeroshot", "explanation", "Explain what {user_desc} thinks of \" {item_title} \" "
       "made by {item_brand} at {item_price} .", _EXPL, seen=False),
    _p("Z-6", "zeroshot", "explanation", "{user_id} rated \" {item_title} \" ( {item_price} , "
       "{item_brand} ) {rating} stars . Explain it with a word on {feature} .", _EXPL, seen=False),
    _p("Z-7", "zeroshot", "explanation", "Explain the opinion of {user_desc} about \" {item_title} \" .",
       _EXPL, seen=False),
    _p("Z-8", "zeroshot", "like", "{user_id} has never seen \" {item_title} \" . Will this user "
       "like or dislike it ?", "{like}", seen=False),
    _p("Z-9", "zeroshot", "rating", "\" {item_title} \" is new to {user_desc} . Predict the star "
       "rating from 1 to 5 .", _RATING, seen=False),
)

# This project's own training prompt, outside P5's collection and registered only when a run
# asks for it (`set_sequence_options(continuation=k)`): the target lists the next k items in
# order ({continuation}: "item_3 item_9 item_1"), so one pass over a history teaches k
# next-item steps (each later one given the earlier ones, as a causal sequence model learns).
# Evaluation and its sets never read it; P5's mixtures and rates are unchanged without it.
CONTINUATION = _p("2-14", "sequential", "item", "{user_id} bought {history} . List the items "
                  "this user buys next , in order .", "{continuation}")
KNOWN_PROMPTS = PROMPTS + (CONTINUATION,)
_BY_ID = {prompt.id: prompt for prompt in KNOWN_PROMPTS}


def get_prompt(prompt_id: str) -> Prompt:
    if prompt_id not in _BY_ID:
        raise KeyError(f"no prompt {prompt_id!r}; known: {', '.join(_BY_ID)}")
    return _BY_ID[prompt_id]


def prompts_for(*, fields: frozenset[str], family: str | None = None) -> tuple[Prompt, ...]:
    """Prompts whose every required field is in `fields` (optionally of one family)."""
    return tuple(p for p in PROMPTS
                 if p.required_fields <= fields and (family is None or p.family == family))


_SAMPLE_SLOTS = {
    "user_id": "user_17", "user_desc": "a reader", "item_id": "item_42", "item_title": "a title",
    "item_brand": "a brand", "item_price": "9.99", "rating": "4", "star": "3", "answer": "yes",
    "like": "like", "review_text": "", "summary": "", "explanation": "", "feature": "sound",
    "history": "item_1 , item_2 -> item_3", "candidates": "item_5 , item_6",
    "target_item": "item_7",
}


def vocabulary_texts() -> list[str]:
    """Vocabulary corpus lines: every prompt rendered with sample values, plus fixed synthetic
    id lists so that `▁item_`, `▁user_`, `▁,` and `▁->` become pieces (shorter inputs)."""
    texts = []
    for prompt in PROMPTS:
        texts.append(prompt.input_template.format(**_SAMPLE_SLOTS))
        texts.append(prompt.target_template.format(**_SAMPLE_SLOTS))
    for i in range(2000):
        texts.append(f"{user_text(str(i))} : {item_text(str(i))} , {item_text(str(3 * i + 1))} -> "
                     f"{item_text(str(7 * i + 2))} yes no like dislike {i % 5 + 1}")
    return texts
