"""SentencePiece vocabulary for P5: trained on the prepared text, made on demand, cached.

Ids: pad 0, eos 1, unk 2, no bos. Digits are split one per piece, so an id such as `item_1234`
becomes several pieces, unless item tokens are on (`use_item_tokens(True)`): then every item of
the corpus datasets is one piece, `▁item_<id>` (independent indexing, one embedding per item,
as in Hua et al. 2023), and a next-item target is one token and EOS; likewise every user is one
piece, `▁user_<id>`, when user tokens are on (`use_user_tokens(True)`). Training is
deterministic: a fixed corpus order, no sentence sampling or shuffling, one thread. The model
is cached under `<prepared_root>/vocab/` with a name that hashes the corpus recipe (vocab size,
the datasets' manifests, the extra texts), so a changed recipe makes a new file and never
reuses a stale one.

`use_sentencepiece_file(path)` (or `$P5_SPM_MODEL`) swaps in any other model, e.g. T5's
`spiece.model`; entry scripts bind it with gin.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import sentencepiece as spm
import seqio

from p5_jax import atomic_files, id_text, paths
from p5_jax.token_ids import EOS_ID, PAD_ID, UNK_ID

DEFAULT_VOCAB_SIZE = 5000
# Only these shipped datasets carry text (reviews, names, titles); beauty and toys hold ids only.
CORPUS_DATASETS = ("musical_instruments", "ml100k")
MAX_WHOLE_WORD_ID = 511
TRAINER_VERSION = 2  # bump when train_sentencepiece's settings change (part of the cache key)
WORD_START = "\u2581"

_override_path: str | None = None
_item_tokens = False
_user_tokens = False


def use_sentencepiece_file(path: str | os.PathLike | None) -> None:
    """Use this SentencePiece model for every P5 task (None returns to the trained default)."""
    global _override_path
    if path is not None and not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"SentencePiece model not found: {path}")
    _override_path = None if path is None else str(path)


def use_item_tokens(enabled: bool) -> None:
    """Whether the trained default model gives every corpus item its own piece."""
    global _item_tokens
    _item_tokens = bool(enabled)


def use_user_tokens(enabled: bool) -> None:
    """Whether the trained default model gives every corpus user its own piece."""
    global _user_tokens
    _user_tokens = bool(enabled)


def train_sentencepiece(*, texts: Iterable[str], model_path: str | os.PathLike,
                        vocab_size: int = DEFAULT_VOCAB_SIZE,
                        symbols: Sequence[str] = ()) -> pathlib.Path:
    """Trains a unigram model on `texts` (in the given order) and writes it atomically.

    `symbols` become pieces of their own on top of `vocab_size` learned ones."""
    model_path = pathlib.Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    lines = [" ".join(text.split()) for text in texts]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError("no text to train a SentencePiece model on")
    model = io.BytesIO()  # written by SentencePiece itself, so no build path is stored in it
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model,
        vocab_size=vocab_size + len(symbols), user_defined_symbols=list(symbols),
        model_type="unigram", pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, split_digits=True,
        character_coverage=1.0, num_threads=1, input_sentence_size=0,
        shuffle_input_sentence=False, hard_vocab_limit=False, minloglevel=2,
        split_by_unicode_script=False)
    return atomic_files.write_atomically(model_path, model.getvalue())


def _dataset_texts(folder: pathlib.Path, manifest: dict) -> Iterable[str]:
    from p5_jax.data import tfds_builders  # TFDS only when a corpus is built.

    for name, keys in (("users.jsonl", ("user_desc",)), ("items.jsonl", ("title", "brand"))):
        with open(folder / name, encoding="utf-8") as file:
            for line in file:
                record = json.loads(line)
                yield from (record.get(key, "") for key in keys)
    if manifest.get("fields", {}).get("review_text"):
        reviews = tfds_builders.load(root=folder.parent, dataset=folder.name, kind="reviews",
                                     split="train")
        for example in reviews.as_numpy_iterator():
            yield example["summary"].decode("utf-8")
            yield example["review_text"].decode("utf-8")


def _manifests(root: pathlib.Path, datasets: Sequence[str]) -> list[dict]:
    from p5_jax.data import prepare

    result = []
    for name in datasets:
        folder = prepare.ensure_prepared(name=name, out_root=root)
        result.append(json.loads((folder / "manifest.json").read_text()))
    return result


def _prepared_ids(root: pathlib.Path, datasets: Sequence[str], *, records: str,
                  key: str) -> list[str]:
    ids: set[str] = set()
    for name in datasets:
        with open(root / name / records, encoding="utf-8") as file:
            ids.update(json.loads(line)[key] for line in file)
    return sorted(ids)


def item_symbols(root: pathlib.Path, datasets: Sequence[str]) -> list[str]:
    """`▁item_<id>` for every item of the prepared `datasets`, sorted (ids shared across
    datasets share a piece)."""
    ids = _prepared_ids(root, datasets, records="items.jsonl", key="item_id")
    return [item_piece(item) for item in ids]


def item_piece(item_id: str) -> str:
    """The one SentencePiece piece of an item with item tokens on: `▁item_<id>`."""
    return WORD_START + id_text.item_text(item_id)


def user_symbols(root: pathlib.Path, datasets: Sequence[str]) -> list[str]:
    """`▁user_<id>` for every user of the prepared `datasets`, sorted (shared like items)."""
    ids = _prepared_ids(root, datasets, records="users.jsonl", key="user_id")
    return [WORD_START + id_text.user_text(user) for user in ids]


def _recipe_hash(*, vocab_size: int, manifests: list[dict], extra_texts: Sequence[str],
                 item_tokens: bool = False, user_tokens: bool = False) -> str:
    recipe = {"trainer": TRAINER_VERSION, "vocab_size": vocab_size, "extra_texts": list(extra_texts),
              **({"item_tokens": True} if item_tokens else {}),
              **({"user_tokens": True} if user_tokens else {}),
              "datasets": [{k: m.get(k) for k in ("name", "source_files", "indexing", "seed",
                                                  "counts")} for m in manifests]}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def ensure_sentencepiece_model(*, root=None, vocab_size: int = DEFAULT_VOCAB_SIZE,
                               datasets: Sequence[str] = CORPUS_DATASETS,
                               extra_texts: Sequence[str] = (),
                               item_tokens: bool | None = None,
                               user_tokens: bool | None = None) -> pathlib.Path:
    """The cached model for this recipe, training it (and preparing `datasets`) if missing.
    `item_tokens` (default: the `use_item_tokens` setting) adds one piece per item,
    `user_tokens` (default: `use_user_tokens`'s) one per user."""
    root = pathlib.Path(root) if root is not None else paths.prepared_root()
    item_tokens = _item_tokens if item_tokens is None else item_tokens
    user_tokens = _user_tokens if user_tokens is None else user_tokens
    manifests = _manifests(root, datasets)
    digest = _recipe_hash(vocab_size=vocab_size, manifests=manifests, extra_texts=extra_texts,
                          item_tokens=item_tokens, user_tokens=user_tokens)
    kind = ("items_" if item_tokens else "") + ("users_" if user_tokens else "")
    model_path = root / "vocab" / f"p5_spm_{vocab_size}_{kind}{digest}.model"
    if model_path.is_file():
        return model_path

    def corpus():
        yield from extra_texts
        for name in datasets:
            folder = root / name
            yield from _dataset_texts(folder, json.loads((folder / "manifest.json").read_text()))

    symbols = ((item_symbols(root, datasets) if item_tokens else [])
               + (user_symbols(root, datasets) if user_tokens else []))
    return train_sentencepiece(texts=corpus(), model_path=model_path, vocab_size=vocab_size,
                               symbols=symbols)


class LazySentencePieceVocabulary(seqio.SentencePieceVocabulary):
    """A SentencePieceVocabulary whose model file is found (or trained) on first use.

    Task registration must not touch data; the file is resolved only when a task tokenizes.
    """

    _sentencepiece_model_file: str | None  # the base class's; None until first resolved

    def __init__(self, resolve_path: Callable[[], str | os.PathLike]):
        super().__init__(sentencepiece_model_file=None)
        self._resolve_path = resolve_path
        self._default_files: dict[tuple, str] = {}  # (root, item, user tokens) -> model file

    def _current_file(self) -> str:
        override = _override_path or os.environ.get("P5_SPM_MODEL")
        if override:
            return str(override)
        key = (str(paths.prepared_root()), _item_tokens, _user_tokens)
        if key not in self._default_files:
            import tensorflow as tf  # deferred: training reads prepared records eagerly
            with tf.init_scope():    # even when first asked from inside a tf.data map
                self._default_files[key] = str(self._resolve_path())
        return self._default_files[key]

    def _ensure_file(self) -> str:
        path = self._current_file()
        if path != self._sentencepiece_model_file:
            self._sentencepiece_model_file = path
            self._model = None
        return path

    def _model_context(self):
        self._ensure_file()
        return super()._model_context()

    @property
    def sentencepiece_model_file(self) -> str:
        return self._ensure_file()

    def __eq__(self, other):
        return self is other or super().__eq__(other)

    def __hash__(self):
        return id(self)


def default_vocabulary(*, extra_texts: Sequence[str] = ()) -> LazySentencePieceVocabulary:
    """The project vocabulary: trained on the prepared text plus `extra_texts` when first used."""
    extra = tuple(extra_texts)
    return LazySentencePieceVocabulary(
        functools.partial(ensure_sentencepiece_model, extra_texts=extra))


@functools.lru_cache(maxsize=8)
def _word_starts_for(model_file: str, size: int) -> np.ndarray:
    processor = spm.SentencePieceProcessor(model_file=model_file)
    starts = np.zeros(size, dtype=bool)
    for piece_id in range(processor.get_piece_size()):
        starts[piece_id] = processor.id_to_piece(piece_id).startswith(WORD_START)
    return starts


def word_start_table(vocabulary: seqio.SentencePieceVocabulary) -> np.ndarray:
    """bool[vocab_size]: True where a piece begins a whitespace-separated word."""
    return _word_starts_for(vocabulary.sentencepiece_model_file, vocabulary.vocab_size)


def whole_word_ids(*, token_ids, word_starts: np.ndarray, eos_id: int = 1) -> np.ndarray:
    """Index (1-based, capped at 511) of the word each token belongs to; 0 for pad and EOS.

    [▁item, _, 1, 2, ▁,, ▁item, _, 3, </s>] -> [1, 1, 1, 1, 2, 3, 3, 3, 0]
    (numpy twin of the in-pipeline version in p5_tasks.preprocessors, for tests and tools)
    """
    tokens = np.asarray(token_ids)
    words = np.maximum(np.cumsum(word_starts[tokens]), 1)
    words = np.minimum(words, MAX_WHOLE_WORD_ID)
    return np.where((tokens == 0) | (tokens == eos_id), 0, words)
