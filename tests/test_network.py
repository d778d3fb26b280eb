"""Known values and invariants of the Flax T5 network."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from p5_jax import hf_weights, layers, network

ENC = jnp.array([[5, 6, 7, 8, 1, 0], [9, 10, 1, 0, 0, 0]], jnp.int32)
WORDS = jnp.array([[1, 1, 2, 3, 3, 0], [1, 2, 2, 0, 0, 0]], jnp.int32)
DEC = jnp.array([[0, 11, 12, 13, 1], [0, 14, 1, 0, 0]], jnp.int32)
PARAM_AXES = {"vocab", "embed", "mlp", "heads", "kv", "joined_kv", "relpos_buckets",
              "whole_words"}


def small_config(**overrides):
    base = dict(vocab_size=40, d_model=16, num_heads=2, d_kv=8, d_ff=32, num_encoder_layers=2,
                num_decoder_layers=2, dropout_rate=0.0, whole_word_embeddings=8)
    return network.T5Config(**{**base, **overrides})


def init(config, seed=0):
    """Random variables shaped like `Transformer(config).init`, drawn with numpy.

    (Compiling flax's random initialisers costs seconds per config on CPU.)
    """
    rng = np.random.default_rng(seed)
    shapes = hf_weights.expected_shapes(config)
    flat = {}
    for path, shape in shapes.items():
        if path[-1] == "scale":
            flat[path] = 1.0 + 0.1 * rng.standard_normal(shape)
        elif len(path) == 1 or path[-1] == "rel_embedding":
            flat[path] = rng.standard_normal(shape)
        else:
            flat[path] = rng.standard_normal(shape) / np.sqrt(shape[0])
    flat = {path: jnp.asarray(value, jnp.float32) for path, value in flat.items()}
    return {"params": traverse_util.unflatten_dict(flat)}


def test_rms_norm_known_values():
    norm = layers.RMSNorm(epsilon=0.0)
    x = jnp.array([[3.0, 4.0]])
    params = {"params": {"scale": jnp.array([2.0, 0.5])}}
    # rms = sqrt((9 + 16) / 2) = sqrt(12.5); no mean subtraction.
    expected = np.array([[3.0 / np.sqrt(12.5) * 2.0, 4.0 / np.sqrt(12.5) * 0.5]])
    np.testing.assert_allclose(norm.apply(params, x), expected, rtol=1e-6)


@pytest.mark.parametrize("distance, bucket", [
    (0, 0), (1, 17), (-1, 1), (-7, 7), (-8, 8), (-12, 9), (-20, 10), (20, 26), (-127, 15),
    (-128, 15), (-1000, 15), (1000, 31)])
def test_bidirectional_buckets_hand_computed(distance, bucket):
    # 16 buckets per direction, 8 exact; beyond: 8 + floor(log(d/8) / log(16) * 8), cap 15.
    got = layers.relative_position_bucket(jnp.array(distance), bidirectional=True,
                                          num_buckets=32, max_distance=128)
    assert int(got) == bucket


@pytest.mark.parametrize("distance, bucket", [
    (5, 0), (0, 0), (-1, 1), (-15, 15), (-20, 17), (-100, 30), (-200, 31)])
def test_causal_buckets_hand_computed(distance, bucket):
    # Keys after the query share bucket 0; 16 exact, then 16 + floor(log(d/16)/log(8)*16).
    got = layers.relative_position_bucket(jnp.array(distance), bidirectional=False,
                                          num_buckets=32, max_distance=128)
    assert int(got) == bucket


def test_every_param_is_float32_with_known_logical_axes():
    config = small_config(feed_forward="gated-gelu", tie_embeddings=False, dtype="bfloat16")
    boxed = jax.eval_shape(network.Transformer(config).init, jax.random.PRNGKey(0), ENC, DEC,
                           WORDS)["params"]
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in leaves)
    for leaf in leaves:
        assert set(leaf.names) <= PARAM_AXES and len(leaf.names) == leaf.value.ndim
        assert leaf.value.dtype == jnp.float32
    params = nn.unbox(boxed)
    assert params["logits_dense"].shape == (16, 40)
    assert params["whole_word_embedder"].shape == (8, 16)
    assert set(params["encoder"]["layers_0"]["mlp"]) == {"wi_0", "wi_1", "wo"}
    assert params["decoder"]["relpos_bias"]["rel_embedding"].shape == (32, 2)
    assert "relpos_bias" not in params["decoder"]["layers_1"]  # one shared table per stack


def test_tied_config_has_no_logits_dense_and_relu_mlp():
    params = nn.unbox(init(small_config())["params"])
    assert "logits_dense" not in params
    assert set(params["decoder"]["layers_0"]["mlp"]) == {"wi", "wo"}


@pytest.mark.parametrize("overrides", [{}, {"feed_forward": "gated-gelu", "tie_embeddings": False}])
@jax.default_matmul_precision("float32")
def test_cached_decoding_matches_full_forward(overrides):
    config = small_config(**overrides)
    model = network.Transformer(config)
    variables = init(config)
    full = model.apply(variables, ENC, DEC, WORDS)
    encoded = model.apply(variables, ENC, WORDS, method=model.encode)
    max_len = 7  # longer than the targets: unused cache slots must stay masked
    _, cache_vars = model.apply(variables, encoded, ENC, jnp.zeros((2, max_len), jnp.int32),
                                decode=True, max_decode_length=max_len, mutable=["cache"],
                                method=model.decode)
    cache = cache_vars["cache"]
    assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(cache) if leaf.ndim)
    steps = []
    for t in range(DEC.shape[1]):  # steps read the projected encoder output from the cache
        logits, mutated = model.apply(
            {**variables, "cache": cache}, jnp.zeros_like(encoded), ENC, DEC[:, t:t + 1],
            decode=True,
            max_decode_length=max_len, mutable=["cache"], method=model.decode)
        cache = mutated["cache"]
        steps.append(logits[:, 0])
    np.testing.assert_allclose(jnp.stack(steps, axis=1), full, atol=1e-5, rtol=1e-5)


def count_cross_projections(batch_sizes):
    """Interceptor recording the batch size of every cross-attention key/value projection."""
    def interceptor(next_fun, args, kwargs, context):
        if (context.method_name == "_project" and args[0] in ("key", "value")
                and context.module.name == "encoder_decoder_attention"):
            batch_sizes.append(args[1].shape[0])
        return next_fun(*args, **kwargs)
    return interceptor


@jax.default_matmul_precision("float32")
def test_cross_attention_projected_once_per_decode():
    config = small_config()
    model = network.Transformer(config)
    variables = init(config)
    encoded = model.apply(variables, ENC, WORDS, method=model.encode)
    projected = []
    with nn.intercept_methods(count_cross_projections(projected)):
        _, cache_vars = model.apply(variables, encoded, ENC, DEC[:, :1], decode=True,
                                    max_decode_length=5, mutable=["cache"], method=model.decode)
        cache = cache_vars["cache"]
        for t in range(DEC.shape[1]):
            _, mutated = model.apply({**variables, "cache": cache}, encoded, ENC,
                                     DEC[:, t:t + 1], decode=True, max_decode_length=5,
                                     mutable=["cache"], method=model.decode)
            cache = mutated["cache"]
    assert projected == [2] * (2 * config.num_decoder_layers)  # key + value per layer, at init
    cross = cache["decoder"]["layers_1"]["encoder_decoder_attention"]
    kernel = variables["params"]["decoder"]["layers_1"]["encoder_decoder_attention"]["key"]
    expected = jnp.einsum("bld,dk->blk", encoded, kernel).reshape(2, ENC.shape[1], 2, 8)
    expected = expected.transpose(0, 2, 1, 3)  # stored heads first: [B, H, L, D]
    assert cross["cross_key"].shape == cross["cross_value"].shape == (2, 2, ENC.shape[1], 8)
    np.testing.assert_allclose(cross["cross_key"], expected, atol=1e-5, rtol=1e-5)


@jax.default_matmul_precision("float32")
def test_decoder_is_causal():
    config = small_config()
    variables = init(config)
    model = network.Transformer(config)
    changed = DEC.at[:, 3].set(20)
    a = model.apply(variables, ENC, DEC, WORDS)
    b = model.apply(variables, ENC, changed, WORDS)
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not np.allclose(a[:, 3:], b[:, 3:])


@jax.default_matmul_precision("float32")
def test_encoder_padding_is_masked():
    config = small_config()
    variables = init(config)
    model = network.Transformer(config)
    padded = jnp.pad(ENC, ((0, 0), (0, 4)))
    padded_words = jnp.pad(WORDS, ((0, 0), (0, 4)))
    a = model.apply(variables, ENC, DEC, WORDS)
    b = model.apply(variables, padded, DEC, padded_words)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_whole_word_embedding_changes_outputs_only_when_enabled():
    other_words = jnp.array([[1, 2, 3, 4, 5, 0], [1, 1, 1, 0, 0, 0]], jnp.int32)
    on = small_config()
    model = network.Transformer(on)
    variables = init(on)
    assert not np.allclose(model.apply(variables, ENC, DEC, WORDS),
                           model.apply(variables, ENC, DEC, other_words))
    off = small_config(whole_word_embeddings=0)
    model = network.Transformer(off)
    variables = init(off)
    assert "whole_word_embedder" not in variables["params"]
    np.testing.assert_array_equal(model.apply(variables, ENC, DEC, WORDS),
                                  model.apply(variables, ENC, DEC, other_words))


def test_dropout_only_when_enabled():
    config = small_config(dropout_rate=0.3)
    model = network.Transformer(config)
    variables = init(config)
    base = model.apply(variables, ENC, DEC, WORDS)
    np.testing.assert_array_equal(base, model.apply(variables, ENC, DEC, WORDS))
    dropped = model.apply(variables, ENC, DEC, WORDS, enable_dropout=True,
                          rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(base, dropped)


def test_bfloat16_compute_tracks_float32():
    config = small_config()
    variables = init(config)
    full = network.Transformer(config).apply(variables, ENC, DEC, WORDS)
    half = network.Transformer(dataclasses.replace(config, dtype="bfloat16")).apply(
        variables, ENC, DEC, WORDS)
    assert half.dtype == jnp.bfloat16
    tolerance = 0.15 * float(jnp.abs(full).max())
    np.testing.assert_allclose(half.astype(jnp.float32), full, atol=tolerance)


def test_decode_requires_max_decode_length():
    config = small_config()
    model = network.Transformer(config)
    variables = init(config)
    encoded = model.apply(variables, ENC, WORDS, method=model.encode)
    with pytest.raises(ValueError, match="max_decode_length"):
        model.apply(variables, encoded, ENC, DEC[:, :1], decode=True, mutable=["cache"],
                    method=model.decode)


def test_named_sizes_and_bad_config():
    small = network.t5_small_config()
    assert (small.d_model, small.num_encoder_layers, small.num_heads, small.d_kv, small.d_ff,
            small.vocab_size) == (512, 6, 8, 64, 2048, 32128)
    base = network.t5_base_config()
    assert (base.d_model, base.num_decoder_layers, base.num_heads, base.d_ff) == (768, 12, 12, 3072)
    tiny = network.tiny_config()
    assert (tiny.d_model, tiny.num_encoder_layers, tiny.num_heads, tiny.d_kv) == (64, 2, 4, 16)
    assert network.t5_v1_1_small_config().feed_forward == "gated-gelu"
    with pytest.raises(ValueError, match="feed_forward"):
        small_config(feed_forward="swish")
    with pytest.raises(ValueError, match="d_model"):
        small_config(d_model=0)
