"""Hugging Face T5 weights: identical random weights give the same logits as transformers."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from p5_jax import hf_weights, layers, network

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HF_CONFIGS = {
    "v1.0-relu-tied": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    "v1.1-gated-gelu-untied": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}
INPUT_IDS = np.array([[5, 9, 33, 7, 41, 1, 0, 0], [12, 3, 1, 0, 0, 0, 0, 0]], np.int64)
DECODER_IDS = np.array([[0, 17, 4, 25, 1], [0, 8, 1, 0, 0]], np.int64)


def save_random_hf_t5(folder, *, seed=0, **overrides):
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=50, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
        num_heads=4, relative_attention_num_buckets=16, relative_attention_max_distance=20,
        dropout_rate=0.0, decoder_start_token_id=0, **overrides)
    return save_hf_t5(folder, config)


def save_hf_t5(folder, config):
    """A transformers T5 of `config` with layer norms away from 1 (a missed scale would show),
    saved as safetensors into `folder`."""
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name:
                param.uniform_(0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)
    return model


def hf_logits(model, input_ids=INPUT_IDS):
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(input_ids),
                    attention_mask=torch.from_numpy((input_ids != 0).astype(np.int64)),
                    decoder_input_ids=torch.from_numpy(DECODER_IDS))
    return out.logits.numpy()


def our_logits(config, params, input_ids=INPUT_IDS):
    module = network.Transformer(config)
    with jax.default_matmul_precision("float32"):  # no TF32 shortcuts on accelerators
        return np.asarray(module.apply({"params": params}, jnp.asarray(input_ids, jnp.int32),
                                       jnp.asarray(DECODER_IDS, jnp.int32)))


@pytest.mark.parametrize("variant", sorted(HF_CONFIGS))
def test_same_logits_as_transformers(tmp_path, variant):
    hf_model = save_random_hf_t5(str(tmp_path), **HF_CONFIGS[variant])
    config, params = hf_weights.load_hf_t5(folder=str(tmp_path))
    assert config.whole_word_embeddings == 0
    assert config.feed_forward == HF_CONFIGS[variant]["feed_forward_proj"]
    assert (config.num_encoder_layers, config.num_decoder_layers) == (2, 3)
    expected = hf_logits(hf_model)
    assert np.abs(expected).max() > 1.0  # a meaningful comparison, not near-zero logits
    np.testing.assert_allclose(our_logits(config, params), expected, atol=1e-4, rtol=1e-4)


def test_relative_position_buckets_match_transformers():
    relative = torch.arange(-300, 300)
    for bidirectional in (True, False):
        want = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
            relative, bidirectional=bidirectional, num_buckets=32, max_distance=128).numpy()
        got = layers.relative_position_bucket(jnp.asarray(relative.numpy()),
                                              bidirectional=bidirectional, num_buckets=32,
                                              max_distance=128)
        np.testing.assert_array_equal(np.asarray(got), want)


def test_exported_params_load_into_transformers(tmp_path):
    hf_model = save_random_hf_t5(str(tmp_path / "src"), seed=1)
    config, params = hf_weights.load_hf_t5(folder=str(tmp_path / "src"))
    params = {**params, "decoder": dict(params["decoder"])}
    doubled = params["decoder"]["final_layer_norm"]["scale"] * 2  # differs from hf_model's
    params["decoder"]["final_layer_norm"] = {"scale": doubled}
    tensors = hf_weights.params_to_hf_tensors(config=config, params=params)
    hf_model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    np.testing.assert_allclose(our_logits(config, params), hf_logits(hf_model), atol=1e-4)


def test_save_and_load_round_trip_with_whole_words(tmp_path):
    save_random_hf_t5(str(tmp_path / "src"), **HF_CONFIGS["v1.1-gated-gelu-untied"])
    config, params = hf_weights.load_hf_t5(folder=str(tmp_path / "src"), whole_word_embeddings=6)
    assert params["whole_word_embedder"].shape == (6, 32)
    hf_weights.save_hf_t5(folder=str(tmp_path / "out"), config=config, params=params)
    tensors = hf_weights.read_checkpoint_tensors(folder=str(tmp_path / "out"))
    assert hf_weights.WHOLE_WORD_TENSOR in tensors and "lm_head.weight" in tensors
    config2, params2 = hf_weights.load_hf_t5(folder=str(tmp_path / "out"), whole_word_embeddings=6)
    assert config2 == config
    before, after = traverse_util.flatten_dict(params), traverse_util.flatten_dict(params2)
    assert set(before) == set(after)
    for path, value in after.items():
        np.testing.assert_array_equal(value, before[path])


def test_untied_lm_head_is_read_when_present(tmp_path):
    save_random_hf_t5(str(tmp_path), **HF_CONFIGS["v1.1-gated-gelu-untied"])
    tensors = hf_weights.read_checkpoint_tensors(folder=str(tmp_path))
    head = np.arange(50 * 32, dtype=np.float32).reshape(50, 32)
    tensors["lm_head.weight"] = head
    config = hf_weights.config_from_hf(json.load(open(tmp_path / "config.json")))
    params = hf_weights.params_from_hf_tensors(config=config, tensors=tensors)
    np.testing.assert_array_equal(params["logits_dense"], head.T)


def test_errors_name_the_tensor(tmp_path):
    save_random_hf_t5(str(tmp_path))
    tensors = hf_weights.read_checkpoint_tensors(folder=str(tmp_path))
    config = hf_weights.config_from_hf(json.load(open(tmp_path / "config.json")))
    name = "decoder.block.1.layer.1.EncDecAttention.k.weight"
    missing = {k: v for k, v in tensors.items() if k != name}
    with pytest.raises(hf_weights.CheckpointError, match=name.replace(".", r"\.")):
        hf_weights.params_from_hf_tensors(config=config, tensors=missing)
    wrong = dict(tensors, **{name: tensors[name][:, :-1]})
    with pytest.raises(hf_weights.CheckpointError, match="EncDecAttention.k.weight.*shape"):
        hf_weights.params_from_hf_tensors(config=config, tensors=wrong)
    extra = dict(tensors, **{"encoder.block.7.layer.0.layer_norm.weight": np.ones(32, np.float32)})
    with pytest.raises(hf_weights.CheckpointError, match="block.7"):
        hf_weights.params_from_hf_tensors(config=config, tensors=extra)
    os.remove(tmp_path / "model.safetensors")
    with pytest.raises(hf_weights.CheckpointError, match="model.safetensors"):
        hf_weights.load_hf_t5(folder=str(tmp_path))


def test_safetensors_reader_matches_the_safetensors_package(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float16)}
    path = str(tmp_path / "x.safetensors")
    hf_weights.write_safetensors(path=path, tensors=arrays)
    for name, value in safetensors_numpy.load_file(path).items():
        np.testing.assert_array_equal(value, arrays[name])
    safetensors_numpy.save_file(arrays, path)
    for name, value in hf_weights.read_safetensors(path=path).items():
        np.testing.assert_array_equal(value, arrays[name])
        assert value.dtype == arrays[name].dtype
