"""Dropout and the batch-shared bias add: the hand-written pieces of the attention layer."""
import jax
import jax.numpy as jnp
import numpy as np

from p5_jax import layers


def _dropout(rate, x, *, seed=0, deterministic=False):
    module = layers.Dropout(rate)
    return module.apply({}, x, deterministic=deterministic,
                        rngs={"dropout": jax.random.key(seed)})


def test_dropout_keeps_the_expected_share_and_rescales_survivors():
    x = jnp.ones((400, 500))
    y = np.asarray(_dropout(0.1, x))
    kept = y != 0
    # 200,000 draws: the kept share's standard deviation is about 0.0007.
    assert abs(kept.mean() - 0.9) < 0.005
    np.testing.assert_allclose(y[kept], 1 / 0.9, rtol=1e-6)


def test_dropout_is_identity_when_deterministic_or_rate_zero():
    x = jnp.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(_dropout(0.5, x, deterministic=True), x)
    np.testing.assert_array_equal(_dropout(0.0, x), x)
    np.testing.assert_array_equal(_dropout(1.0, x), jnp.zeros_like(x))


def test_dropout_masks_depend_on_the_key_only():
    x = jnp.ones((64, 64))
    np.testing.assert_array_equal(_dropout(0.3, x, seed=1), _dropout(0.3, x, seed=1))
    assert not np.array_equal(_dropout(0.3, x, seed=1), _dropout(0.3, x, seed=2))


def test_add_shared_bias_gradient_equals_broadcast_add_gradient():
    rng = np.random.default_rng(0)
    scores = jnp.asarray(rng.normal(size=(3, 2, 4, 5)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(1, 2, 4, 5)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(3, 2, 4, 5)), jnp.float32)

    def loss(fn):
        return lambda s, b: jnp.sum(jnp.tanh(fn(s, b)) * weights)

    ours = jax.grad(loss(layers.add_shared_bias), argnums=(0, 1))(scores, bias)
    plain = jax.grad(loss(lambda s, b: s + b), argnums=(0, 1))(scores, bias)
    np.testing.assert_allclose(layers.add_shared_bias(scores, bias), scores + bias)
    for got, want in zip(ours, plain):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
