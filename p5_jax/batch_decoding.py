"""Decoding one task's examples, batch by batch, into raw outputs per decoding kind: ranked item
texts from (constrained) beams, candidates ranked by mean log-probability per token, log p(yes),
or a greedy / grouped-beam text. Batches are padded to a few lengths (fewer compiled shapes) and
split into model calls whose attention fits in memory (`rows_per_call`)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from p5_jax import group_beam_predict, inference, protocols, scoring
from p5_jax.item_index import ItemIndex
from p5_jax.protocols import BEAM, CANDIDATES, FREE_BEAM, GROUP_BEAM, YES_RANK

if TYPE_CHECKING:
    from p5_jax.evaluation import EvalConfig, TaskPlan

LENGTH_MULTIPLE = 64   # batches are padded to a multiple of this, at most the input length
SCORED_ROWS = 128      # example x candidate rows the decoder scores at once (see candidate_chunk)
ATTENTION_CELLS = 8 * 768 * 768   # rows x input length^2 of one model call (see rows_per_call)


def text_of(value) -> str:
    """A feature value as text (bytes decoded as UTF-8)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def ids_of(values) -> list[str]:
    """A list feature as texts."""
    return [text_of(v) for v in values]


def _padded(rows: Sequence[np.ndarray], *, length: int, num_rows: int) -> np.ndarray:
    out = np.zeros((num_rows, length), np.int32)
    for index, row in enumerate(rows):
        row = np.asarray(row, np.int32)[:length]
        out[index, :row.shape[0]] = row
    return out


def batch_length(examples: Sequence[dict], *, input_length: int, pad_to_input_length: bool = False
                 ) -> int:
    """The longest input rounded up to LENGTH_MULTIPLE, at most `input_length` (padding beyond
    the longest input changes no output, and short prompts then run on short batches).

    With `pad_to_input_length`, `input_length` itself: one compiled program per task, but
    short prompts run at full length. Rounded, each length met compiles its own programs (at
    most input_length / LENGTH_MULTIPLE per task; evaluation keeps one length's in memory)."""
    if pad_to_input_length:
        return input_length
    longest = max(len(e["inputs"]) for e in examples)
    return min(input_length, -(-longest // LENGTH_MULTIPLE) * LENGTH_MULTIPLE)


def length_order(examples: Sequence[dict], *, input_length: int,
                 pad_to_input_length: bool = False) -> list[int]:
    """Indices of `examples` by the batch length each would take alone, shortest first (stable).

    Decoded in this order, a task meets each batch length in one run of batches, so the program
    compiled for a length can be dropped when the next length starts (one in memory at a time)."""
    def alone(index: int) -> int:
        return batch_length([examples[index]], input_length=input_length,
                            pad_to_input_length=pad_to_input_length)
    return sorted(range(len(examples)), key=alone)


def model_batch(examples: Sequence[dict], *, input_length: int, batch_size: int) -> dict:
    """Encoder features of up to `batch_size` examples, padded with empty rows to `batch_size`."""
    batch = {"encoder_input_tokens": _padded([e["inputs"] for e in examples],
                                             length=input_length, num_rows=batch_size)}
    if all("inputs_whole_word_ids" in e for e in examples):
        batch["encoder_whole_word_ids"] = _padded(
            [e["inputs_whole_word_ids"] for e in examples], length=input_length,
            num_rows=batch_size)
    return batch


def chunks(iterable: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _beam_outputs(predictor, batch, examples, *, vocabulary, items: ItemIndex, config,
                  constrained: bool) -> list:
    trie = None
    if constrained:
        trie = items.constraint_for([text_of(e["user_id"]) for e in examples],
                                    rows=len(batch["encoder_input_tokens"]))
    tokens, scores = predictor.beam_search(batch, num_decodes=config.num_beams,
                                           max_decode_length=items.max_length,
                                           alpha=config.alpha, trie=trie)
    outputs = []
    for row in range(len(examples)):
        beams = [inference.decode_tokens(vocabulary=vocabulary, tokens=tokens[row, k])
                 for k in range(tokens.shape[1]) if np.isfinite(scores[row, k])
                 and scores[row, k] > -1e9]
        outputs.append(beams)
    return outputs


def _item_tokens(ids: Sequence[str], *, items: ItemIndex, vocabulary) -> list[tuple[int, ...]]:
    missing = [i for i in ids if i not in items.tokens]
    extra = inference.tokenize_item_ids(vocabulary=vocabulary, item_ids=missing)
    return [items.tokens.get(i) or extra[i] for i in ids]


def _score_sequences(predictor, batch, token_lists, *, config, round_to: int = 16,
                     append_eos: bool = True) -> np.ndarray:
    """log p(sequence | input) [B, C] of each example's token sequences (padded rows score 0).
    The candidate axis is padded to a multiple of `round_to` (fewer compiled shapes)."""
    width = -(-max(len(ts) for ts in token_lists) // round_to) * round_to
    length = max(len(t) + (append_eos and t[-1:] != (inference.EOS_ID,))
                 for ts in token_lists for t in ts)
    rows = len(batch["encoder_input_tokens"])
    candidates, _ = scoring.pad_candidates(token_lists + [[]] * (rows - len(token_lists)),
                                           num_candidates=width, length=length,
                                           append_eos=append_eos)
    return predictor.score_candidates(batch, candidates, chunk_size=candidate_chunk(
        rows=rows, width=width, chunk_size=config.candidate_chunk_size))


def candidate_chunk(*, rows: int, width: int, chunk_size: int = 0) -> int:
    """Candidates scored at a time: `chunk_size` when it divides `width`, else the largest
    divisor of `width` that keeps rows x candidates within SCORED_ROWS (0: all at once).

    The decoder repeats the encoder outputs and computes [rows, T, vocabulary] logits for every
    example x candidate row: 32 examples x 112 candidates at once held 4.5 GiB for the tiny model.
    """
    if chunk_size > 0 and width % chunk_size == 0:
        return chunk_size
    if rows * width <= SCORED_ROWS:
        return 0
    return max((c for c in range(1, width) if width % c == 0 and rows * c <= SCORED_ROWS),
               default=1)


def _candidate_outputs(predictor, batch, examples, *, vocabulary, items: ItemIndex,
                       config) -> list:
    """Each example's shown candidates, best first by mean log-probability per token."""
    shown = [ids_of(e["candidates"]) for e in examples]
    token_lists = [_item_tokens(ids, items=items, vocabulary=vocabulary) for ids in shown]
    totals = _score_sequences(predictor, batch, token_lists, config=config)
    ranked = []
    for row, (ids, tokens) in enumerate(zip(shown, token_lists)):
        sizes = np.array([len(t) for t in tokens], np.float32)   # item tokens + eos
        scores = totals[row, :len(ids)] / sizes
        ranked.append([inference.ITEM_PREFIX + i
                       for i in scoring.rank_by_scores(candidates=ids, scores=scores)])
    return ranked


def yes_tokens(vocabulary) -> tuple[int, ...]:
    """The pieces of the answer "yes" (without end-of-sequence): p(yes) is their probability."""
    return tuple(int(t) for t in vocabulary.encode("yes"))


def _yes_outputs(predictor, batch, count, *, vocabulary, config) -> list[float]:
    """log p("yes" | input) of each example (the first pieces of the answer, as P5 scored)."""
    yes = [[yes_tokens(vocabulary)] for _ in range(count)]
    scores = _score_sequences(predictor, batch, yes, config=config, round_to=1,
                              append_eos=False)
    return [float(scores[row, 0]) for row in range(count)]


def _greedy_outputs(predictor, batch, count, *, vocabulary, config) -> list[str]:
    tokens = predictor.greedy(batch, max_decode_length=config.feature_lengths["targets"])
    return [inference.decode_tokens(vocabulary=vocabulary, tokens=tokens[row])
            for row in range(count)]


def _group_beam_outputs(predictor, batch, count, *, vocabulary) -> list[str]:
    tokens = group_beam_predict.decode(predictor, batch, config=protocols.P5_EXPLANATION_SEARCH)
    return [inference.decode_tokens(vocabulary=vocabulary, tokens=tokens[row])
            for row in range(count)]


def rows_per_call(*, batch_size: int, length: int, data_size: int = 1,
                  cells: int = ATTENTION_CELLS) -> int:
    """Examples per model call: `batch_size` (rounded up to the data axis), or fewer (a power
    of two, a multiple of the data axis) so that rows x length^2 stays within `cells`.

    The encoder's attention holds [rows, heads, L, L] float32 scores and softmax weights: 32
    rows at 768 tokens raised the tiny model's evaluation by 1 GiB, 8 rows by 0.3 GiB.
    """
    rows = 1
    while rows < batch_size and 2 * rows * length * length <= cells:
        rows *= 2
    return -(-min(rows, batch_size) // data_size) * data_size


def decode_examples(*, predictor, plan: TaskPlan, examples: Sequence[dict], vocabulary,
                    items: ItemIndex | None, config: EvalConfig, input_length: int) -> list:
    """Raw outputs of one batch: a text, ranked item texts (best first) or log p(yes) each;
    decoded in model calls of `rows_per_call` examples."""
    length = batch_length(examples, input_length=input_length,
                          pad_to_input_length=config.pad_to_input_length)
    rows = rows_per_call(batch_size=config.batch_size, length=length,
                         data_size=predictor.data_size, cells=config.max_attention_cells)
    outputs = []
    for part in chunks(examples, rows):
        batch = model_batch(part, input_length=length, batch_size=rows)
        outputs += _decode_batch(predictor=predictor, plan=plan, batch=batch, examples=part,
                                 vocabulary=vocabulary, items=items, config=config)
    return outputs


def _needed(items: ItemIndex | None, plan: TaskPlan) -> ItemIndex:
    """The item index, which item decodings cannot do without."""
    if items is None:
        raise ValueError(f"{plan.task}: {plan.decoding} decoding needs the dataset's item index")
    return items


def _decode_batch(*, predictor, plan: TaskPlan, batch: dict, examples: Sequence[dict],
                  vocabulary, items: ItemIndex | None, config: EvalConfig) -> list:
    count = len(examples)
    if plan.decoding in (BEAM, FREE_BEAM):
        return _beam_outputs(predictor, batch, examples, vocabulary=vocabulary, items=_needed(items, plan),
                             config=config, constrained=plan.decoding == BEAM)
    if plan.decoding == CANDIDATES:
        return _candidate_outputs(predictor, batch, examples, vocabulary=vocabulary,
                                  items=_needed(items, plan), config=config)
    if plan.decoding == YES_RANK:
        return _yes_outputs(predictor, batch, count, vocabulary=vocabulary, config=config)
    if plan.decoding == GROUP_BEAM:
        return _group_beam_outputs(predictor, batch, count, vocabulary=vocabulary)
    return _greedy_outputs(predictor, batch, count, vocabulary=vocabulary, config=config)
