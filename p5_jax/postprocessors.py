"""Parse generated text into values the metric functions score.

Parsers (`parse_*`) take one string and return a value, or None when the text cannot be read; they
never raise on odd model output, so an unparseable prediction is counted by the metrics instead of
crashing an evaluation.

The seqio-style wrappers (`*_postprocessor(output, example=None, is_target=False)`) accept:
- `str` or `bytes`: one decoded output (bytes are read as UTF-8);
- a list or tuple of those: ranked beam outputs, best first (what `predict_batch(num_decodes=K)`
  gives once detokenised). Scalar families (rating, yes/no, like, text) keep the best beam only;
  `item_list_postprocessor` merges every beam into one ranked list of item ids, so 20 beams that
  each name one item become a ranking of up to 20 items.
Targets (`is_target=True`) go through the same parser, so a target and a prediction compare alike.
"""
from __future__ import annotations

import re

from p5_jax.id_text import ITEM_PREFIX

_NUMBER_WORDS = {"zero": 0.0, "one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0, "five": 5.0}
# A number not glued to a word before it ("item_4" is no rating); the atomic group stops "4.5"
# from being read as "4".
_NUMBER_RE = re.compile(
    r"(?<![\w.])((?>\d+(?:\.\d+)?|\.\d+))|\b(zero|one|two|three|four|five)\b")
_WORD_RE = re.compile(r"[a-z']+")
# Indexed item ids are digits, collaborative ids digit groups joined by '-' ("3-1-7"). The
# boundaries refuse "item_12abc" and "xitem_3" rather than reading part of them.
_ITEM_RE = re.compile(rf"\b{re.escape(ITEM_PREFIX)}(\d+(?:-\d+)*)\b")
_BARE_ID_RE = re.compile(r"\d+(?:-\d+)*")

_YES_WORDS = frozenset({"yes", "y", "true", "yeah", "yep"})
_NO_WORDS = frozenset({"no", "n", "false", "nope"})
_LIKE_WORDS = frozenset({"like", "likes", "liked", "love", "loves", "loved", "yes"})
_DISLIKE_WORDS = frozenset({"dislike", "dislikes", "disliked", "hate", "hates", "hated", "no",
                            "not", "don't", "doesn't", "didn't"})


def _to_text(output) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    if isinstance(output, str):
        return output
    raise TypeError(f"expected str or bytes, got {type(output).__name__}: {output!r}")


def _best_beam(output):
    """The first (best) element of ranked beam outputs, or the output itself."""
    if isinstance(output, (list, tuple)):
        return output[0] if output else ""
    return output


def parse_rating(text) -> float | None:
    """The first number in the text ("4", "4.0", "4 stars", "rating: 4", "four"), else None.

    The value is returned as written; metrics clip it to the 1..5 star range as P5 did.
    """
    match = _NUMBER_RE.search(_to_text(text).lower())
    if match is None:
        return None
    digits, word = match.groups()
    return float(digits) if digits is not None else _NUMBER_WORDS[word]


def _first_decisive_word(text, positive, negative) -> bool | None:
    for word in _WORD_RE.findall(_to_text(text).lower()):
        if word in positive:
            return True
        if word in negative:
            return False
    return None


def parse_yes_no(text) -> bool | None:
    """True for "yes", False for "no", decided by the first yes/no word; None if there is none."""
    return _first_decisive_word(text, _YES_WORDS, _NO_WORDS)


def parse_like(text) -> bool | None:
    """True for "like", False for "dislike" (also "not"/"don't", as in "don't like"), else None."""
    return _first_decisive_word(text, _LIKE_WORDS, _DISLIKE_WORDS)


def _dedupe(ids) -> list[str]:
    return list(dict.fromkeys(ids))


def parse_item_list(text) -> list[str]:
    """Item ids (without the `item_` prefix) in order of appearance, duplicates dropped.

    "item_12 , item_7 -> item_12" gives ["12", "7"]; "item_3-1-7" gives ["3-1-7"].
    """
    return _dedupe(_ITEM_RE.findall(_to_text(text)))


def _ids_of_one_beam(beam) -> list[str]:
    text = _to_text(beam).strip()
    ids = parse_item_list(text)
    if not ids and _BARE_ID_RE.fullmatch(text):
        return [text]  # a beam that is already a bare item id
    return ids


def rating_postprocessor(output, example=None, is_target=False) -> float | None:
    """Star rating of the best beam, or None when unparseable."""
    del example, is_target
    return parse_rating(_best_beam(output))


def yes_no_postprocessor(output, example=None, is_target=False) -> bool | None:
    del example, is_target
    return parse_yes_no(_best_beam(output))


def like_postprocessor(output, example=None, is_target=False) -> bool | None:
    del example, is_target
    return parse_like(_best_beam(output))


def item_list_postprocessor(output, example=None, is_target=False) -> list[str]:
    """Ranked item ids: one text's ids in order, or the ids of ranked beams merged best first.

    A beam may be a full text ("item_12") or a bare id ("12" or "3-1-7"). An empty list means the
    output named no item; ranking metrics count it as a miss.
    """
    del example, is_target
    if isinstance(output, (list, tuple)):
        return _dedupe(i for beam in output for i in _ids_of_one_beam(beam))
    return _ids_of_one_beam(output)


def text_postprocessor(output, example=None, is_target=False) -> str:
    """The best beam's text with surrounding and repeated whitespace removed."""
    del example, is_target
    return " ".join(_to_text(_best_beam(output)).split())


def split_rating_and_text(text) -> tuple[float | None, str]:
    """Split a "rating , sentence" target (prompts 3-7, 3-8) into (rating, sentence).

    Without a comma the whole text is the sentence and the rating is read from nothing (None).
    """
    head, sep, tail = _to_text(text).partition(",")
    if not sep:
        return None, " ".join(head.split())
    return parse_rating(head), " ".join(tail.split())


def rating_and_text_postprocessor(output, example=None, is_target=False) -> dict:
    """{"rating": float|None, "text": str} from a "rating , sentence" output (best beam)."""
    del example, is_target
    rating, sentence = split_rating_and_text(_best_beam(output))
    return {"rating": rating, "text": sentence}
