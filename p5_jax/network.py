"""Flax T5 encoder-decoder (T5 v1.0 and T5.1.1) with P5's whole-word embedding.

Parameter tree (names used by `p5_jax.hf_weights`):
  token_embedder [vocab, embed]; whole_word_embedder [whole_words, embed] (when enabled);
  encoder/{relpos_bias, layers_i/{pre_attention_layer_norm, attention, pre_mlp_layer_norm, mlp},
  final_layer_norm}; decoder/{relpos_bias, layers_i/{pre_self_attention_layer_norm,
  self_attention, pre_cross_attention_layer_norm, encoder_decoder_attention, pre_mlp_layer_norm,
  mlp}, final_layer_norm}; logits_dense [embed, vocab] (untied only).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import linen as nn

from p5_jax.layers import (
    Dropout,
    FeedForward,
    MultiHeadAttention,
    RelativePositionBias,
    RMSNorm,
    boxed_param,
    constrain,
)

FEED_FORWARDS = ("relu", "gated-gelu")


@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int
    d_model: int
    num_heads: int
    d_kv: int
    d_ff: int
    num_encoder_layers: int
    num_decoder_layers: int
    feed_forward: str = "relu"          # "relu" (T5 v1.0) | "gated-gelu" (T5.1.1)
    tie_embeddings: bool = True         # tied logits are scaled by d_model**-0.5
    relative_buckets: int = 32
    relative_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    whole_word_embeddings: int = 512    # 0 switches P5's whole-word embedding off
    dtype: str = "float32"              # compute dtype; parameters stay float32

    def __post_init__(self):
        if self.feed_forward not in FEED_FORWARDS:
            raise ValueError(f"feed_forward must be one of {FEED_FORWARDS}, "
                             f"got {self.feed_forward!r}.")
        for name in ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff", "num_encoder_layers",
                     "num_decoder_layers", "relative_buckets", "relative_max_distance"):
            if getattr(self, name) <= 0:
                raise ValueError(f"T5Config.{name} must be positive, got {getattr(self, name)}.")
        if self.whole_word_embeddings < 0:
            raise ValueError("T5Config.whole_word_embeddings must be >= 0.")
        jnp.dtype(self.dtype)  # raises on an unknown dtype name


def tiny_config(**overrides) -> T5Config:
    """A T5 v1.0 shaped model small enough for CPU tests and the demo."""
    base = dict(vocab_size=32128, d_model=64, num_heads=4, d_kv=16, d_ff=256,
                num_encoder_layers=2, num_decoder_layers=2)
    return T5Config(**{**base, **overrides})


def compact_config(**overrides) -> T5Config:
    """Twice tiny's width, no dropout: the CPU recipe of benchmarks/quality.py."""
    base = dict(vocab_size=32128, d_model=128, num_heads=4, d_kv=32, d_ff=512,
                num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0)
    return T5Config(**{**base, **overrides})


def t5_small_config(**overrides) -> T5Config:
    """t5-small (P5-S): 512 wide, 6+6 layers, 8 heads."""
    base = dict(vocab_size=32128, d_model=512, num_heads=8, d_kv=64, d_ff=2048,
                num_encoder_layers=6, num_decoder_layers=6)
    return T5Config(**{**base, **overrides})


def t5_base_config(**overrides) -> T5Config:
    """t5-base (P5-B): 768 wide, 12+12 layers, 12 heads."""
    base = dict(vocab_size=32128, d_model=768, num_heads=12, d_kv=64, d_ff=3072,
                num_encoder_layers=12, num_decoder_layers=12)
    return T5Config(**{**base, **overrides})


def t5_v1_1_small_config(**overrides) -> T5Config:
    """google/t5-v1_1-small: gated GELU, untied logits, 8+8 layers."""
    base = dict(vocab_size=32128, d_model=512, num_heads=6, d_kv=64, d_ff=1024,
                num_encoder_layers=8, num_decoder_layers=8, feed_forward="gated-gelu",
                tie_embeddings=False)
    return T5Config(**{**base, **overrides})


def t5_v1_1_base_config(**overrides) -> T5Config:
    """google/t5-v1_1-base: gated GELU, untied logits, 12+12 layers."""
    base = dict(vocab_size=32128, d_model=768, num_heads=12, d_kv=64, d_ff=2048,
                num_encoder_layers=12, num_decoder_layers=12, feed_forward="gated-gelu",
                tie_embeddings=False)
    return T5Config(**{**base, **overrides})


def _dropout(config, x, enable_dropout):
    return Dropout(config.dropout_rate)(x, deterministic=not enable_dropout)


class EncoderLayer(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x, *, bias, mask, enable_dropout=False):
        cfg, dtype = self.config, jnp.dtype(self.config.dtype)
        h = RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_attention_layer_norm")(x)
        h = MultiHeadAttention(cfg.num_heads, cfg.d_kv, cfg.dropout_rate, dtype,
                               name="attention")(h, h, bias=bias, mask=mask,
                                                 enable_dropout=enable_dropout)
        x = x + _dropout(cfg, h, enable_dropout)
        h = RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
        h = FeedForward(cfg.d_ff, cfg.feed_forward, cfg.dropout_rate, dtype,
                        name="mlp")(h, enable_dropout=enable_dropout)
        x = x + _dropout(cfg, h, enable_dropout)
        return constrain(x, ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, y, encoded, *, bias, self_mask, cross_mask, decode=False,
                 max_decode_length=None, enable_dropout=False):
        cfg, dtype = self.config, jnp.dtype(self.config.dtype)
        h = RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_self_attention_layer_norm")(y)
        h = MultiHeadAttention(cfg.num_heads, cfg.d_kv, cfg.dropout_rate, dtype,
                               max_decode_length=max_decode_length, name="self_attention")(
            h, h, bias=bias, mask=self_mask, decode=decode, enable_dropout=enable_dropout)
        y = y + _dropout(cfg, h, enable_dropout)
        h = RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_cross_attention_layer_norm")(y)
        h = MultiHeadAttention(cfg.num_heads, cfg.d_kv, cfg.dropout_rate, dtype,
                               static_kv=True, name="encoder_decoder_attention")(
            h, encoded, mask=cross_mask, decode=decode, enable_dropout=enable_dropout)
        y = y + _dropout(cfg, h, enable_dropout)
        h = RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(y)
        h = FeedForward(cfg.d_ff, cfg.feed_forward, cfg.dropout_rate, dtype,
                        name="mlp")(h, enable_dropout=enable_dropout)
        y = y + _dropout(cfg, h, enable_dropout)
        return constrain(y, ("batch", "length", "embed"))


def _check_segment_ids(encoder_segment_ids, decoder_segment_ids):
    if (encoder_segment_ids is None) != (decoder_segment_ids is None):
        raise ValueError("Packed batches need both encoder_segment_ids and decoder_segment_ids "
                         "(or neither, for one example per row).")


def encoder_self_mask(encoder_input_tokens, encoder_segment_ids=None):
    """[B, 1, 1, L] key-padding mask, or [B, 1, L, L] within-segment mask for packed rows."""
    if encoder_segment_ids is None:
        return (encoder_input_tokens > 0)[:, None, None, :]
    keys = encoder_segment_ids[:, None, :]
    return ((encoder_segment_ids[:, :, None] == keys) & (keys > 0))[:, None]


def cross_mask(encoder_input_tokens, encoder_segment_ids=None, decoder_segment_ids=None):
    """[B, 1, 1, L] key-padding mask, or [B, 1, T, L]: each target token sees only the inputs
    of its own example (segment) in a packed row."""
    if decoder_segment_ids is None:
        return (encoder_input_tokens > 0)[:, None, None, :]
    keys = encoder_segment_ids[:, None, :]
    return ((decoder_segment_ids[:, :, None] == keys) & (keys > 0))[:, None]


class Encoder(nn.Module):
    """Embedded inputs [B, L, E] -> encoded [B, L, E]; padding keys (token 0) are masked.

    Packed rows (`segment_ids` [B, L], 1, 2, ... per example, 0 on padding) attend only within
    their segment. The relative position bias is one [1, H, L, L] table from row indices: a
    packed example's tokens are contiguous and its positions count up by one, so for every pair
    inside a segment key index minus query index equals key position minus query position, and
    the buckets are those of the example on its own (they restart per segment); pairs across
    segments are masked before the softmax.
    """
    config: T5Config

    @nn.compact
    def __call__(self, x, encoder_input_tokens, *, segment_ids=None, enable_dropout=False):
        cfg, dtype = self.config, jnp.dtype(self.config.dtype)
        length = encoder_input_tokens.shape[1]
        positions = jnp.arange(length)
        bias = RelativePositionBias(cfg.relative_buckets, cfg.relative_max_distance,
                                    cfg.num_heads, bidirectional=True, dtype=dtype,
                                    name="relpos_bias")(positions[None, :], positions)
        mask = encoder_self_mask(encoder_input_tokens, segment_ids)
        x = _dropout(cfg, x, enable_dropout)
        for i in range(cfg.num_encoder_layers):
            x = EncoderLayer(cfg, name=f"layers_{i}")(x, bias=bias, mask=mask,
                                                      enable_dropout=enable_dropout)
        x = RMSNorm(cfg.layer_norm_epsilon, dtype, name="final_layer_norm")(x)
        return _dropout(cfg, x, enable_dropout)


class Decoder(nn.Module):
    """Embedded targets [B, T, E] -> hidden [B, T, E], causal; one token per call when decoding.

    Packed rows (`decoder_segment_ids` [B, T] with `encoder_segment_ids` [B, L]) attend causally
    within their segment and cross-attend only to their own example's inputs; the relative
    position bias is shared as in `Encoder` (within a segment index and position distances
    agree). Cached decoding takes one example per row (no segment ids).
    """
    config: T5Config

    def _positions(self, length, decode, max_decode_length):
        """Query positions [1, Q], key positions [K], causal mask [1, 1, Q, K] or None."""
        if not decode:
            positions = jnp.arange(length)
            causal = positions[None, :] <= positions[:, None]
            return positions[None, :], positions, causal[None, None]
        is_initialized = self.has_variable("cache", "position")
        position = self.variable("cache", "position", jnp.zeros, (), jnp.int32)
        if not is_initialized:
            positions = jnp.arange(length)
            return positions[None, :], positions, None
        query_positions = position.value[None, None]
        position.value = position.value + 1
        return query_positions, jnp.arange(max_decode_length), None  # mask kept by the cache

    @nn.compact
    def __call__(self, y, encoded, encoder_input_tokens, *, encoder_segment_ids=None,
                 decoder_segment_ids=None, decode=False, max_decode_length=None,
                 enable_dropout=False):
        cfg, dtype = self.config, jnp.dtype(self.config.dtype)
        _check_segment_ids(encoder_segment_ids, decoder_segment_ids)
        if decode and decoder_segment_ids is not None:
            raise ValueError("Cached decoding takes one example per row: no segment ids.")
        length = y.shape[1]
        query_pos, key_pos, self_mask = self._positions(length, decode, max_decode_length)
        bias = RelativePositionBias(cfg.relative_buckets, cfg.relative_max_distance,
                                    cfg.num_heads, bidirectional=False, dtype=dtype,
                                    name="relpos_bias")(query_pos, key_pos)
        if decoder_segment_ids is not None:
            same = decoder_segment_ids[:, :, None] == decoder_segment_ids[:, None, :]
            self_mask = self_mask & same[:, None]
        cross = cross_mask(encoder_input_tokens, encoder_segment_ids, decoder_segment_ids)
        y = _dropout(cfg, y, enable_dropout)
        for i in range(cfg.num_decoder_layers):
            y = DecoderLayer(cfg, name=f"layers_{i}")(
                y, encoded, bias=bias, self_mask=self_mask, cross_mask=cross,
                decode=decode, max_decode_length=max_decode_length,
                enable_dropout=enable_dropout)
        y = RMSNorm(cfg.layer_norm_epsilon, dtype, name="final_layer_norm")(y)
        return _dropout(cfg, y, enable_dropout)


class Transformer(nn.Module):
    """T5 encoder-decoder; all parameters boxed with logical axis names."""
    config: T5Config

    def setup(self):
        cfg = self.config
        self.token_embedder = boxed_param(self, "token_embedder", nn.initializers.normal(1.0),
                                          (cfg.vocab_size, cfg.d_model), ("vocab", "embed"))
        if cfg.whole_word_embeddings:
            self.whole_word_embedder = boxed_param(
                self, "whole_word_embedder", nn.initializers.normal(1.0),
                (cfg.whole_word_embeddings, cfg.d_model), ("whole_words", "embed"))
        if not cfg.tie_embeddings:
            self.logits_dense = boxed_param(
                self, "logits_dense", nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
                (cfg.d_model, cfg.vocab_size), ("embed", "vocab"))
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def _embed(self, tokens):
        x = jnp.take(self.token_embedder, tokens, axis=0).astype(jnp.dtype(self.config.dtype))
        return constrain(x, ("batch", "length", "embed"))

    def encode(self, encoder_input_tokens, encoder_whole_word_ids=None, *,
               encoder_segment_ids=None, enable_dropout=False):
        """Tokens [B, L] (+ whole-word ids [B, L]) -> encoded [B, L, E].

        Whole-word embeddings are added when the table is enabled and ids are given; ids past
        the table are capped at its last row, as the feature converter caps them.
        `encoder_segment_ids` [B, L] (packed rows) keeps attention inside each example.
        """
        x = self._embed(encoder_input_tokens)
        if self.config.whole_word_embeddings and encoder_whole_word_ids is not None:
            words = jnp.take(self.whole_word_embedder, encoder_whole_word_ids, axis=0,
                             mode="clip")
            x = x + words.astype(x.dtype)
        return self.encoder(x, encoder_input_tokens, segment_ids=encoder_segment_ids,
                            enable_dropout=enable_dropout)

    def decode(self, encoded, encoder_input_tokens, decoder_input_tokens, *,
               encoder_segment_ids=None, decoder_segment_ids=None, enable_dropout=False,
               decode=False, max_decode_length=None):
        """-> logits [B, T, V] in the compute dtype. decode=True uses the "cache" collection.

        With decode=True, the call that creates the cache projects `encoded` to the
        cross-attention keys/values stored there; later (one-token) calls read them back and
        leave `encoded` unused. Packed rows pass both segment ids (teacher forcing only).
        """
        if decode and max_decode_length is None:
            raise ValueError("decode=True needs max_decode_length (the cache length).")
        y = self._embed(decoder_input_tokens)
        y = self.decoder(y, encoded, encoder_input_tokens, encoder_segment_ids=encoder_segment_ids,
                         decoder_segment_ids=decoder_segment_ids, decode=decode,
                         max_decode_length=max_decode_length, enable_dropout=enable_dropout)
        if self.config.tie_embeddings:
            y = y * self.config.d_model ** -0.5
            logits = jnp.einsum("bte,ve->btv", y, self.token_embedder.astype(y.dtype))
        else:
            logits = jnp.einsum("bte,ev->btv", y, self.logits_dense.astype(y.dtype))
        return constrain(logits, ("batch", "length", "vocab"))

    def __call__(self, encoder_input_tokens, decoder_input_tokens, encoder_whole_word_ids=None,
                 *, encoder_segment_ids=None, decoder_segment_ids=None, enable_dropout=False):
        """-> logits [B, T, V]. Packed rows: both segment ids [B, L] and [B, T] (1, 2, ... per
        example, 0 on padding); without them every row is one example."""
        _check_segment_ids(encoder_segment_ids, decoder_segment_ids)
        encoded = self.encode(encoder_input_tokens, encoder_whole_word_ids,
                              encoder_segment_ids=encoder_segment_ids,
                              enable_dropout=enable_dropout)
        return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                           encoder_segment_ids=encoder_segment_ids,
                           decoder_segment_ids=decoder_segment_ids,
                           enable_dropout=enable_dropout)
