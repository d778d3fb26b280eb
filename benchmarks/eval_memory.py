"""Peak resident memory of the demo evaluation at 1x and 10x the evaluated examples.

Runs `python -m p5_jax.eval --gin_file=gin/experiments/demo_eval.gin` (every family, seen and
unseen prompts, both protocols) as a subprocess twice, on `--users` and on 10x as many test
users drawn at random (MAX_USERS_PER_TASK; 200 is the demo's own setting), and reads each run's
peak RSS from the kernel (wait4's ru_maxrss). Prints, per run, the examples evaluated, the wall
time and the peak, then the ratio and, last, `eval_peak_rss_gib_1x=X.XX` and
`eval_peak_rss_gib_10x=X.XX`.

Batches are padded to their longest prompt (rounded up to 64 tokens), and each length met
compiles its own programs; evaluation decodes a task's batches shortest first and drops one
length's programs when the next starts, so a larger sample, which meets more lengths, does not
hold more of them. `--pad_to_input_length` pads every batch to its task's input length (one
program per task) instead.

Without --checkpoint the demo's model is trained for 2 steps (gin/experiments/demo_train.gin)
into a temporary folder: the memory of an evaluation does not depend on the weights.

    python benchmarks/eval_memory.py [--checkpoint DIR] [--users 20] [--tasks NAME[,NAME]]
        [--protocols exact p5] [--pad_to_input_length]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
GIB = 2 ** 30


def _gin(name: str, value) -> str:
    return f"--gin.{name}={value!r}"


def train_demo_model(model_dir: pathlib.Path) -> pathlib.Path:
    """A 2-step checkpoint of the demo recipe."""
    subprocess.run([sys.executable, "-m", "p5_jax.train",
                    "--gin_file=gin/experiments/demo_train.gin", _gin("MODEL_DIR", str(model_dir)),
                    "--gin.TRAIN_STEPS=2", "--gin.train.checkpoint_every=2",
                    "--gin.train.eval_every=0", "--gin.train.show_progress=False"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return model_dir


def run_eval(*, checkpoint, out_dir: pathlib.Path, users: int, tasks: str | None,
             protocols, pad_to_input_length: bool = False) -> dict:
    """One evaluation as a child process: its peak RSS (bytes), wall time and examples."""
    command = [sys.executable, "-m", "p5_jax.eval", "--gin_file=gin/experiments/demo_eval.gin",
               _gin("CHECKPOINT_PATH", str(checkpoint)), _gin("EVAL_OUTPUT_DIR", str(out_dir)),
               f"--gin.MAX_USERS_PER_TASK={users}", _gin("PROTOCOLS", list(protocols))]
    if tasks:
        command += [_gin("MIXTURE_OR_TASK_NAME", tasks), "--gin.evaluate.include_unseen=False"]
    if pad_to_input_length:
        command += ["--gin.evaluate.pad_to_input_length=True"]
    start = time.perf_counter()
    log = out_dir.with_suffix(".log")
    with open(log, "wb") as stderr:
        child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
    code = child.returncode = os.waitstatus_to_exitcode(status)   # reaped by wait4
    if code:
        tail = log.read_text(errors="replace").splitlines()[-5:]
        raise SystemExit(f"evaluation with {users} users failed (exit {code}): "
                         + " ".join(command) + "\n" + "\n".join(tail))
    return {"users": users, "peak": usage.ru_maxrss * 1024, "seconds": time.perf_counter() - start,
            "examples": _examples(out_dir)}


def _examples(out_dir: pathlib.Path) -> int:
    """Examples scored, summed over every task and protocol (yes/no probes count per user)."""
    total = 0
    for path in out_dir.rglob("results.json"):
        total += sum(int(t["metrics"].get("count") or 0)
                     for t in json.loads(path.read_text())["tasks"])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a MODEL_DIR of the demo's model (default: train one)")
    parser.add_argument("--users", type=int, default=20, help="users of the 1x run")
    parser.add_argument("--tasks", help="task names instead of the demo mixture")
    parser.add_argument("--protocols", nargs="+", default=["exact", "p5"])
    parser.add_argument("--pad_to_input_length", action="store_true",
                        help="every batch at its task's full input length (one shape per task)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eval_memory_") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        checkpoint = args.checkpoint or train_demo_model(tmp / "model")
        runs = {}
        for label, users in (("1x", args.users), ("10x", 10 * args.users)):
            runs[label] = run_eval(checkpoint=checkpoint, out_dir=tmp / f"eval_{label}",
                                   users=users, tasks=args.tasks, protocols=args.protocols,
                                   pad_to_input_length=args.pad_to_input_length)
            run = runs[label]
            print(f"{label}: {run['users']} users, {run['examples']} examples scored, "
                  f"{run['seconds']:.0f} s, peak RSS {run['peak'] / GIB:.2f} GiB", flush=True)
    print(f"peak RSS ratio 10x / 1x: {runs['10x']['peak'] / runs['1x']['peak']:.2f}")
    print(f"eval_peak_rss_gib_1x={runs['1x']['peak'] / GIB:.2f}")
    print(f"eval_peak_rss_gib_10x={runs['10x']['peak'] / GIB:.2f}")


if __name__ == "__main__":
    main()
