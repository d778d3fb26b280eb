"""Hugging Face T5 checkpoints (config.json + safetensors) <-> our T5Config and parameter tree.

Safetensors are parsed with numpy (no torch). HF linear weights are [out, in]; our kernels are
[in, out], so they are transposed. A P5 checkpoint's `encoder.whole_word_embeddings.weight` is
loaded when present; otherwise an enabled whole-word table is freshly initialised.
`config_from_param_shapes` reads the architecture back from our own parameter shapes (a p5-jax
checkpoint), so a training run can start from either kind of checkpoint.
"""
from __future__ import annotations

import json
import os
import struct

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import linen as nn
from flax import traverse_util

from p5_jax.network import T5Config, Transformer

SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}
WHOLE_WORD_TENSOR = "encoder.whole_word_embeddings.weight"
TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SENTENCEPIECE_FILE = "spiece.model"  # the tokenizer file of a Hugging Face T5 folder


class CheckpointError(ValueError):
    """A Hugging Face checkpoint that does not match the expected T5 layout."""


def read_safetensors(*, path: str) -> dict[str, np.ndarray]:
    """Reads one .safetensors file into numpy arrays (bf16 via ml_dtypes)."""
    with open(path, "rb") as f:
        data = f.read()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_size])
    body = memoryview(data)[8 + header_size:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}.")
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=SAFETENSORS_DTYPES[info["dtype"]])
        tensors[name] = array.reshape(info["shape"]).copy()
    return tensors


def write_safetensors(*, path: str, tensors: dict[str, np.ndarray]) -> None:
    """Writes numpy arrays as one .safetensors file (readable by the `safetensors` package)."""
    names = {np.dtype(v): k for k, v in SAFETENSORS_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        raw = array.tobytes()
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)) + header_bytes + b"".join(chunks))


def is_hf_folder(path) -> bool:
    """Whether `path` looks like a Hugging Face model folder (it has a config.json)."""
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def weight_files(*, folder: str) -> list[str]:
    """The safetensors files holding the weights (one file, or the shards of its index)."""
    single = os.path.join(folder, WEIGHTS_FILE)
    index = single + ".index.json"
    if os.path.exists(single):
        return [single]
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(folder, shard) for shard in shards]
    raise CheckpointError(
        f"{folder} has neither {WEIGHTS_FILE} nor {WEIGHTS_FILE}.index.json.")


def read_checkpoint_tensors(*, folder: str) -> dict[str, np.ndarray]:
    """All tensors of `model.safetensors`, or of the shards named in its index file."""
    tensors = {}
    for path in weight_files(folder=folder):
        tensors.update(read_safetensors(path=path))
    return tensors


def read_hf_config(*, folder: str, **overrides) -> T5Config:
    """Our T5Config from a Hugging Face folder's config.json (no weights read)."""
    config_path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}.")
    with open(config_path) as f:
        hf_config = json.load(f)
    return config_from_hf(hf_config, **overrides)


def config_from_hf(hf_config: dict, *, whole_word_embeddings: int = 0, dtype: str = "float32",
                   dropout_rate: float | None = None) -> T5Config:
    """Our T5Config from a Hugging Face T5 config.json dict.

    Logits are scaled and tied exactly when HF scales decoder outputs (`scale_decoder_outputs`
    in transformers >= 5, else `tie_word_embeddings`, default true).
    """
    missing = [k for k in ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff", "num_layers")
               if k not in hf_config]
    if missing:
        raise CheckpointError(f"config.json lacks T5 fields {missing}.")
    scaled = hf_config.get("scale_decoder_outputs", hf_config.get("tie_word_embeddings", True))
    return T5Config(
        vocab_size=hf_config["vocab_size"], d_model=hf_config["d_model"],
        num_heads=hf_config["num_heads"], d_kv=hf_config["d_kv"], d_ff=hf_config["d_ff"],
        num_encoder_layers=hf_config["num_layers"],
        num_decoder_layers=hf_config.get("num_decoder_layers") or hf_config["num_layers"],
        feed_forward=hf_config.get("feed_forward_proj", "relu"), tie_embeddings=bool(scaled),
        relative_buckets=hf_config.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf_config.get("relative_attention_max_distance", 128),
        dropout_rate=hf_config.get("dropout_rate", 0.1) if dropout_rate is None else dropout_rate,
        layer_norm_epsilon=hf_config.get("layer_norm_epsilon", 1e-6),
        whole_word_embeddings=whole_word_embeddings, dtype=dtype)


def hf_config_from(config: T5Config) -> dict:
    """A Hugging Face config.json dict for our config (the whole-word table has no HF field)."""
    return {
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
        "vocab_size": config.vocab_size, "d_model": config.d_model, "d_kv": config.d_kv,
        "d_ff": config.d_ff, "num_heads": config.num_heads,
        "num_layers": config.num_encoder_layers, "num_decoder_layers": config.num_decoder_layers,
        "feed_forward_proj": config.feed_forward, "tie_word_embeddings": config.tie_embeddings,
        "relative_attention_num_buckets": config.relative_buckets,
        "relative_attention_max_distance": config.relative_max_distance,
        "dropout_rate": config.dropout_rate, "layer_norm_epsilon": config.layer_norm_epsilon,
        "is_encoder_decoder": True, "pad_token_id": 0, "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }


def _attention_names(hf_prefix, our_prefix):
    return [(f"{hf_prefix}.{h}.weight", our_prefix + (o,), True)
            for h, o in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))]


def _mlp_names(config, hf_prefix, our_prefix):
    names = ("wi_0", "wi_1", "wo") if config.feed_forward == "gated-gelu" else ("wi", "wo")
    return [(f"{hf_prefix}.DenseReluDense.{n}.weight", our_prefix + ("mlp", n), True)
            for n in names]


def _norm(hf_name, our_prefix):
    return (hf_name, our_prefix + ("scale",), False)


def tensor_map(config: T5Config) -> list[tuple[str, tuple[str, ...], bool]]:
    """(HF tensor name, our parameter path, transpose?) for every network parameter."""
    entries: list[tuple[str, tuple[str, ...], bool]] = [("shared.weight", ("token_embedder",), False)]
    if not config.tie_embeddings:
        entries.append(("lm_head.weight", ("logits_dense",), True))
    for side in ("encoder", "decoder"):
        entries.append((f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                        (side, "relpos_bias", "rel_embedding"), False))
        entries.append(_norm(f"{side}.final_layer_norm.weight", (side, "final_layer_norm")))
    for i in range(config.num_encoder_layers):
        hf, ours = f"encoder.block.{i}.layer", ("encoder", f"layers_{i}")
        entries += _attention_names(f"{hf}.0.SelfAttention", ours + ("attention",))
        entries.append(_norm(f"{hf}.0.layer_norm.weight", ours + ("pre_attention_layer_norm",)))
        entries += _mlp_names(config, f"{hf}.1", ours)
        entries.append(_norm(f"{hf}.1.layer_norm.weight", ours + ("pre_mlp_layer_norm",)))
    for i in range(config.num_decoder_layers):
        hf, ours = f"decoder.block.{i}.layer", ("decoder", f"layers_{i}")
        entries += _attention_names(f"{hf}.0.SelfAttention", ours + ("self_attention",))
        entries.append(_norm(f"{hf}.0.layer_norm.weight",
                             ours + ("pre_self_attention_layer_norm",)))
        entries += _attention_names(f"{hf}.1.EncDecAttention",
                                    ours + ("encoder_decoder_attention",))
        entries.append(_norm(f"{hf}.1.layer_norm.weight",
                             ours + ("pre_cross_attention_layer_norm",)))
        entries += _mlp_names(config, f"{hf}.2", ours)
        entries.append(_norm(f"{hf}.2.layer_norm.weight", ours + ("pre_mlp_layer_norm",)))
    if config.whole_word_embeddings:
        entries.append((WHOLE_WORD_TENSOR, ("whole_word_embedder",), False))
    return entries


def _layer_count(shapes, side: str) -> int:
    indices = {int(path[1][len("layers_"):]) for path in shapes
               if len(path) > 2 and path[0] == side and path[1].startswith("layers_")}
    if indices != set(range(len(indices))):
        raise CheckpointError(f"{side} layers {sorted(indices)} are not numbered 0..n-1.")
    return len(indices)


def config_from_param_shapes(shapes: dict[tuple[str, ...], tuple[int, ...]],
                             **fields) -> T5Config:
    """The T5Config whose parameter tree has these shapes (flat paths, our names).

    Shapes give the vocabulary rows, widths, heads, layers, feed-forward kind, tying, relative
    buckets and whole-word rows; the rest (relative_max_distance, epsilon, dropout, dtype) are
    not stored in shapes and come from `fields` or the T5Config defaults.
    """
    def shape(*path):
        if path not in shapes:
            raise CheckpointError(f"Not a T5 parameter tree: it lacks {'/'.join(path)}.")
        return shapes[path]

    vocab_size, d_model = shape("token_embedder")
    buckets, num_heads = shape("encoder", "relpos_bias", "rel_embedding")
    joined_kv = shape("encoder", "layers_0", "attention", "query")[1]
    gated = ("encoder", "layers_0", "mlp", "wi_0") in shapes
    d_ff = shape("encoder", "layers_0", "mlp", "wi_0" if gated else "wi")[1]
    if joined_kv % num_heads:
        raise CheckpointError(f"Query width {joined_kv} is not a multiple of {num_heads} heads.")
    whole_words = shapes.get(("whole_word_embedder",), (0,))[0]
    return T5Config(**{
        "vocab_size": vocab_size, "d_model": d_model, "num_heads": num_heads,
        "d_kv": joined_kv // num_heads, "d_ff": d_ff,
        "num_encoder_layers": _layer_count(shapes, "encoder"),
        "num_decoder_layers": _layer_count(shapes, "decoder"),
        "feed_forward": "gated-gelu" if gated else "relu",
        "tie_embeddings": ("logits_dense",) not in shapes, "relative_buckets": buckets,
        "whole_word_embeddings": whole_words, **fields})


def expected_shapes(config: T5Config) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Our parameter shapes, from an abstract init (no compute)."""
    tokens = jnp.ones((1, 2), jnp.int32)
    boxed = jax.eval_shape(lambda: Transformer(config).init(
        jax.random.PRNGKey(0), tokens, tokens, tokens)["params"])
    flat = traverse_util.flatten_dict(nn.meta.unbox(boxed))
    return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def _fill_missing(config, tensors, hf_name, lm_head_fallback, whole_word_seed):
    """A tensor absent from the file that may be derived: lm_head (tied in HF), whole words."""
    if hf_name == "lm_head.weight" and lm_head_fallback and "shared.weight" in tensors:
        return tensors["shared.weight"]
    if hf_name == WHOLE_WORD_TENSOR:
        rng = np.random.default_rng(whole_word_seed)
        return rng.normal(size=(config.whole_word_embeddings, config.d_model)).astype(np.float32)
    raise CheckpointError(f"Checkpoint lacks tensor {hf_name!r}.")


def params_from_hf_tensors(*, config: T5Config, tensors: dict[str, np.ndarray],
                           whole_word_seed: int = 0, lm_head_fallback: bool = True) -> dict:
    """Our (unboxed, float32 numpy) parameter tree from HF tensors; strict about names and shapes.

    `lm_head_fallback` lets an untied config take `shared.weight` when the file has no
    `lm_head.weight` (transformers >= 5 ties them on save but does not scale the logits).
    """
    shapes = expected_shapes(config)
    entries = tensor_map(config)
    known = {name for name, _, _ in entries} | set(TIED_COPIES) | {"lm_head.weight"}
    unexpected = sorted(set(tensors) - known)
    if unexpected:
        raise CheckpointError(f"Checkpoint has tensors this config does not use: {unexpected[:5]}"
                              f"{' ...' if len(unexpected) > 5 else ''}")
    flat = {}
    for hf_name, path, transpose in entries:
        array = tensors.get(hf_name)
        if array is None:
            array = _fill_missing(config, tensors, hf_name, lm_head_fallback, whole_word_seed)
        array = np.asarray(array, np.float32)
        hf_shape = shapes[path][::-1] if transpose else shapes[path]
        if array.shape != hf_shape:
            raise CheckpointError(
                f"Tensor {hf_name!r} has shape {array.shape}, expected {hf_shape}.")
        flat[path] = np.ascontiguousarray(array.T if transpose else array)
    return traverse_util.unflatten_dict(flat)


def load_hf_t5(*, folder: str, whole_word_embeddings: int = 0, dtype: str = "float32",
               dropout_rate: float | None = None, whole_word_seed: int = 0
               ) -> tuple[T5Config, dict]:
    """Reads a HF T5 folder (config.json + safetensors) into (T5Config, unboxed params)."""
    config = read_hf_config(folder=folder, whole_word_embeddings=whole_word_embeddings,
                            dtype=dtype, dropout_rate=dropout_rate)
    tensors = read_checkpoint_tensors(folder=folder)
    params = params_from_hf_tensors(config=config, tensors=tensors,
                                    whole_word_seed=whole_word_seed)
    return config, params


def params_to_hf_tensors(*, config: T5Config, params) -> dict[str, np.ndarray]:
    """HF state-dict names -> float32 numpy, including tied copies (`load_state_dict` ready)."""
    flat = traverse_util.flatten_dict(nn.meta.unbox(params))
    tensors = {}
    for hf_name, path, transpose in tensor_map(config):
        if path not in flat:
            raise CheckpointError(f"Parameters lack {'/'.join(path)} (for {hf_name!r}).")
        array = np.asarray(jax.device_get(flat[path]), np.float32)
        tensors[hf_name] = np.ascontiguousarray(array.T if transpose else array)
    for name in TIED_COPIES:
        tensors[name] = tensors["shared.weight"]
    if config.tie_embeddings:
        tensors["lm_head.weight"] = tensors["shared.weight"]
    return tensors


def save_hf_t5(*, folder: str, config: T5Config, params) -> None:
    """Writes config.json + model.safetensors that `load_hf_t5` (and transformers) can read."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config_from(config), f, indent=2)
    tensors = params_to_hf_tensors(config=config, params=params)
    for name in TIED_COPIES:
        tensors.pop(name)
    if config.tie_embeddings:
        tensors.pop("lm_head.weight")
    write_safetensors(path=os.path.join(folder, "model.safetensors"), tensors=tensors)
