"""Building blocks of the T5 network: RMS norm, relative position bias, attention, feed-forward.

Parameters are stored in float32 and boxed with logical axis names; computation runs in the
module's `dtype`. Softmax and normalisation statistics are always computed in float32.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

NEG_INF = -1e10  # additive mask value; finite so fully masked rows stay NaN-free
MASK_BITS = 16  # dropout keeps an element when 16 random bits fall below (1 - rate) * 2**16
# Cache leaves written once when the cache is created and only read by decode steps.
STATIC_CACHE_NAMES = ("cross_key", "cross_value")


def boxed_param(module: nn.Module, name: str, init_fn, shape, axes):
    """A float32 parameter carrying logical axis names (unboxed when read)."""
    return module.param(name, nn.with_logical_partitioning(init_fn, axes), shape, jnp.float32)


def constrain(x, axes):
    """Shorthand for a logical sharding constraint on an activation."""
    return nn.with_logical_constraint(x, axes)


def dense(x, kernel):
    """x [..., D] @ kernel [D, F] as one 2-D matmul.

    Flattening the leading axes lets XLA's CPU backend compute the weight gradient without
    materialising transposed copies of the activations (about 1.7x faster for the T5 MLP).
    """
    y = x.reshape(-1, x.shape[-1]) @ kernel
    return y.reshape(*x.shape[:-1], kernel.shape[-1])


def scaled_normal(scale: float):
    """Normal init with variance `scale / fan_in` (fan_in = first kernel axis)."""
    return nn.initializers.variance_scaling(scale, "fan_in", "normal")


def random_bits16(rng, shape):
    """uint16 random bits of `shape`, two per 32-bit word drawn.

    An rbg key (the trainer's default) draws from XLA's RngBitGenerator with ThreeFry: on CPU
    that is several times cheaper than the backend default (Philox) and than jax's own
    threefry; other keys use `jax.random.bits`.
    """
    size = math.prod(shape)
    words = (size + 1) // 2
    typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
    if typed and jax.random.key_impl(rng) in ("rbg", "unsafe_rbg"):
        _, bits = jax.lax.rng_bit_generator(jax.random.key_data(rng), (words,), jnp.uint32,
                                            algorithm=jax.lax.RandomAlgorithm.RNG_THREE_FRY)
    else:
        bits = jax.random.bits(rng, (words,), jnp.uint32)
    halves = jax.lax.bitcast_convert_type(bits, jnp.uint16).reshape(-1)
    return halves[:size].reshape(shape)


class Dropout(nn.Module):
    """Inverted dropout: zeroes elements with probability `rate`, scales the rest by 1/(1-rate).

    The keep probability is quantised to multiples of 2**-16 (flax's float compare: 2**-23).
    """
    rate: float

    @nn.compact
    def __call__(self, x, *, deterministic: bool):
        if self.rate == 0.0 or deterministic:
            return x
        if self.rate == 1.0:
            return jnp.zeros_like(x)
        keep_prob = 1.0 - self.rate
        threshold = round(keep_prob * 2 ** MASK_BITS)
        keep = random_bits16(self.make_rng("dropout"), x.shape).astype(jnp.uint32) < threshold
        return jnp.where(keep, x * jnp.asarray(1.0 / keep_prob, x.dtype), jnp.zeros_like(x))


@jax.custom_vjp
def add_shared_bias(scores_BxHxQxK, bias_1xHxQxK):
    """scores + bias broadcast over the batch.

    The bias gradient is summed over the batch by a dot with ones: XLA's CPU reduce over the
    leading axis of a [B, H, Q, K] tensor is tens of times slower than the equivalent dot.
    """
    return scores_BxHxQxK + bias_1xHxQxK


def _add_shared_bias_fwd(scores, bias):
    return scores + bias, None


def _add_shared_bias_bwd(_, grad_BxHxQxK):
    ones_B = jnp.ones(grad_BxHxQxK.shape[:1], grad_BxHxQxK.dtype)
    return grad_BxHxQxK, jnp.einsum("b,bhqk->hqk", ones_B, grad_BxHxQxK)[None]


add_shared_bias.defvjp(_add_shared_bias_fwd, _add_shared_bias_bwd)


class RMSNorm(nn.Module):
    """T5 layer norm: x / sqrt(mean(x^2) + eps) * scale; no mean subtraction, no bias."""
    epsilon: float = 1e-6
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = boxed_param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",))
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        normed = x32 * jax.lax.rsqrt(variance + self.epsilon)
        return (normed * scale.reshape((1,) * (x.ndim - 1) + scale.shape)).astype(self.dtype)


def relative_position_bucket(relative_position, *, bidirectional: bool, num_buckets: int,
                             max_distance: int):
    """Maps key-minus-query distances to T5 buckets.

    Half the buckets hold exact small distances, the rest grow logarithmically up to
    `max_distance`; bidirectional splits the buckets between keys after and before the query,
    causal sends every key after the query to bucket 0.
    """
    relative_position = jnp.asarray(relative_position, jnp.int32)
    buckets = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).astype(jnp.int32) * num_buckets
        distance = jnp.abs(relative_position)
    else:
        distance = -jnp.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    safe = jnp.maximum(distance, 1).astype(jnp.float32)
    log_ratio = jnp.log(safe / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(jnp.int32)
    large = jnp.minimum(large, num_buckets - 1)
    return buckets + jnp.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
    """Learned per-head bias from bucketed key-minus-query distance; returns [B|1, H, Q, K]."""
    num_buckets: int
    max_distance: int
    num_heads: int
    bidirectional: bool
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, query_positions_BxQ, key_positions_K):
        table = boxed_param(self, "rel_embedding", nn.initializers.normal(1.0),
                            (self.num_buckets, self.num_heads), ("relpos_buckets", "heads"))
        relative = key_positions_K[None, None, :] - query_positions_BxQ[:, :, None]
        buckets_BxQxK = relative_position_bucket(
            relative, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
            max_distance=self.max_distance)
        bias_BxQxKxH = jnp.take(table, buckets_BxQxK, axis=0)
        return jnp.transpose(bias_BxQxKxH, (0, 3, 1, 2)).astype(self.dtype)


def _heads_first(x_BxTxHxD):
    return jnp.transpose(x_BxTxHxD, (0, 2, 1, 3))


def _group_rows(query_NxQxHxD, groups: int):
    """[B*G, 1, H, D] -> [B, G, H, D]: one-token queries of G rows that share one key row."""
    rows, length = query_NxQxHxD.shape[:2]
    if rows % groups or length != 1:
        raise ValueError(f"{rows} query rows of length {length} cannot share {groups} key rows; "
                         "only one-token decode queries may be grouped.")
    return query_NxQxHxD.reshape(groups, rows // groups, *query_NxQxHxD.shape[2:])


class MultiHeadAttention(nn.Module):
    """T5 attention (no 1/sqrt(d) scaling, no biases) with an optional decode cache.

    Self-attention (`static_kv=False`) with `decode=True`: the first call (no cache yet) only
    creates zeroed cache variables sized like the keys it is given; later calls take one query
    token each and write its key/value at position `cache_index`, a scalar shared by all rows.
    Cross-attention (`static_kv=True`) with `decode=True`: the first call projects `inputs_kv`
    (the encoder output) into the cache; later calls read those keys/values back and ignore
    `inputs_kv`, so a decode step never re-projects the encoder output.
    Every cache leaf but the position has a leading batch axis. Queries may come in G rows per
    key row (the G beams of one example during beam search, one token each): they are attended
    as G query positions of that example, so the keys/values are neither copied nor read once
    per beam.
    """
    num_heads: int
    d_kv: int
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32
    max_decode_length: int | None = None  # cache length; defaults to the first call's length
    static_kv: bool = False  # inputs_kv fixed while decoding (cross-attention): project once

    def _project(self, name, x, d_in):
        scale = 1.0 / self.d_kv if name == "query" else 1.0
        kernel = boxed_param(self, name, scaled_normal(scale),
                             (d_in, self.num_heads * self.d_kv), ("embed", "joined_kv"))
        y = dense(x, kernel.astype(self.dtype))
        y = y.reshape(*y.shape[:2], self.num_heads, self.d_kv)
        return constrain(y, ("batch", "length", "heads", "kv"))

    def _update_cache(self, key_BxTxHxD, value_BxTxHxD):
        """Writes the new token's key/value into the cache; returns all keys and values
        [B, H, T, D] and the written position (a scalar: every row decodes in step)."""
        is_initialized = self.has_variable("cache", "cached_key")
        batch, length, heads, depth = key_BxTxHxD.shape
        shape = (batch, heads, self.max_decode_length or length, depth)
        cached_key = self.variable("cache", "cached_key", jnp.zeros, shape, key_BxTxHxD.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, shape,
                                     value_BxTxHxD.dtype)
        cache_index = self.variable("cache", "cache_index", jnp.zeros, (), jnp.int32)
        if not is_initialized:
            return None
        if key_BxTxHxD.shape[1] != 1:
            raise ValueError("Cached decoding takes one token per call, "
                             f"got {key_BxTxHxD.shape[1]}.")
        index = cache_index.value
        at = (0, 0, index, 0)  # an in-place write of one slot, not a rewrite of the cache
        cached_key.value = jax.lax.dynamic_update_slice(cached_key.value,
                                                        _heads_first(key_BxTxHxD), at)
        cached_value.value = jax.lax.dynamic_update_slice(cached_value.value,
                                                          _heads_first(value_BxTxHxD), at)
        cache_index.value = index + 1
        return cached_key.value, cached_value.value, index

    def _static_keys_values(self, inputs_kv):
        """Cross-attention keys/values [B, H, K, D], projected only when the cache is created."""
        key_name, value_name = STATIC_CACHE_NAMES
        axes = ("batch", "heads", "length", "kv")
        if self.has_variable("cache", key_name):
            key = self.get_variable("cache", key_name)
            value = self.get_variable("cache", value_name)
            return constrain(key, axes), constrain(value, axes)
        key = _heads_first(self._project("key", inputs_kv, inputs_kv.shape[-1]))
        value = _heads_first(self._project("value", inputs_kv, inputs_kv.shape[-1]))
        self.put_variable("cache", key_name, key)
        self.put_variable("cache", value_name, value)
        return constrain(key, axes), constrain(value, axes)

    def _keys_values(self, inputs_kv, decode):
        """(keys, values, mask or None): [B, K, H, D], or [B, H, K, D] when decoding (the
        cache's layout, which the attention matmuls read without a copy). The mask hides
        unwritten self-attention cache slots."""
        if decode and self.static_kv:
            return *self._static_keys_values(inputs_kv), None
        key = self._project("key", inputs_kv, inputs_kv.shape[-1])
        value = self._project("value", inputs_kv, inputs_kv.shape[-1])
        if not decode:
            return key, value, None
        cached = self._update_cache(key, value)
        if cached is None:  # the call that creates the cache
            return _heads_first(key), _heads_first(value), None
        key, value, index = cached
        visible = jnp.arange(key.shape[2]) <= index
        return key, value, visible[None, None, None, :]

    @nn.compact
    def __call__(self, inputs_q, inputs_kv, *, bias=None, mask=None, decode=False,
                 enable_dropout=False):
        """inputs [B, Q|K, E]; bias [B|1, H, Q, K] additive; mask [B|1, 1|H, Q, K] bool."""
        d_model = inputs_q.shape[-1]
        query = self._project("query", inputs_q, d_model)
        key, value, cache_mask = self._keys_values(inputs_kv, decode)
        if cache_mask is not None:
            mask = cache_mask
        rows, key_rows = query.shape[0], key.shape[0]
        if rows != key_rows:
            query = _group_rows(query, key_rows)
        key_layout = "bhkd" if decode else "bkhd"
        scores = jnp.einsum(f"bqhd,{key_layout}->bhqk", query, key).astype(jnp.float32)
        if bias is not None:
            bias = bias.astype(jnp.float32)
            shared = bias.shape[0] == 1 and scores.shape[0] > 1
            scores = add_shared_bias(scores, bias) if shared else scores + bias
        if mask is not None:
            scores = jnp.where(mask, scores, NEG_INF)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        weights = Dropout(self.dropout_rate)(weights, deterministic=not enable_dropout)
        context = jnp.einsum(f"bhqk,{key_layout}->bqhd", weights, value)
        context = context.reshape(rows, -1, self.num_heads * self.d_kv)
        out_kernel = boxed_param(self, "out", scaled_normal(1.0),
                                 (self.num_heads * self.d_kv, d_model), ("joined_kv", "embed"))
        out = dense(context, out_kernel.astype(self.dtype))
        return constrain(out, ("batch", "length", "embed"))


class FeedForward(nn.Module):
    """T5 MLP: ReLU (v1.0) or gated GELU with the tanh approximation (T5.1.1)."""
    d_ff: int
    feed_forward: str = "relu"
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32

    def _dense(self, name, x, shape, axes):
        kernel = boxed_param(self, name, scaled_normal(1.0), shape, axes)
        return dense(x, kernel.astype(self.dtype))

    @nn.compact
    def __call__(self, x, *, enable_dropout=False):
        d_model = x.shape[-1]
        up_shape, up_axes = (d_model, self.d_ff), ("embed", "mlp")
        if self.feed_forward == "relu":
            hidden = jax.nn.relu(self._dense("wi", x, up_shape, up_axes))
        elif self.feed_forward == "gated-gelu":
            gate = jax.nn.gelu(self._dense("wi_0", x, up_shape, up_axes), approximate=True)
            hidden = gate * self._dense("wi_1", x, up_shape, up_axes)
        else:
            raise ValueError(f"Unknown feed_forward {self.feed_forward!r}; "
                             "use 'relu' or 'gated-gelu'.")
        hidden = constrain(hidden, ("batch", "length", "mlp"))
        hidden = Dropout(self.dropout_rate)(hidden, deterministic=not enable_dropout)
        out = self._dense("wo", hidden, (self.d_ff, d_model), ("mlp", "embed"))
        return constrain(out, ("batch", "length", "embed"))
