"""Restart cost of the training data: seconds from restoring a data position to the first batch
of the demo job (gin/experiments/demo_train.gin: p5_musical_instruments_all, 256 + 64 tokens,
packed, 32 rows, seed 0), at position 0 and at a far one (`--batches`, default 50,000), each in
a fresh process (imports not counted; the stream's set-up, reading and preprocessing are),
medians of `--repeats` alternating runs.

Default (`--mode indexed`, the pipeline training uses, `input_pipeline.GlobalBatches`): the far
position is extrapolated from the first batch's examples per row and the mixing rates, since
restoring rebuilds one window whatever the numbers are. Prints both times and last
`resume_time_ratio=X.XX` (far over 0).

`--mode replay`: the skip-based pipeline resuming used before (seqio.get_dataset, the same
mixture, packing and batches, then tf.data `skip(M)`), timed at M = 0 and M = `--replay_batches`
(default 500); replaying is linear in M, so it prints the seconds per replayed batch and the
extrapolation to `--batches`, then `replay_time_ratio=X.XX`.

  python benchmarks/resume_time.py [--mode indexed|replay] [--batches 50000]
      [--replay_batches 500] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

DEMO_GIN = "gin/experiments/demo_train.gin"


def demo_job() -> dict:
    """The demo's mixture, lengths, batch size, seed and packing, read from its gin file."""
    import gin

    from p5_jax import gin_bindings, train  # noqa: F401  (registers `train`)

    gin_bindings.parse_config(gin_files=[DEMO_GIN], gin_bindings=["MODEL_DIR = '/unused'"])
    macro = lambda name: gin.query_parameter(f"{name}/gin.macro.value")  # noqa: E731
    return {"mixture_or_task_name": macro("MIXTURE_OR_TASK_NAME"),
            "task_feature_lengths": dict(macro("TASK_FEATURE_LENGTHS")),
            "batch_size": macro("BATCH_SIZE"), "seed": gin.query_parameter("train.seed"),
            "pack": gin.query_parameter("train.pack")}


def _indexed_child(far: dict | None) -> dict:
    """Seconds to the first batch at position 0 (with its examples per row), or at the
    position `far["batches"]` in, extrapolated with `far["examples_per_row"]`."""
    from p5_jax import input_pipeline

    job = demo_job()
    position = None if far is None else far_position(job, **far)
    start = time.perf_counter()
    batches = input_pipeline.global_batches(split="train", **job)
    if position is not None:
        batches.restore(position)
    batch = next(batches)
    seconds = time.perf_counter() - start
    segments = batch.get("decoder_segment_ids", batch["decoder_target_tokens"] > 0)
    return {"seconds": seconds, "examples_per_row": float(segments.max(axis=1).mean())}


def _replay_child(batches_consumed: int) -> dict:
    import seqio

    from p5_jax import feature_converter, input_pipeline

    job = demo_job()
    start = time.perf_counter()
    batches = input_pipeline.BatchIterator(
        dataset_fn=lambda: seqio.get_dataset(
            job["mixture_or_task_name"], task_feature_lengths=job["task_feature_lengths"],
            feature_converter=feature_converter.P5EncDecFeatureConverter(pack=job["pack"]),
            dataset_split="train", shuffle=True, num_epochs=None, seed=job["seed"],
            use_cached=False),
        batch_size=job["batch_size"], position=batches_consumed)
    next(batches)
    return {"seconds": time.perf_counter() - start}


def _run_child(mode: str, argument) -> dict:
    """One timing in a fresh process (nothing read or compiled before counts)."""
    out = subprocess.run([sys.executable, __file__, "--child", mode, json.dumps(argument)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def far_position(job: dict, *, batches: int, examples_per_row: float) -> dict:
    """A data position `batches` batches in: the window holding its next row, each task's
    share of the examples before that window (at the mixing rates) in whole chunks."""
    import seqio

    from p5_jax import feature_converter, input_pipeline

    examples = batches * job["batch_size"] * examples_per_row
    window = int(examples // feature_converter.DEFAULT_PACK_WINDOW)
    mixture = seqio.get_mixture_or_task(job["mixture_or_task_name"])
    rates = {task.name: mixture.get_rate(task) for task in mixture.tasks}
    before = window * feature_converter.DEFAULT_PACK_WINDOW
    tasks = {name: (int(before * rate / sum(rates.values())) // input_pipeline.CHUNK, 0)
             for name, rate in rates.items()}
    state = input_pipeline.StreamState(window=window, row=0, tasks=tasks)
    return {input_pipeline.POSITION_KEY: batches, input_pipeline.STREAM_KEY: state.to_json()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("indexed", "replay"), default="indexed")
    parser.add_argument("--batches", type=int, default=50_000)
    parser.add_argument("--replay_batches", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="medians of this many runs")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, argument = args.child[0], json.loads(args.child[1])
        result = _indexed_child(argument) if mode == "indexed" else _replay_child(argument)
        print(json.dumps(result))
        return
    if args.mode == "indexed":
        zero_runs, far_runs = [], []
        for _ in range(args.repeats):  # alternating, so a drifting machine hits both alike
            first = _run_child("indexed", None)
            zero_runs.append(first["seconds"])
            far_runs.append(_run_child("indexed", {"batches": args.batches,
                                                   "examples_per_row": first["examples_per_row"]}
                                       )["seconds"])
        zero, far = float(np.median(zero_runs)), float(np.median(far_runs))
        print(f"indexed resume, first batch at position 0: {zero:.1f} s")
        print(f"indexed resume, first batch at {args.batches:,} batches: {far:.1f} s")
        print(f"resume_time_ratio={far / zero:.2f}")
        return
    zero = _run_child("replay", 0)["seconds"]
    some = _run_child("replay", args.replay_batches)["seconds"]
    per_batch = (some - zero) / args.replay_batches
    print(f"replay resume, first batch at position 0: {zero:.1f} s")
    print(f"replay resume, first batch at {args.replay_batches:,} batches: {some:.1f} s "
          f"({per_batch:.3f} s per replayed batch)")
    far = zero + per_batch * args.batches
    print(f"replay resume at {args.batches:,} batches (extrapolated): {far:.0f} s")
    print(f"replay_time_ratio={far / zero:.2f}")


if __name__ == "__main__":
    main()
