"""A dataset's items as decoder targets: their token ids, the prefix trie that keeps beams on
valid ids, and the items each user's beams leave out."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from p5_jax import inference
from p5_jax.prefix_trie import ExcludingTrie, PrefixTrie


@dataclasses.dataclass(frozen=True)
class ItemIndex:
    """Tokenised item targets of one dataset and the trie that constrains decoding to them;
    `excluded`: user id -> the items constrained beams leave out for that user (the exact
    protocol's whole history, the items the baselines leave out too)."""
    tokens: Mapping[str, tuple[int, ...]]
    trie: PrefixTrie
    max_length: int
    excluded: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)

    def constraint_for(self, user_ids: Sequence[str], *, rows: int):
        """The trie, or for users with excluded items one that bars them (`rows` examples)."""
        barred = [[self.tokens[i] for i in self.excluded.get(user, ()) if i in self.tokens]
                  for user in user_ids]
        if not any(barred):
            return self.trie
        barred += [[]] * (rows - len(barred))
        return ExcludingTrie.build(self.trie, barred, eos_id=inference.EOS_ID)


def build_item_index(*, item_ids: Iterable[str], vocabulary, vocab_size: int,
                     excluded: Mapping[str, Sequence[str]] | None = None) -> ItemIndex:
    tokens = inference.tokenize_item_ids(vocabulary=vocabulary, item_ids=item_ids)
    if not tokens:
        raise ValueError("no items to build an item index from")
    return ItemIndex(tokens=tokens,
                     trie=inference.item_trie(item_tokens=tokens, vocab_size=vocab_size),
                     max_length=max(len(t) for t in tokens.values()), excluded=excluded or {})
