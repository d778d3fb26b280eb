"""The matrix products a T5 beam search or train step cannot avoid, and XLA's time for them.

Every implementation computes these products (for the search: encoder, cross-attention keys and
values, one decoder pass per step over every beam, the output projection; for a train step: the
forward products and both gradients of each); ours and transformers' PyTorch T5 differ only in
what they do around them. Timing them in one jitted call, with no data dependence between them,
every operand already in the layout its product reads, and nothing else to do, gives a floor on
this machine, and `reference_seconds / floor` a ceiling for the speed-up over the reference that
no change outside XLA's matrix kernels can pass.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Product(NamedTuple):
    """`batch` independent [rows, depth] @ [depth, cols] products.

    `weight` names a parameter matrix (products naming the same one share it); None marks a
    product of two activations, such as attention scores.
    """
    batch: int
    rows: int
    depth: int
    cols: int
    weight: str | None = None

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.rows * self.depth * self.cols


def _feed_forward(prefix, rows, config):
    ups = ("wi",) if config.feed_forward == "relu" else ("wi_0", "wi_1")
    products = [Product(1, rows, config.d_model, config.d_ff, f"{prefix}.{up}") for up in ups]
    return products + [Product(1, rows, config.d_ff, config.d_model, f"{prefix}.wo")]


def _attention(batch_heads, queries, keys, depth):
    """Scores [Q, D] @ [D, K] and context [Q, K] @ [K, D] for every (example, head)."""
    return [Product(batch_heads, queries, depth, keys), Product(batch_heads, queries, keys, depth)]


def _encoder(config, *, batch, input_length):
    rows, joined = batch * input_length, config.num_heads * config.d_kv
    products = []
    for layer in range(config.num_encoder_layers):
        prefix = f"encoder{layer}"
        products += [Product(1, rows, config.d_model, joined, f"{prefix}.{name}")
                     for name in ("query", "key", "value")]
        products += _attention(batch * config.num_heads, input_length, input_length,
                               config.d_kv)
        products.append(Product(1, rows, joined, config.d_model, f"{prefix}.out"))
        products += _feed_forward(prefix, rows, config)
    return products


def _cross_keys_values(config, *, encoder_rows):
    """Every decoder layer's cross-attention keys and values, projected from the encoder once."""
    joined = config.num_heads * config.d_kv
    return [Product(1, encoder_rows, config.d_model, joined, f"decoder{layer}.{kv}")
            for layer in range(config.num_decoder_layers) for kv in ("cross_key", "cross_value")]


def _decoder_step(config, *, batch, beams_per_example, input_length, step):
    """One decoder pass: `beams_per_example` one-token queries per example, `step + 1` keys."""
    rows, joined = batch * beams_per_example, config.num_heads * config.d_kv
    heads = batch * config.num_heads
    products = []
    for layer in range(config.num_decoder_layers):
        prefix = f"decoder{layer}"
        products += [Product(1, rows, config.d_model, joined, f"{prefix}.self_{name}")
                     for name in ("query", "key", "value")]
        products += _attention(heads, beams_per_example, step + 1, config.d_kv)
        products.append(Product(1, rows, joined, config.d_model, f"{prefix}.self_out"))
        products.append(Product(1, rows, config.d_model, joined, f"{prefix}.cross_query"))
        products += _attention(heads, beams_per_example, input_length, config.d_kv)
        products.append(Product(1, rows, joined, config.d_model, f"{prefix}.cross_out"))
        products += _feed_forward(prefix, rows, config)
    products.append(Product(1, rows, config.d_model, config.vocab_size, "logits"))
    return products


def beam_search_products(config, *, batch: int, input_length: int, beams: int,
                         steps: int) -> list[Product]:
    """The products of a `beams`-beam search of `steps` tokens over a padded batch.

    The first step runs once per example (every beam holds the start token); later steps run
    once per beam. Cross-attention keys/values are projected once per example.
    """
    products = _encoder(config, batch=batch, input_length=input_length)
    products += _cross_keys_values(config, encoder_rows=batch * input_length)
    for step in range(steps):
        products += _decoder_step(config, batch=batch, beams_per_example=1 if step == 0 else beams,
                                  input_length=input_length, step=step)
    return products


def _gradients(product: Product) -> list[Product]:
    """The two products of the backward pass of `product` (the operands' gradients)."""
    batch, rows, depth, cols, weight = product
    left_grad = Product(batch, rows, cols, depth, None if weight is None else f"{weight}.T")
    right_grad = Product(batch, depth, rows, cols)
    return [left_grad, right_grad]


def train_step_products(config, *, batch: int, input_length: int,
                        target_length: int) -> list[Product]:
    """Forward and backward products of one teacher-forced train step (no padding skipped)."""
    forward = _encoder(config, batch=batch, input_length=input_length)
    forward += _cross_keys_values(config, encoder_rows=batch * input_length)
    forward += _decoder_step(config, batch=batch, beams_per_example=target_length,
                             input_length=input_length, step=target_length - 1)
    return forward + [grad for product in forward for grad in _gradients(product)]


def _operands(products, seed: int = 0):
    rng = np.random.default_rng(seed)
    weights, lefts, rights = {}, [], []
    for product in products:
        left = rng.standard_normal((product.batch, product.rows, product.depth), np.float32)
        lefts.append(jnp.asarray(left if product.batch > 1 else left[0]))
        if product.weight is None:
            right = rng.standard_normal((product.batch, product.depth, product.cols), np.float32)
            rights.append(jnp.asarray(right))
            continue
        if product.weight not in weights:
            weights[product.weight] = jnp.asarray(
                rng.standard_normal((product.depth, product.cols), np.float32))
        rights.append(weights[product.weight])
    return lefts, rights


def time_products(products: list[Product], *, repeats: int = 3) -> float:
    """Best wall seconds of one jitted call computing every product (compilation excluded)."""
    lefts, rights = _operands(products)
    compute = jax.jit(lambda lefts, rights: [a @ b for a, b in zip(lefts, rights)])
    jax.block_until_ready(compute(lefts, rights))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(compute(lefts, rights))
        best = min(best, time.perf_counter() - started)
    return best
