"""Hugging Face's group (diverse) beam search, as transformers 4.2.1 runs it, in JAX.

P5 (which pins transformers 4.2.1) decoded explanations with `generate(num_beams=12,
num_beam_groups=3, min_length=9, repetition_penalty=0.7)`. This module repeats that search
step for step: jit-able, batched, fixed shapes, the model reached only through
`tokens_to_logits` (see `p5_jax.decoding`). Its semantics, from 4.2.1's `group_beam_search`,
`BeamSearchScorer` and logits processors (later versions keep the processors but changed the
scorer; transformers 5 loads group beam search from the Hub as remote code):

- K beams in G groups of S = K / G. At the first step only the first beam of each group is live
  (the others start at -1e9), so every group starts from the same distribution.
- Every step the model's logits become log-probabilities (log_softmax) and the processors then
  run on those log-probabilities, group by group, in HF's order:
  1. diversity (diversity_penalty > 0, groups after the first): minus diversity_penalty times the
     number of beams of the earlier groups that picked the token at this step;
  2. repetition (repetition_penalty != 1): for every token id in the beam so far, the decoder
     start token included, score < 0 -> score * penalty, else score / penalty. On
     log-probabilities (all <= 0) and without renormalising, a penalty below 1 makes repeats
     *more* likely: P5's 0.7 favours them (and the start token, T5's pad id 0);
  3. min length: eos at -inf while the sequence, start token included, is shorter than
     min_length (min_length=9: eos is the 9th generated token at the earliest).
- A beam's score is the sum of its processed log-probabilities. Each group ranks the 2S best
  extensions of its S beams; an eos among the first S ends a hypothesis, scored
  sum / L ** length_penalty with L the hypothesis length before the eos counting the start token
  (= generated tokens including the eos); the best S other extensions go on.
- The hypotheses of all groups share one list of the K best per example. After each group an
  example is done once that list is full and, with early_stopping, at once; without it (HF's
  default), when its worst score >= the group's best extension score / L ** length_penalty (L:
  current length counting the start token). A done example skips the later groups and steps.
- At max_length (counting the start token) the live beams of examples not done join the list,
  scored sum / max_length ** length_penalty; the best of the list is returned.

With diversity_penalty 0 (P5 passed none; T5's config default is 0.0) the groups run identical
searches of S beams, and each finished hypothesis enters the K-best list once per group. Here one
group is searched and its hypotheses are offered G times: the same result for G times less work.
Float32 throughout (HF normalises and compares scores in Python floats): results can differ
from HF only where two scores tie to within float32 rounding.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from p5_jax import decoding

NEG_INIT = -1e9  # HF's initial score of every beam but the first of each group


@dataclasses.dataclass(frozen=True)
class GroupBeamConfig:
    """HF `generate` arguments of a group beam search (their names, their defaults for T5).

    max_length counts the decoder start token, as HF does for encoder-decoder models: at most
    max_length - 1 tokens are generated. num_return_sequences is 1 (the best hypothesis).
    """
    num_beams: int
    num_beam_groups: int = 1
    max_length: int = 20
    min_length: int = 0
    repetition_penalty: float = 1.0
    diversity_penalty: float = 0.0
    length_penalty: float = 1.0
    early_stopping: bool = False

    def __post_init__(self):
        if self.num_beams < 2 or self.num_beams % self.num_beam_groups:
            raise ValueError(f"num_beams ({self.num_beams}) must be >= 2 and divisible by "
                             f"num_beam_groups ({self.num_beam_groups})")
        if self.max_length < 2:
            raise ValueError(f"max_length counts the start token and must be >= 2, got "
                             f"{self.max_length}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def group_size(self) -> int:
        return self.num_beams // self.num_beam_groups

    @property
    def max_decode_len(self) -> int:
        return self.max_length - 1

    @property
    def searched_groups(self) -> int:
        """Groups that differ: without a diversity penalty every group runs the same search, so
        one is run and its hypotheses are offered once per group, as HF's copies offer them."""
        return self.num_beam_groups if self.diversity_penalty > 0 else 1

    @property
    def live_beams(self) -> int:
        """Beams the model runs on per example."""
        return self.group_size * self.searched_groups


# -- logits processors (on log-probabilities, as HF's beam searches apply them) ------------------
def repetition_penalty(scores_NxV, present_NxV, *, penalty: float):
    """HF's RepetitionPenaltyLogitsProcessor for the ids marked present in each row."""
    penalised = jnp.where(scores_NxV < 0, scores_NxV * penalty, scores_NxV / penalty)
    return jnp.where(present_NxV, penalised, scores_NxV)


def min_length_mask(scores_NxV, *, cur_len, min_length: int, eos_id: int):
    """HF's MinLengthLogitsProcessor: eos at -inf while cur_len (start token counted) is short."""
    is_eos = jnp.arange(scores_NxV.shape[-1]) == eos_id
    return jnp.where(is_eos & (cur_len < min_length), -jnp.inf, scores_NxV)


def diversity_penalty(scores_BxSxV, picked_BxP, *, penalty: float):
    """HF's HammingDiversityLogitsProcessor: minus penalty x how many of the P tokens the earlier
    groups picked at this step equal each token."""
    batch, vocab = scores_BxSxV.shape[0], scores_BxSxV.shape[-1]
    counts_BxV = jnp.zeros((batch, vocab), scores_BxSxV.dtype).at[
        jnp.arange(batch)[:, None], picked_BxP].add(1.0)
    return scores_BxSxV - penalty * counts_BxV[:, None, :]


def token_presence(tokens_NxT, *, step, start_N, vocab_size: int):
    """bool [N, V]: the ids of each row's start token and its first `step` tokens."""
    filled = jnp.arange(tokens_NxT.shape[-1]) < step
    ids = jnp.where(filled, tokens_NxT, start_N[:, None])
    rows = jnp.arange(ids.shape[0])[:, None]
    return jnp.zeros((ids.shape[0], vocab_size), bool).at[rows, ids].set(True)


# -- the search -----------------------------------------------------------------------------------
class _Beams(NamedTuple):
    """Live beams, [B, config.live_beams] (or one group's [B, S])."""
    tokens: jax.Array          # [..., T] generated tokens, zeros past the current step
    scores: jax.Array          # summed processed log-probabilities
    last: jax.Array            # the token each beam feeds the model next


class _Finished(NamedTuple):
    """Per example: the K-best list of finished hypotheses (as far as the search needs it)."""
    scores_BxK: jax.Array      # best first; -inf: empty slot
    count_B: jax.Array         # entries in the list (at most K)
    best_tokens_BxT: jax.Array
    best_score_B: jax.Array
    done_B: jax.Array


class _State(NamedTuple):
    step: jax.Array            # scalar: tokens generated so far (HF's cur_len - 1)
    beams: _Beams
    finished: _Finished
    cache: Any


def group_beam_search(*, inputs: Optional[jax.Array] = None, cache: Any,
                      tokens_to_logits: decoding.TokensToLogits, eos_id: int,
                      config: GroupBeamConfig) -> tuple[jax.Array, jax.Array]:
    """Returns (tokens_BxT, scores_B): the best hypothesis of each example and its score.

    T = config.max_length - 1 generated tokens (no start token); a hypothesis ended by eos keeps
    it and has zeros after, one cut at max_length has none. inputs and cache as in
    `decoding.beam_search` (inputs[:, 0] is the decoder start token, else 0); as there, the
    first step runs on the B example rows and its cache is then copied to the live beams
    (`config.live_beams` per example).
    """
    start_B = decoding._start_tokens(inputs, cache)
    beams = config.live_beams
    logits_BxV, log_norm_B, cache = decoding._step_logits(tokens_to_logits, start_B, cache,
                                                          None, None)
    log_probs_BxKxV = jnp.repeat((logits_BxV - log_norm_B[:, None])[:, None], beams, axis=1)
    cache = decoding._map_batched(functools.partial(decoding.expand_to_beams, num_beams=beams),
                                  cache)
    advance = functools.partial(_advance, config=config, eos_id=eos_id, start_B=start_B)
    state = advance(_initial_state(start_B, config=config), log_probs_BxKxV, cache)

    def step(state):
        logits_NxV, log_norm_N, new_cache = decoding._step_logits(
            tokens_to_logits, state.beams.last.reshape(-1), state.cache, None, None)
        log_probs = (logits_NxV - log_norm_N[:, None]).reshape(*state.beams.last.shape, -1)
        return advance(state, log_probs, new_cache)

    def keep_going(state):
        return (state.step < config.max_decode_len) & ~jnp.all(state.finished.done_B)

    state = jax.lax.while_loop(keep_going, step, state)
    return _finalize(state, config=config)


def _initial_state(start_B, *, config: GroupBeamConfig) -> _State:
    batch, beams, length = start_B.shape[0], config.live_beams, config.max_decode_len
    first_of_group = jnp.arange(beams) % config.group_size == 0
    return _State(
        step=jnp.array(0, jnp.int32),
        beams=_Beams(
            tokens=jnp.zeros((batch, beams, length), jnp.int32),
            scores=jnp.broadcast_to(jnp.where(first_of_group, 0.0, NEG_INIT), (batch, beams)),
            last=jnp.broadcast_to(start_B[:, None], (batch, beams))),
        finished=_Finished(
            scores_BxK=jnp.full((batch, config.num_beams), -jnp.inf),
            count_B=jnp.zeros((batch,), jnp.int32),
            best_tokens_BxT=jnp.zeros((batch, length), jnp.int32),
            best_score_B=jnp.full((batch,), -jnp.inf),
            done_B=jnp.zeros((batch,), bool)),
        cache=None)


def _advance(state: _State, log_probs_BxKxV, new_cache, *, config: GroupBeamConfig, eos_id,
             start_B) -> _State:
    """One step of every group, in order (a group sees the tokens the earlier ones picked)."""
    batch, beams, vocab = log_probs_BxKxV.shape
    size = config.group_size
    if config.repetition_penalty != 1.0:
        present_BxKxV = token_presence(
            state.beams.tokens.reshape(batch * beams, -1), step=state.step,
            start_N=jnp.repeat(start_B, beams), vocab_size=vocab).reshape(batch, beams, vocab)
    finished = state.finished
    groups: list[_Beams] = []
    origins: list[jax.Array] = []
    for g in range(config.searched_groups):
        rows = slice(g * size, (g + 1) * size)
        scores = log_probs_BxKxV[:, rows]
        if config.diversity_penalty > 0 and g > 0:
            picked = jnp.concatenate([b.last for b in groups], axis=1)
            scores = diversity_penalty(scores, picked, penalty=config.diversity_penalty)
        if config.repetition_penalty != 1.0:
            scores = repetition_penalty(scores, present_BxKxV[:, rows],
                                        penalty=config.repetition_penalty)
        scores = min_length_mask(scores, cur_len=state.step + 1, min_length=config.min_length,
                                 eos_id=eos_id)
        group = jax.tree.map(lambda x, rows=rows: x[:, rows], state.beams)
        candidates = _candidates(group, scores, step=state.step)
        active_B = ~finished.done_B
        for _ in range(config.num_beam_groups // config.searched_groups):
            finished = _add_finished(finished, candidates, step=state.step, config=config,
                                     eos_id=eos_id)
        group, origin = _next_beams(group, candidates, active_B, eos_id=eos_id)
        groups.append(group)
        origins.append(origin + g * size)
    origin_BxK = jnp.concatenate(origins, axis=1)
    return _State(step=state.step + 1,
                  beams=jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *groups),
                  finished=finished, cache=decoding._gather_cache(new_cache, origin_BxK))


class _Candidates(NamedTuple):
    """A group's 2S best extensions, best first."""
    scores_Bx2S: jax.Array
    tokens_Bx2S: jax.Array     # the token each adds
    origin_Bx2S: jax.Array     # the beam (within the group) each extends
    sequences_Bx2SxT: jax.Array


def _candidates(group: _Beams, scores_BxSxV, *, step) -> _Candidates:
    batch, size, vocab = scores_BxSxV.shape
    total = (scores_BxSxV + group.scores[..., None]).reshape(batch, size * vocab)
    scores_Bx2S, index_Bx2S = decoding.top_k_rows(total, 2 * size)
    origin_Bx2S, token_Bx2S = index_Bx2S // vocab, (index_Bx2S % vocab).astype(jnp.int32)
    sequences = decoding._gather_beams(group.tokens, origin_Bx2S).at[:, :, step].set(token_Bx2S)
    return _Candidates(scores_Bx2S, token_Bx2S, origin_Bx2S, sequences)


def _add_finished(finished: _Finished, candidates: _Candidates, *, step,
                  config: GroupBeamConfig, eos_id) -> _Finished:
    """HF's BeamSearchScorer.process for one group's hypotheses: an eos among the first S
    candidates is offered to the K-best list; then the done test. Done examples are skipped."""
    size = candidates.scores_Bx2S.shape[1] // 2
    cur_len = (step + 1).astype(jnp.float32)
    active_B = ~finished.done_B
    ends = ((candidates.tokens_Bx2S == eos_id) & (jnp.arange(2 * size) < size)[None, :]
            & active_B[:, None])
    hyp_scores = jnp.where(ends, candidates.scores_Bx2S / cur_len ** config.length_penalty,
                           -jnp.inf)
    best_tokens, best_score = _offer(finished, candidates.sequences_Bx2SxT, hyp_scores, ends,
                                     num_beams=config.num_beams)
    list_scores, _ = jax.lax.top_k(jnp.concatenate([finished.scores_BxK, hyp_scores], axis=1),
                                   config.num_beams)
    count = jnp.minimum(finished.count_B + ends.sum(1), config.num_beams)
    bound = candidates.scores_Bx2S[:, 0] / cur_len ** config.length_penalty
    stops = (count >= config.num_beams) & (config.early_stopping | (list_scores[:, -1] >= bound))
    return _Finished(scores_BxK=list_scores, count_B=count, best_tokens_BxT=best_tokens,
                     best_score_B=best_score, done_B=finished.done_B | (active_B & stops))


def _next_beams(group: _Beams, candidates: _Candidates, active_B, *,
                eos_id) -> tuple[_Beams, jax.Array]:
    """(the group's next beams: its S best non-eos candidates, the beam each extends); examples
    done before this group keep theirs."""
    size = group.scores.shape[1]
    is_eos = candidates.tokens_Bx2S == eos_id
    scores, pick = jax.lax.top_k(jnp.where(is_eos, -jnp.inf, candidates.scores_Bx2S), size)
    new = _Beams(tokens=decoding._gather_beams(candidates.sequences_Bx2SxT, pick), scores=scores,
                 last=decoding._gather_beams(candidates.tokens_Bx2S, pick))
    new = jax.tree.map(lambda n, o: jnp.where(active_B.reshape((-1,) + (1,) * (n.ndim - 1)), n, o),
                       new, group)
    origin = jnp.where(active_B[:, None], decoding._gather_beams(candidates.origin_Bx2S, pick),
                       jnp.arange(size))
    return new, origin


def _offer(finished: _Finished, tokens_BxCxT, scores_BxC, offered_BxC, *, num_beams: int):
    """(best tokens, best score) after offering C hypotheses to the K-best list in order.

    An offer joins the list when it is not full or beats its worst entry (judged before this
    batch of offers: that differs from HF only for exactly tied scores). HF returns the last
    listed of equal best scores, so a later offer wins a tie.
    """
    joins = offered_BxC & ((finished.count_B < num_beams)[:, None]
                           | (scores_BxC > finished.scores_BxK[:, -1:]))
    scores = jnp.where(joins, scores_BxC, -jnp.inf)
    top_B = jnp.max(scores, axis=1)
    at_top = joins & (scores == top_B[:, None])
    last_top_B = scores.shape[1] - 1 - jnp.argmax(at_top[:, ::-1], axis=1)
    wins_B = jnp.any(joins, axis=1) & (top_B >= finished.best_score_B)
    new_tokens = jnp.take_along_axis(tokens_BxCxT, last_top_B[:, None, None], axis=1)[:, 0]
    return (jnp.where(wins_B[:, None], new_tokens, finished.best_tokens_BxT),
            jnp.where(wins_B, top_B, finished.best_score_B))


def _finalize(state: _State, *, config: GroupBeamConfig) -> tuple[jax.Array, jax.Array]:
    """HF's finalize: the live beams of examples not done are offered, cut at max_length (when
    the groups are copies, one copy: the others bring the same tokens)."""
    scores = state.beams.scores / jnp.float32(config.max_length) ** config.length_penalty
    offered = jnp.broadcast_to(~state.finished.done_B[:, None], scores.shape)
    return _offer(state.finished, state.beams.tokens, scores, offered,
                  num_beams=config.num_beams)
