"""The group beam search of `p5_jax.group_beam` on a trained model and on a Predictor's mesh.

`model_search` prepares the encoder output and decoder cache as
`EncoderDecoderModel.predict_batch` does (the encoder and cross-attention projections run once
per example; the beams read that one copy). `decode` jits it once per predictor and setting,
with the batch split over the mesh's data axis and the result replicated, as `Predictor` does.
"""
from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping

import jax
import numpy as np

from p5_jax import group_beam, models, partitioning
from p5_jax.network import Transformer

_BATCH_KEYS = ("encoder_input_tokens", "encoder_whole_word_ids")
_JITTED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def model_search(model: models.EncoderDecoderModel, params, batch, *,
                 config: group_beam.GroupBeamConfig):
    """(tokens_BxT, scores_B) of the best hypothesis per example, T = config.max_length - 1."""
    encoder_tokens = batch["encoder_input_tokens"]
    encoded = model.module.apply({"params": params}, encoder_tokens,
                                 batch.get("encoder_whole_word_ids"), method=Transformer.encode)
    length = config.max_decode_len
    cache = model.init_cache(params, encoded=encoded, encoder_input_tokens=encoder_tokens,
                             max_decode_length=length)
    cache, static = models.split_static_cache(cache)

    def tokens_to_logits(ids_Nx1, cache):
        logits, variables = model.module.apply(
            {"params": params, "cache": models.merge_static_cache(cache, static)}, encoded,
            encoder_tokens, ids_Nx1, decode=True, max_decode_length=length, mutable=["cache"],
            method=Transformer.decode)
        return logits[:, -1, :], models.split_static_cache(variables["cache"])[0]

    return group_beam.group_beam_search(cache=cache, tokens_to_logits=tokens_to_logits,
                                        eos_id=models.EOS_ID, config=config)


def _jitted(predictor, config: group_beam.GroupBeamConfig):
    by_config = _JITTED.setdefault(predictor, {})
    if config not in by_config:
        by_config[config] = jax.jit(
            functools.partial(model_search, predictor.model, config=config),
            out_shardings=partitioning.replicated(predictor.mesh))
    return by_config[config]


def _put_batch(mesh, batch: Mapping[str, np.ndarray]) -> dict:
    """Global arrays split over the data axis from the same host value on every process."""
    return partitioning.global_batch_arrays(batch, partitioning.batch_sharding(mesh), _BATCH_KEYS)


def decode(predictor, batch: Mapping[str, np.ndarray], *,
           config: group_beam.GroupBeamConfig) -> np.ndarray:
    """Tokens int32 [B, T] (numpy) of each example's best hypothesis, on `predictor`'s mesh."""
    with partitioning.sharding_context(predictor.mesh, predictor.rules):
        tokens, _ = _jitted(predictor, config)(predictor.params,
                                               _put_batch(predictor.mesh, batch))
    return np.asarray(tokens)
