"""EncoderDecoderModel: loss, scoring and beam-search prediction around the T5 network.

Batch keys (see docs/ARCHITECTURE.md): encoder_input_tokens, encoder_whole_word_ids (optional),
decoder_input_tokens, decoder_target_tokens, decoder_loss_weights; packed batches (several
examples per row, `P5EncDecFeatureConverter(pack=True)`) add encoder_segment_ids and
decoder_segment_ids (their encoder_positions and decoder_positions are not needed: within a
segment, index distances are position distances; see `network.Encoder`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import traverse_util

from p5_jax import decoding
from p5_jax.layers import STATIC_CACHE_NAMES
from p5_jax.network import Transformer
from p5_jax.token_ids import EOS_ID


def cross_entropy_with_logits(*, logits_BxTxV, targets_BxT, label_smoothing=0.0, z_loss=0.0):
    """Per-token (cross entropy, z-loss term), float32.

    Label smoothing spreads `label_smoothing` over the other V-1 tokens; the entropy of that soft
    target is subtracted so a perfect prediction scores 0. The z-loss term is
    z_loss * logsumexp(logits)^2, which keeps the softmax normaliser near 1.
    """
    logits = logits_BxTxV.astype(jnp.float32)
    vocab = logits.shape[-1]
    log_z = jax.nn.logsumexp(logits, axis=-1)
    # A one-hot select instead of take_along_axis: its gradient is elementwise, not a scatter.
    vocab_ids = jnp.arange(vocab, dtype=targets_BxT.dtype).reshape((1,) * targets_BxT.ndim + (vocab,))
    is_target = vocab_ids == targets_BxT[..., None]
    target_log_probs = jnp.sum(jnp.where(is_target, logits, 0.0), axis=-1) - log_z
    if label_smoothing:
        confidence = 1.0 - label_smoothing
        low = label_smoothing / (vocab - 1)
        entropy = -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low + 1e-20))
        others = jnp.sum(logits - log_z[..., None], axis=-1) - target_log_probs
        loss = -(confidence * target_log_probs + low * others) - entropy
    else:
        loss = -target_log_probs
    return loss, z_loss * jnp.square(log_z)


def split_static_cache(cache):
    """(per-step cache, flat dict of the static cross-attention leaves) of a decoder cache."""
    flat = traverse_util.flatten_dict(cache)
    static = {path: leaf for path, leaf in flat.items() if path[-1] in STATIC_CACHE_NAMES}
    steps = {path: leaf for path, leaf in flat.items() if path not in static}
    return traverse_util.unflatten_dict(steps), static


def merge_static_cache(cache, static):
    """Inverse of `split_static_cache`."""
    return traverse_util.unflatten_dict({**traverse_util.flatten_dict(cache), **static})


def _refuse_packed(batch, name):
    if "encoder_segment_ids" in batch or "decoder_segment_ids" in batch:
        raise ValueError(f"{name} takes one example per row; give it unpacked batches "
                         "(P5EncDecFeatureConverter(pack=False)).")


class EncoderDecoderModel:
    """Loss, scoring and prediction for a `Transformer`; params are passed unboxed."""

    def __init__(self, *, module: Transformer, label_smoothing: float = 0.0, z_loss: float = 0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        if z_loss < 0:
            raise ValueError(f"z_loss must be >= 0, got {z_loss}.")
        self.module, self.label_smoothing, self.z_loss = module, label_smoothing, z_loss

    def init(self, rng, *, batch_size: int, input_length: int, target_length: int):
        """Parameters boxed with logical axis names (wrap in jax.eval_shape for shapes only)."""
        encoder_tokens = jnp.ones((batch_size, input_length), jnp.int32)
        decoder_tokens = jnp.ones((batch_size, target_length), jnp.int32)
        variables = self.module.init({"params": rng}, encoder_tokens, decoder_tokens,
                                     jnp.ones_like(encoder_tokens))
        return variables["params"]

    def _logits(self, params, batch, dropout_rng=None):
        rngs = None if dropout_rng is None else {"dropout": dropout_rng}
        return self.module.apply(
            {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
            batch.get("encoder_whole_word_ids"),
            encoder_segment_ids=batch.get("encoder_segment_ids"),
            decoder_segment_ids=batch.get("decoder_segment_ids"),
            enable_dropout=dropout_rng is not None, rngs=rngs)

    def loss_fn(self, params, batch, dropout_rng=None):
        """(mean loss per target token, aux); dropout is on exactly when dropout_rng is given.

        Packed and unpacked batches give the same per-token losses: the mean runs over the real
        target tokens of the batch however they are laid out in rows.

        aux: loss_sum (summed cross entropy, z-loss excluded), num_tokens, num_correct (argmax
        hits), z_loss (mean z-loss term). loss = (loss_sum + summed z-loss) / num_tokens.
        """
        logits = self._logits(params, batch, dropout_rng)
        targets = batch["decoder_target_tokens"]
        weights = batch["decoder_loss_weights"].astype(jnp.float32)
        token_loss, token_z = cross_entropy_with_logits(
            logits_BxTxV=logits, targets_BxT=targets, label_smoothing=self.label_smoothing,
            z_loss=self.z_loss)
        num_tokens = jnp.sum(weights)
        denominator = jnp.maximum(num_tokens, 1.0)
        loss_sum = jnp.sum(token_loss * weights)
        z_sum = jnp.sum(token_z * weights)
        correct = (jnp.argmax(logits, axis=-1) == targets) & (weights > 0)
        aux = {"loss_sum": loss_sum, "num_tokens": num_tokens,
               "num_correct": jnp.sum(correct.astype(jnp.float32)),
               "z_loss": z_sum / denominator}
        return (loss_sum + z_sum) / denominator, aux

    def score_batch(self, params, batch):
        """Per-example sum of log p(target token) over positions with nonzero loss weight.

        One example per row: packed batches (segment ids) are refused.
        """
        _refuse_packed(batch, "score_batch")
        logits = self._logits(params, batch).astype(jnp.float32)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        targets = batch["decoder_target_tokens"]
        token_log_probs = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        weights = batch.get("decoder_loss_weights", (targets > 0).astype(jnp.float32))
        return jnp.sum(token_log_probs * weights, axis=-1)

    def init_cache(self, params, *, encoded, encoder_input_tokens, max_decode_length: int):
        """Decoder cache for [B] rows: self-attention slots and positions zeroed, cross-attention
        keys/values projected from `encoded` here, once per example (the beams of an example
        read that one copy; no step projects them again)."""
        start = jnp.zeros((encoder_input_tokens.shape[0], 1), jnp.int32)
        _, variables = self.module.apply(
            {"params": params}, encoded, encoder_input_tokens, start, decode=True,
            max_decode_length=max_decode_length, mutable=["cache"], method=Transformer.decode)
        return variables["cache"]

    def predict_batch(self, params, batch, *, num_decodes: int = 1, alpha: float = 0.6,
                      max_decode_length: int = 32, prefix_trie=None):
        """Beam search: (tokens_BxKxT, scores_BxK), best first.

        The encoder and the cross-attention key/value projections run once per example, and the
        beams of an example read that one copy (no per-beam expansion). One example per row.
        """
        _refuse_packed(batch, "predict_batch")
        encoder_tokens = batch["encoder_input_tokens"]
        encoded = self.module.apply({"params": params}, encoder_tokens,
                                    batch.get("encoder_whole_word_ids"),
                                    method=Transformer.encode)
        cache = self.init_cache(params, encoded=encoded, encoder_input_tokens=encoder_tokens,
                                max_decode_length=max_decode_length)
        # The projected encoder output never changes: it stays outside the search state, so
        # beam search neither carries nor reorders it at every step.
        cache, static = split_static_cache(cache)

        def tokens_to_logits(ids_Nx1, cache):
            logits, variables = self.module.apply(
                {"params": params, "cache": merge_static_cache(cache, static)}, encoded,
                encoder_tokens, ids_Nx1, decode=True, max_decode_length=max_decode_length,
                mutable=["cache"], method=Transformer.decode)
            return logits[:, -1, :].astype(jnp.float32), split_static_cache(variables["cache"])[0]

        return decoding.beam_search(
            cache=cache, tokens_to_logits=tokens_to_logits, eos_id=EOS_ID,
            num_decodes=num_decodes, alpha=alpha, max_decode_len=max_decode_length,
            constraint=prefix_trie)
