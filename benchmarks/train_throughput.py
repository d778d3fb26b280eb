"""Training throughput: our jitted JAX step vs transformers' PyTorch T5 step, same machine.

t5-small dimensions (vocab 32128), batch 16, 128 input and 16 target tokens, fp32, dropout 0.1,
AdamW with gradient clipping at 1.0, every core for both. Prints the devices each side used,
tokens/s (input plus target positions per second) for each and, last, `ratio_vs_hf_torch=X.XX`.
Before that, where the compute goes: the step's floating-point operations as XLA counts them, the
rate each side reaches, and XLA's time for the step's matrix products alone (`matmul_floor_s`,
see matmul_floor.py). A step that did nothing else would reach `matmul_bound_ratio`: the ceiling
for the ratio above on this machine.
`--torch_device cuda` runs the PyTorch side on the GPU (for a GPU host where JAX uses it too).

Then packing (needs the prepared Musical Instruments data: `python -m p5_jax.data.prepare
--dataset musical_instruments`): the same examples of the real mixture `p5_musical_instruments_all`
(training split, shuffled with seed 0) at 512 input and 64 target tokens, one per row against
first-fit packed rows, trained with the demo's tiny model (gin/models/tiny.gin: d_model 64, 2+2
layers, dropout 0.1, whole-word embeddings, the tasks' vocabulary) in batches of 32 rows, AdamW
as gin/runs/train.gin. For each layout it prints the fraction of real (non-pad) token positions
per batch (encoder and decoder together, then each), the examples per batch, the seconds per
step and real tokens/s (real positions per batch over seconds per step; steps of the two
layouts alternate, so a drifting machine hits both alike), and last
`packed_speedup=X.XX`, real tokens/s packed over unpacked.

  python benchmarks/train_throughput.py [--warmup 2] [--steps 5] [--torch_device cpu|cuda]
      [--part all|hf|packing] [--packing_examples 2048] [--packing_steps 5]
"""
from __future__ import annotations

import importlib.util

if importlib.util.find_spec("tensorflow") is not None:  # imported by clu and transformers
    from p5_jax.tf_setup import quiet_tensorflow
    quiet_tensorflow()

import argparse
import os
import time
from typing import Any

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
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # type: ignore[call-arg]  # via **kwargs
    # transformers' decorator on `to` types its first argument as the model: a string is a device.
    model = transformers.T5ForConditionalGeneration(config).to(device).train()  # type: ignore[arg-type]
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


# -- packing ------------------------------------------------------------------------------------
PACKING_MIXTURE = "p5_musical_instruments_all"
PACKING_LENGTHS = {"inputs": 512, "targets": 64}
PACKING_BATCH = 32


def mixture_examples(count: int, *, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The first `count` training examples of the mixture (task features only)."""
    import seqio

    import p5_tasks  # noqa: F401  (registers the tasks)
    mixture = seqio.get_mixture_or_task(PACKING_MIXTURE)
    dataset = mixture.get_dataset(PACKING_LENGTHS, split="train", shuffle=True, seed=seed,
                                  num_epochs=None, use_cached=False)
    keys = ("inputs", "targets", "inputs_whole_word_ids")
    examples = []
    for example in dataset.take(count).as_numpy_iterator():
        examples.append({key: np.asarray(example[key], np.int32) for key in keys})
    return examples


def host_batches(examples, *, pack: bool, batch_size: int) -> tuple[list[dict], float]:
    """(full batches of the examples in one layout, seconds the feature converter took)."""
    import tensorflow as tf

    from p5_jax.feature_converter import P5EncDecFeatureConverter

    def generate():
        yield from examples

    signature = {key: tf.TensorSpec([None], tf.int32) for key in examples[0]}
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    start = time.perf_counter()
    converted = P5EncDecFeatureConverter(pack=pack)(dataset, PACKING_LENGTHS)
    batches = list(converted.batch(batch_size, drop_remainder=True).as_numpy_iterator())
    return batches, time.perf_counter() - start


def fill(batches) -> dict[str, float]:
    """Mean real positions and examples per batch, and the real fractions."""
    encoder = np.mean([np.count_nonzero(b["encoder_input_tokens"]) for b in batches])
    decoder = np.mean([np.count_nonzero(b["decoder_target_tokens"]) for b in batches])
    rows, enc_len = batches[0]["encoder_input_tokens"].shape
    dec_len = batches[0]["decoder_target_tokens"].shape[1]
    examples = np.mean([b["decoder_segment_ids"].max(axis=1).sum() if "decoder_segment_ids" in b
                        else rows for b in batches])
    positions = rows * (enc_len + dec_len)
    return {"real": encoder + decoder, "fraction": (encoder + decoder) / positions,
            "encoder": encoder / (rows * enc_len), "decoder": decoder / (rows * dec_len),
            "examples": float(examples)}


def packing_trainer(vocab_size: int):
    import jax

    from p5_jax import models, network, partitioning, trainer
    config = network.tiny_config(vocab_size=vocab_size, dropout_rate=0.1)
    return trainer.Trainer(
        model=models.EncoderDecoderModel(module=network.Transformer(config)),
        optimizer=trainer.make_adamw(learning_rate=1e-3, weight_decay=0.01, eps=1e-6,
                                     max_grad_norm=1.0),
        mesh=partitioning.make_mesh(data=1, model=1, devices=jax.devices()[:1]),
        batch_size=PACKING_BATCH, input_length=PACKING_LENGTHS["inputs"],
        target_length=PACKING_LENGTHS["targets"])


def packing_comparison(*, num_examples: int, warmup: int, steps: int) -> None:
    import jax
    import seqio

    from p5_jax import inference, paths
    if not (paths.prepared_root() / "musical_instruments").is_dir():
        raise SystemExit(f"packing: no prepared data under {paths.prepared_root()}; run "
                         "python -m p5_jax.data.prepare --dataset musical_instruments")
    start = time.perf_counter()
    examples = mixture_examples(num_examples)
    print(f"packing_data={PACKING_MIXTURE} train, {len(examples)} examples, inputs "
          f"{PACKING_LENGTHS['inputs']} targets {PACKING_LENGTHS['targets']} "
          f"({time.perf_counter() - start:.0f} s to read)", flush=True)
    layouts: dict[str, dict[str, Any]] = {}
    for name, pack in (("unpacked", False), ("packed", True)):
        batches, seconds = host_batches(examples, pack=pack, batch_size=PACKING_BATCH)
        layouts[name] = {"batches": batches, "fill": fill(batches),
                         "converter_examples_per_s": len(examples) / seconds}
    vocab = seqio.get_mixture_or_task(PACKING_MIXTURE).output_features["targets"].vocabulary
    vocab_size = inference.padded_vocab_size(vocab.vocab_size)
    print(f"packing_model=tiny (d_model 64, 2+2 layers, dropout 0.1, vocab {vocab_size}) "
          f"batch={PACKING_BATCH} rows, {jax.devices()[0].platform}", flush=True)
    runs: dict[str, dict[str, Any]] = {}
    for name, layout in layouts.items():
        train = packing_trainer(vocab_size)
        device_batches = [train.put_batch(b) for b in layout["batches"]]
        runs[name] = {"train": train, "state": train.create_state(seed=0),
                      "batches": device_batches, "seconds": 0.0, "next": 0}

    def step(run, timed):
        batch = run["batches"][run["next"] % len(run["batches"])]
        run["next"] += 1
        begin = time.perf_counter()
        run["state"], metrics = run["train"].train_step(run["state"], batch)
        jax.block_until_ready(metrics["loss"])
        if timed:
            run["seconds"] += time.perf_counter() - begin

    for _ in range(warmup):  # compilation included
        for run in runs.values():
            step(run, timed=False)
    for _ in range(steps):  # alternating, so drift on a shared machine hits both layouts
        for run in runs.values():
            step(run, timed=True)
    rates = {}
    for name, layout in layouts.items():
        f, seconds = layout["fill"], runs[name]["seconds"] / steps
        rates[name] = f["real"] / seconds
        print(f"{name}: real_token_fraction={f['fraction']:.3f} (encoder {f['encoder']:.3f}, "
              f"decoder {f['decoder']:.3f}) examples_per_batch={f['examples']:.1f} "
              f"s_per_step={seconds:.3f} real_tokens_per_s={rates[name]:.0f} "
              f"(feature converter: {layout['converter_examples_per_s']:.0f} examples/s)",
              flush=True)
    print(f"packed_speedup={rates['packed'] / rates['unpacked']:.2f}")


def hf_comparison(args) -> None:
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
    print(f"ratio_vs_hf_torch={theirs / ours:.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--torch_device", default="cpu",
                        help="device for the PyTorch side: cpu (default) or cuda")
    parser.add_argument("--part", choices=("all", "hf", "packing"), default="all",
                        help="hf: our step against PyTorch's; packing: packed against "
                             "unpacked batches of the real mixture; all (default): both")
    parser.add_argument("--packing_examples", type=int, default=2048,
                        help="mixture examples both layouts are built from")
    parser.add_argument("--packing_warmup", type=int, default=2)
    parser.add_argument("--packing_steps", type=int, default=5,
                        help="timed steps of each layout")
    args = parser.parse_args()
    if args.part in ("all", "hf"):
        hf_comparison(args)
    if args.part in ("all", "packing"):
        packing_comparison(num_examples=args.packing_examples, warmup=args.packing_warmup,
                           steps=args.packing_steps)


if __name__ == "__main__":
    main()
