"""The benchmarks' lists of unavoidable matrix products (search and train step), counted by hand."""
import dataclasses
import math

import benchmark_module

from p5_jax import network

matmul_floor = benchmark_module.load("matmul_floor")

CONFIG = network.T5Config(vocab_size=7, d_model=4, num_heads=2, d_kv=3, d_ff=5,
                          num_encoder_layers=1, num_decoder_layers=1)


def _products():
    return matmul_floor.beam_search_products(CONFIG, batch=2, input_length=3, beams=2, steps=2)


def test_beam_search_flops_match_a_hand_count():
    # Encoder, 6 rows: q/k/v 3*288, scores+context 2*216, out 288, wi 240, wo 240 = 2064.
    # Cross keys/values on the 6 encoder rows: 2*288 = 576.
    # Step 0, one row per example (2 rows, 1 key): q/k/v 3*96, self attention 48, self out 96,
    #   cross query 96, cross attention 144, cross out 96, wi 80, wo 80, logits 112 = 1040.
    # Step 1, two beams per example (4 rows, 2 keys): q/k/v 3*192, self attention 192,
    #   self out 192, cross query 192, cross attention 288, cross out 192, wi 160, wo 160,
    #   logits 224 = 2176.
    assert sum(p.flops for p in _products()) == 2064 + 576 + 1040 + 2176


def test_steps_share_their_layer_weights():
    products = _products()
    names = {p.weight for p in products if p.weight is not None}
    # encoder: q, k, v, out, wi, wo; decoder: self q/k/v/out, cross q/out/key/value, wi, wo;
    # and the output projection.
    assert len(names) == 6 + 10 + 1
    assert sum(p.weight == "logits" for p in products) == 2


def test_gated_feed_forward_adds_one_product_per_layer_pass():
    gated = dataclasses.replace(CONFIG, feed_forward="gated-gelu")
    plain = _products()
    more = matmul_floor.beam_search_products(gated, batch=2, input_length=3, beams=2, steps=2)
    # one extra [rows, 4] @ [4, 5] per pass: 6 encoder rows, then 2 and 4 decoder rows
    assert sum(p.flops for p in more) - sum(p.flops for p in plain) == 2 * 5 * 4 * (6 + 2 + 4)


def test_timing_compiles_and_runs_the_products():
    seconds = matmul_floor.time_products(_products(), repeats=1)
    assert math.isfinite(seconds) and seconds > 0


def test_train_step_products_match_the_trainer_tests_hand_count():
    # The configuration, batch and hand count of test_trainer's FLOP test (10,801,152: every
    # forward product plus the input and weight gradient of each).
    config = network.T5Config(vocab_size=128, d_model=32, num_heads=4, d_kv=8, d_ff=64,
                              num_encoder_layers=1, num_decoder_layers=1)
    products = matmul_floor.train_step_products(config, batch=8, input_length=12,
                                                target_length=6)
    assert sum(p.flops for p in products) == 10_801_152
