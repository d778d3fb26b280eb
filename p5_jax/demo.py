"""The main job (`make demo`): prepare the default dataset, train the compact model on all its task
families and the SASRec baseline, evaluate every family, and write a report with plots.

Each stage runs the same command a user would type, printed before it starts. Everything lands
in `runs/demo/` (override with --out_dir); a rerun resumes training from its last checkpoint.
"""
import argparse
import pathlib
import resource
import subprocess
import sys
import time

from p5_jax import paths, report
from p5_jax.tf_setup import quiet_tensorflow

DATASET = "musical_instruments"


def _run(stage: str, args: list[str]) -> None:
    command = [sys.executable, "-m", *args]
    print(f"\n== {stage}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=paths.REPO_ROOT)


def _gin(name: str, value) -> str:
    return f"--gin.{name}={value!r}"


def loss_history(logdir: pathlib.Path, *, tag: str = "train/loss") -> list[tuple[int, float]]:
    """(step, loss) pairs read back from the TensorBoard event files of a training run."""
    tf = quiet_tensorflow()
    history = {}
    for events in sorted(logdir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(events)).as_numpy_iterator():
            event = tf.compat.v1.Event.FromString(record)
            for value in event.summary.value:
                if value.tag == tag:
                    history[event.step] = float(tf.make_ndarray(value.tensor))
    return sorted(history.items())


def _peak_memory_mib() -> float:
    """Largest resident set of any single stage (Linux reports kilobytes)."""
    usage = max(resource.getrusage(who).ru_maxrss
                for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return usage / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default=str(paths.REPO_ROOT / "runs" / "demo"))
    args = parser.parse_args(argv)
    out_dir = pathlib.Path(args.out_dir).resolve()
    model_dir, eval_dir = out_dir / "model", out_dir / "eval"
    start = time.perf_counter()
    _run("prepare", ["p5_jax.data.prepare", "--dataset", DATASET])
    _run("train", ["p5_jax.train", "--gin_file=gin/experiments/demo_train.gin",
                   _gin("MODEL_DIR", str(model_dir))])
    _run("baseline", ["p5_jax.baselines", "--dataset", DATASET])
    _run("evaluate", ["p5_jax.eval", "--gin_file=gin/experiments/demo_eval.gin",
                      _gin("CHECKPOINT_PATH", str(model_dir)),
                      _gin("EVAL_OUTPUT_DIR", str(eval_dir))])
    curve = report.plot_loss_curve(loss_history(model_dir / "train"), eval_dir / "loss_curve.png")
    print(f"Report: {eval_dir / 'results.md'}, plots: {curve}, {eval_dir / 'metrics.png'}")
    print(f"Wall time {time.perf_counter() - start:.0f} s; "
          f"peak memory {_peak_memory_mib():.0f} MiB (largest single stage)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
