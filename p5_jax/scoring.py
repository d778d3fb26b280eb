"""Candidate ranking by log-likelihood: the encoder runs once per input, the decoder per candidate.

A candidate's score is log p(candidate tokens + eos | input), the summed token log-probabilities
of the whole sequence (no length normalisation), i.e. the probability that the model generates
exactly that item. Ranking a user's candidates by this score gives a full ranking, so HR@1/5/10
and NDCG@5/10 among them are exact (beam order over all items would rank only the candidates that
happen to fall in the beams).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from p5_jax.network import Transformer
from p5_jax.token_ids import EOS_ID, PAD_ID


def shift_right(tokens_NxT: jax.Array) -> jax.Array:
    """Decoder inputs: targets shifted one step right, starting with the start token 0."""
    return jnp.pad(tokens_NxT, ((0, 0), (1, 0)))[:, :-1]


def _chunk_log_likelihood(module, params, encoded_BxLxD, encoder_tokens_BxL, candidates_BxCxT):
    batch, count, length = candidates_BxCxT.shape
    encoded_N = jnp.repeat(encoded_BxLxD, count, axis=0)
    encoder_tokens_N = jnp.repeat(encoder_tokens_BxL, count, axis=0)
    targets_NxT = candidates_BxCxT.reshape(batch * count, length)
    logits_NxTxV = module.apply({"params": params}, encoded_N, encoder_tokens_N,
                                shift_right(targets_NxT), method=Transformer.decode)
    log_probs = jax.nn.log_softmax(logits_NxTxV.astype(jnp.float32), axis=-1)
    token_ll_NxT = jnp.take_along_axis(log_probs, targets_NxT[..., None], axis=-1)[..., 0]
    weights_NxT = (targets_NxT != PAD_ID).astype(jnp.float32)
    return jnp.sum(token_ll_NxT * weights_NxT, axis=-1).reshape(batch, count)


def candidate_log_likelihoods(*, module, params, batch, candidates_BxCxT: jax.Array,
                              chunk_size: int = 0) -> jax.Array:
    """log p(candidate | input) for every candidate of every example: float32 [B, C].

    `candidates_BxCxT` holds token ids ending with eos and padded with 0 (a row of zeros scores 0;
    mask it out afterwards). With `chunk_size` > 0 (dividing C) the decoder runs over that many
    candidates at a time, bounding the [B * chunk, T, V] logits held at once.
    """
    encoder_tokens = batch["encoder_input_tokens"]
    encoded = module.apply({"params": params}, encoder_tokens,
                           batch.get("encoder_whole_word_ids"), method=Transformer.encode)
    count = candidates_BxCxT.shape[1]
    if chunk_size <= 0 or chunk_size >= count:
        return _chunk_log_likelihood(module, params, encoded, encoder_tokens, candidates_BxCxT)
    if count % chunk_size:
        raise ValueError(f"chunk_size {chunk_size} does not divide the {count} candidates")
    chunks_KxBxCxT = jnp.swapaxes(candidates_BxCxT.reshape(
        (candidates_BxCxT.shape[0], count // chunk_size, chunk_size, -1)), 0, 1)
    scores_KxBxC = jax.lax.map(
        lambda chunk: _chunk_log_likelihood(module, params, encoded, encoder_tokens, chunk),
        chunks_KxBxCxT)
    return jnp.swapaxes(scores_KxBxC, 0, 1).reshape(candidates_BxCxT.shape[0], count)


def pad_candidates(token_lists: Sequence[Sequence[Sequence[int]]], *, num_candidates: int,
                   length: int, append_eos: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per example lists of tokenised candidates -> (tokens int32 [B, C, T], valid bool [B, C]).

    Each candidate gets eos appended (if missing, and unless `append_eos` is False: a prefix
    such as the answer "yes" is then scored alone); missing candidates are rows of padding.
    """
    tokens = np.zeros((len(token_lists), num_candidates, length), np.int32)
    valid = np.zeros((len(token_lists), num_candidates), bool)
    for row, candidates in enumerate(token_lists):
        if len(candidates) > num_candidates:
            raise ValueError(f"example {row} has {len(candidates)} candidates; "
                             f"room for {num_candidates}")
        for column, ids in enumerate(candidates):
            ids = list(ids)
            if append_eos and (not ids or ids[-1] != EOS_ID):
                ids.append(EOS_ID)
            if len(ids) > length:
                raise ValueError(f"a candidate of {len(ids)} tokens exceeds length {length}")
            tokens[row, column, :len(ids)] = ids
            valid[row, column] = True
    return tokens, valid


def _tie_break(item_id: str) -> bytes:
    return hashlib.blake2b(item_id.encode(), digest_size=8).digest()


def rank_by_scores(*, candidates: Sequence[str], scores: Sequence[float] | np.ndarray) -> list[str]:
    """Candidate ids best first.

    Ties (e.g. a model that scores everything alike) fall in a fixed hashed order of the ids,
    never in list order: test candidates often list the true item first.
    """
    if len(candidates) > len(scores):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores")
    order = sorted(range(len(candidates)),
                   key=lambda i: (-float(scores[i]), _tie_break(candidates[i])))
    return [candidates[i] for i in order]
