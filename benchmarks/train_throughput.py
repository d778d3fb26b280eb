"""Training throughput: our jitted JAX step vs transformers' PyTorch T5 step, same machine.

t5-small dimensions (vocab 32128), batch 16, 128 input and 16 target tokens, fp32, dropout 0.1,
AdamW with gradient clipping at 1.0, every core for both. Prints the devices each side used,
tokens/s (input plus target positions per second) for each and, last, `ratio_vs_hf_torch=X.XX`.
Before that, where the compute goes: the step's floating-point operations as XLA counts them, the
rate each side reaches, and XLA's time for the step's matrix products alone (`matmul_floor_s`,
see matmul_floor.py). A step that did nothing else would reach `matmul_bound_ratio`: the ceiling
for the ratio above on this machine.
`--torch_device cuda` runs the PyTorch side on the GPU (for a GPU host where JAX uses it too).

  python benchmarks/train_throughput.py [--warmup 2] [--steps 5] [--torch_device cpu|cuda]
"""
from __future__ import annotations

import importlib.util

if importlib.util.find_spec("tensorflow") is not None:  # imported by clu and transformers
    from p5_jax.tf_setup import quiet_tensorflow
    quiet_tensorflow()

import argparse
import os
import time

import numpy as np
from matmul_floor import time_products, train_step_products

BATCH, INPUT_LENGTH, TARGET_LENGTH, VOCAB = 16, 128, 16, 32128


def make_batch(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = rng.integers(3, VOCAB, (BATCH, INPUT_LENGTH)).astype(np.int32)
    targets = rng.integers(3, VOCAB, (BATCH, TARGET_LENGTH)).astype(np.int32)
    inputs[:, -1] = targets[:, -1] = 1
    return {"encoder_input_tokens": inputs,
            "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
            "decoder_target_tokens": targets,
            "decoder_loss_weights": np.ones_like(targets, dtype=np.float32)}


def time_steps(step, *, warmup: int, steps: int) -> float:
    """Seconds per step after `warmup` untimed steps (compilation included there)."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def small_config():
    """t5-small as both sides train it (dropout 0.1, no whole-word embedding)."""
    from p5_jax import network
    return network.t5_small_config(whole_word_embeddings=0, dropout_rate=0.1)


def jax_step_fn(batch):
    import jax

    from p5_jax import models, network, partitioning, trainer
    config = small_config()
    train = trainer.Trainer(
        model=models.EncoderDecoderModel(module=network.Transformer(config)),
        optimizer=trainer.make_adamw(learning_rate=1e-3, weight_decay=0.01, max_grad_norm=1.0),
        mesh=partitioning.make_mesh(data=1, model=1, devices=jax.devices()[:1]),
        batch_size=BATCH, input_length=INPUT_LENGTH, target_length=TARGET_LENGTH)
    holder = {"state": train.create_state(seed=0)}
    device_batch = train.put_batch(batch)
    flops = train.train_step_flops(holder["state"], device_batch)

    def step():
        holder["state"], metrics = train.train_step(holder["state"], device_batch)
        jax.block_until_ready(metrics["loss"])

    device = jax.devices()[0]
    print(f"p5_jax_device={device.platform} ({device.device_kind})", flush=True)
    return step, flops


def torch_step_fn(batch, *, threads: int, device: str = "cpu"):
    import torch
    import transformers
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=VOCAB, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6,
        num_heads=8, feed_forward_proj="relu", tie_word_embeddings=True, dropout_rate=0.1,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = transformers.T5ForConditionalGeneration(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-6, weight_decay=0.01)
    input_ids = torch.from_numpy(batch["encoder_input_tokens"].astype(np.int64)).to(device)
    labels = torch.from_numpy(batch["decoder_target_tokens"].astype(np.int64)).to(device)
    attention_mask = (input_ids != 0).long()
    on_gpu = torch.device(device).type == "cuda"

    def step():
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if on_gpu:
            torch.cuda.synchronize()

    name = torch.cuda.get_device_name(device) if on_gpu else f"{threads} threads"
    print(f"hf_torch_device={device} ({name})", flush=True)
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--torch_device", default="cpu",
                        help="device for the PyTorch side: cpu (default) or cuda")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    batch = make_batch()
    tokens_per_step = BATCH * (INPUT_LENGTH + TARGET_LENGTH)
    step, flops = jax_step_fn(batch)
    ours = time_steps(step, warmup=args.warmup, steps=args.steps)
    print(f"p5_jax_tokens_per_s={tokens_per_step / ours:.1f}", flush=True)
    theirs = time_steps(torch_step_fn(batch, threads=threads, device=args.torch_device),
                        warmup=args.warmup, steps=args.steps)
    print(f"hf_torch_tokens_per_s={tokens_per_step / theirs:.1f}", flush=True)
    if flops:
        print(f"step_gflop={flops / 1e9:.1f} (XLA's count, every op of the step)")
        print(f"p5_jax_gflop_per_s={flops / ours / 1e9:.1f} "
              f"hf_torch_gflop_per_s={flops / theirs / 1e9:.1f}")
    products = train_step_products(small_config(), batch=BATCH, input_length=INPUT_LENGTH,
                                   target_length=TARGET_LENGTH)
    floor = time_products(products)
    print(f"matmul_floor_s={floor:.3f} ({sum(p.flops for p in products) / 1e9:.1f} GFLOP of "
          f"matrix products; ours {ours:.3f}, PyTorch {theirs:.3f} s/step) "
          f"matmul_bound_ratio={theirs / floor:.2f}")
    print(f"ratio_vs_hf_torch={theirs / ours:.2f}")


if __name__ == "__main__":
    main()
