"""The tiny T5, inputs and search settings that the group beam search is checked on.

Weights come from a numpy generator (the same on every machine), so the expected sequences in
`fixtures/group_beam_hf421.json` (written by `make_group_beam_fixture.py` with transformers
4.2.1, P5's version) need no stored weights. Pure numpy plus `p5_jax.hf_weights`: the fixture
script imports this with transformers 4.2.1 on the path.
"""
from typing import Any

import numpy as np

from p5_jax import hf_weights

HF_CONFIG: dict[str, Any] = dict(
    vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2,
    num_heads=4, relative_attention_num_buckets=16, dropout_rate=0.0,
    feed_forward_proj="relu", tie_word_embeddings=True, layer_norm_epsilon=1e-6,
    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
EOS_ID = HF_CONFIG["eos_token_id"]
INPUTS = np.array([[5, 9, 33, 7, 41, 1, 0, 0], [12, 3, 1, 0, 0, 0, 0, 0],
                   [60, 2, 2, 17, 8, 29, 50, 1], [44, 1, 0, 0, 0, 0, 0, 0],
                   [7, 7, 21, 1, 0, 0, 0, 0]], np.int64)
# name -> HF generate arguments (besides num_return_sequences=1); "p5" is P5's explanation call
# with HF's default max_length.
CASES: dict[str, dict[str, Any]] = {
    "p5": dict(num_beams=12, num_beam_groups=3, min_length=9, repetition_penalty=0.7,
               max_length=20),
    "p5_long": dict(num_beams=12, num_beam_groups=3, min_length=9, repetition_penalty=0.7,
                    max_length=40),
    "p5_mild": dict(num_beams=12, num_beam_groups=3, min_length=9, repetition_penalty=0.9,
                    max_length=24),
    "diverse": dict(num_beams=6, num_beam_groups=3, diversity_penalty=0.8, min_length=4,
                    repetition_penalty=1.3, max_length=16),
    "diverse_strong": dict(num_beams=8, num_beam_groups=4, diversity_penalty=3.0,
                           repetition_penalty=0.7, max_length=12),
    "one_group": dict(num_beams=4, num_beam_groups=1, min_length=3, max_length=24),
    "length_penalty": dict(num_beams=6, num_beam_groups=2, length_penalty=0.5, max_length=30),
    "early_stopping": dict(num_beams=6, num_beam_groups=3, early_stopping=True,
                           diversity_penalty=0.5, max_length=30),
}


def our_config():
    return hf_weights.config_from_hf(HF_CONFIG)


def hf_tensors(seed: int = 0) -> dict:
    """HF tensor name -> float32 array. Projections are large (std 6 / sqrt(fan-in)) so that the
    layers, not the copied input embedding, shape the next token, and eos is favoured a little:
    hypotheses then end at various lengths."""
    config = our_config()
    shapes = hf_weights.expected_shapes(config)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, path, transpose in hf_weights.tensor_map(config):
        shape = shapes[path][::-1] if transpose else shapes[path]
        if name.endswith("layer_norm.weight"):
            value = rng.uniform(0.5, 1.5, size=shape)
        elif name == "shared.weight":
            value = rng.normal(0.0, 1.0, size=shape)
        else:
            value = rng.normal(0.0, 6.0 / np.sqrt(shape[-1]), size=shape)
        tensors[name] = value.astype(np.float32)
    tensors["shared.weight"][EOS_ID] *= 2.0
    return tensors


def our_params(seed: int = 0) -> dict:
    return hf_weights.params_from_hf_tensors(config=our_config(), tensors=hf_tensors(seed))
