"""Explanation sentences: a review sentence that mentions a feature word from the dataset's lexicon.

This stands in for the Sentires (feature, opinion, sentence) triples P5 used: among a review's
sentences, the one mentioning the most frequent lexicon feature wins (earliest sentence on ties).
"""
import dataclasses
import re

# A sentence ends at . ! or ? followed by space, or directly by a capital letter or quote,
# as in "quite affordable.I did not" (reviews often drop the space). "2.5" is not split.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|(?<=[.!?])(?=[A-Z\"'])")
_WORD = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")
MAX_SENTENCE_WORDS = 40


@dataclasses.dataclass(frozen=True)
class Explanation:
    feature: str = ""
    sentence: str = ""


def split_sentences(text: str) -> list:
    """Non-empty, whitespace-normalised sentences of `text`."""
    pieces = (" ".join(piece.split()) for piece in _SENTENCE_BREAK.split(text or ""))
    return [piece for piece in pieces if piece]


class FeatureLexicon:
    """Feature words (or phrases) ranked by position: earlier = more frequent = preferred."""

    def __init__(self, features):
        self.rank = {}
        for feature in features:
            key = " ".join(_WORD.findall(feature.lower()))
            if key and key not in self.rank:
                self.rank[key] = len(self.rank)
        self.max_words = max((len(k.split()) for k in self.rank), default=0)

    def best_feature(self, sentence: str):
        """(rank, feature) of the best-ranked feature in `sentence`, or None."""
        words = _WORD.findall(sentence.lower())
        best = None
        for size in range(1, self.max_words + 1):
            for start in range(len(words) - size + 1):
                phrase = " ".join(words[start:start + size])
                rank = self.rank.get(phrase)
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, phrase)
        return best


def extract_explanation(*, text: str, lexicon: FeatureLexicon, max_words: int = MAX_SENTENCE_WORDS) -> Explanation:
    """The review's sentence with the best-ranked feature; an empty Explanation when none has one.

    Sentences over `max_words` words (usually run-ons with lost punctuation) are not chosen.
    """
    best = None
    for sentence in split_sentences(text):
        if len(sentence.split()) > max_words:
            continue
        found = lexicon.best_feature(sentence)
        if found is not None and (best is None or found[0] < best[0]):
            best = (found[0], found[1], sentence)
    if best is None:
        return Explanation()
    return Explanation(feature=best[1], sentence=best[2])
