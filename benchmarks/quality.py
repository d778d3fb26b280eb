"""Does a P5 model trained with p5-jax recommend better than SASRec? Trains one per dataset on
the CPU and scores it, SASRec and most-popular on the whole test split, same users, same code.

    python benchmarks/quality.py                       # ml100k and musical_instruments
    python benchmarks/quality.py --datasets ml100k --out_dir runs/quality
    python benchmarks/quality.py --datasets ml100k --gin TRAIN_STEPS=3000 --out_dir runs/q3000

Per dataset, each stage is the command a user would type (printed before it runs):
1. prepare the shipped data with collaborative item ids into `<out_dir>/prepared`;
2. train the recipe of gin/experiments/quality_train.gin on `p5_<dataset>_recommend`;
3. train SASRec on the same training sequences (python -m p5_jax.baselines);
4. choose the checkpoint as SASRec's epoch is chosen: the best validation NDCG@10 of the
   headline sequential prompt over every kept checkpoint (the earliest of ties), evaluated on
   each user's validation item, so the test split is read once, at the end;
5. evaluate the headline prompts on every test user (gin/experiments/quality_eval.gin).
Then it prints HR@5/NDCG@5/HR@10/NDCG@10 with 95% per-user bootstrap intervals for the P5
model, SASRec, most-popular and the last-item transitions (a first-order Markov chain counted on
the training sequences), and one line per dataset
`ndcg10_ratio_vs_sasrec=X.XX` (the P5 model's NDCG@10 on the sequential headline prompt over
SASRec's on the same users), with a paired bootstrap interval of the ratio. A rerun reuses
finished stages (prepared data, checkpoints, the SASRec cache, and the validation evaluations
of checkpoints whose saved state is unchanged: a run trained again is evaluated again).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p5_jax import atomic_files, intervals, metrics  # noqa: E402

DATASETS = ("ml100k", "musical_instruments")
INDEXING = "collaborative"
# Chosen before any run: P5's headline seen sequential prompt, its unseen one, the headline
# direct yes/no prompt ranked by p(yes) (5-4 shows the item's title; datasets without titles
# take 5-1, the same question with the item id) and the unseen candidate prompt.
SEQUENTIAL_HEADLINE = "2-3"
PROMPTS = ("sequential_2_3", "sequential_2_13", ("direct_5_4", "direct_5_1"), "direct_5_8")
COLUMNS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10")
# Beside each validation evaluation: the checkpoint it evaluated (`checkpoint_identity`).
CHECKPOINT_RECORD = "checkpoint.json"


def _run(stage: str, module_args: list[str], env: dict) -> None:
    command = [sys.executable, "-m", *module_args]
    print(f"\n== {stage}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=REPO, env=env)


def _gin(name: str, value) -> str:
    return f"--gin.{name}={value!r}"


def _prepared(root: pathlib.Path, dataset: str) -> bool:
    manifest = root / dataset / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("indexing") == INDEXING


def task_name(dataset: str, prompt: str) -> str:
    return f"p5_{dataset}_{prompt}"


def headline_tasks(dataset: str, registered) -> list[str]:
    """The task of each PROMPTS entry (the first registered one of a tuple of choices)."""
    names = []
    for choices in PROMPTS:
        options = [task_name(dataset, p) for p in ((choices,) if isinstance(choices, str)
                                                   else choices)]
        names.append(next((n for n in options if n in registered), options[0]))
    return names


def _registered_tasks() -> set[str]:
    """Task names registered for the prepared root in $P5_DATA_DIR."""
    import seqio

    import p5_tasks  # noqa: F401  (registers; reads $P5_DATA_DIR)

    return set(seqio.TaskRegistry.names())


def run_stages(dataset: str, out_dir: pathlib.Path, env: dict,
               train_bindings: tuple[str, ...] = ()) -> tuple[pathlib.Path, str]:
    """Prepares, trains (the recipe, then `train_bindings`, e.g. "TRAIN_STEPS=3000"), fits
    SASRec, chooses the checkpoint and evaluates it; returns the evaluation folder and the
    line of the choice."""
    root = pathlib.Path(env["P5_DATA_DIR"])
    if not _prepared(root, dataset):
        _run("prepare", ["p5_jax.data.prepare", "--dataset", dataset, "--out_dir", str(root),
                         "--indexing", INDEXING], env)
    model_dir, eval_dir = out_dir / dataset / "model", out_dir / dataset / "eval"
    _run("train", ["p5_jax.train", "--gin_file=gin/experiments/quality_train.gin",
                   _gin("MIXTURE_OR_TASK_NAME", f"p5_{dataset}_recommend"),
                   _gin("MODEL_DIR", str(model_dir)),
                   *(f"--gin.{binding}" for binding in train_bindings)], env)
    _run("SASRec", ["p5_jax.baselines", "--dataset", dataset, "--data_dir", str(root),
                    "--no_progress"], env)
    curve = validation_curve(dataset, model_dir, out_dir / dataset / "validation", env)
    step = best_step(curve)
    choice = f"{_curve_line(curve)}; chosen step {step}"
    print(f"\n{dataset}: {choice}", flush=True)
    names = ",".join(headline_tasks(dataset, _registered_tasks()))
    _run("evaluate", ["p5_jax.eval", "--gin_file=gin/experiments/quality_eval.gin",
                      _gin("CHECKPOINT_PATH", str(model_dir / "checkpoints" / str(step))),
                      _gin("MIXTURE_OR_TASK_NAME", names), _gin("EVAL_OUTPUT_DIR", str(eval_dir))],
         env)
    return eval_dir, choice


def _sequential_headline_task(dataset: str) -> str:
    return task_name(dataset, f"sequential_{SEQUENTIAL_HEADLINE.replace('-', '_')}")


def checkpoint_steps(model_dir: pathlib.Path) -> list[int]:
    """The steps of the finished checkpoints of a training run's MODEL_DIR."""
    from p5_jax import checkpoints

    with checkpoints.Checkpointer(directory=model_dir / "checkpoints", save_every=1,
                                  async_save=False) as checkpointer:
        return checkpointer.all_steps()


def validation_curve(dataset: str, model_dir: pathlib.Path, out_dir: pathlib.Path,
                     env: dict) -> list[tuple[int, float]]:
    """(step, validation NDCG@10 of the headline sequential prompt) for every finished
    checkpoint; a step evaluated before is read back, not rerun, when the folder records the
    same saved state (a retrained run's folders are evaluated again)."""
    curve = []
    for step in checkpoint_steps(model_dir):
        folder, checkpoint = out_dir / str(step), model_dir / "checkpoints" / str(step)
        identity = checkpoint_identity(checkpoint)
        if not _evaluated(folder, identity):
            _run(f"validate step {step}", [
                "p5_jax.eval", "--gin_file=gin/experiments/quality_eval.gin",
                _gin("CHECKPOINT_PATH", str(checkpoint)),
                _gin("MIXTURE_OR_TASK_NAME", _sequential_headline_task(dataset)),
                _gin("EVAL_OUTPUT_DIR", str(folder)), _gin("evaluate.split", "validation")], env)
            _write_record(folder / CHECKPOINT_RECORD, identity)
        curve.append((step, validation_ndcg10(folder)))
    return curve


def checkpoint_identity(step_folder: pathlib.Path) -> dict:
    """What names one saved train state: its folder and the digest of its recorded checksums."""
    from p5_jax import checkpoints

    digest = checkpoints.saved_state_digest(step_folder) if step_folder.is_dir() else None
    return {"checkpoint": str(step_folder), "state_digest": digest}


def _write_record(path: pathlib.Path, identity: dict) -> None:
    """Writes the record whole or not at all (a temporary file renamed over it)."""
    atomic_files.write_atomically(path, json.dumps(identity) + "\n")


def _evaluated(folder: pathlib.Path, identity: dict) -> bool:
    """Whether `folder` holds an evaluation of `identity`; an unreadable record counts as none."""
    record = folder / CHECKPOINT_RECORD
    if not ((folder / "results.json").is_file() and record.is_file()):
        return False
    try:
        return json.loads(record.read_text()) == identity
    except json.JSONDecodeError:
        return False


def validation_ndcg10(folder: pathlib.Path) -> float:
    results = json.loads((folder / "results.json").read_text())
    if results["settings"].get("split") != "validation":
        raise ValueError(f"{folder / 'results.json'} is not a validation evaluation")
    return float(results["tasks"][0]["metrics"]["ndcg@10"])


def best_step(curve: list[tuple[int, float]]) -> int:
    """The step of the highest validation NDCG@10, the earliest of ties."""
    if not curve:
        raise ValueError("no finished checkpoint to choose from")
    return min(curve, key=lambda point: (-point[1], point[0]))[0]


def _curve_line(curve: list[tuple[int, float]]) -> str:
    return "validation NDCG@10 by step: " + " ".join(f"{s}:{v:.4f}" for s, v in curve)


def _cell(values: dict, name: str) -> str:
    low, high = values.get("intervals", {}).get(name, (float("nan"),) * 2)
    return f"{values[name]:.4f} [{low:.4f}, {high:.4f}]"


def _row(label: str, values: dict) -> str:
    return f"| {label} | " + " | ".join(_cell(values, c) for c in COLUMNS) + " |"


def table(results: dict) -> list[str]:
    """Markdown rows: each headline prompt of the P5 model, then its family's baselines."""
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    by_task = {t["task"]: t for t in results["tasks"]}
    for family in ("sequential", "direct"):
        for task in [t for name, t in by_task.items() if t["family"] == family]:
            label = f"P5 {task['prompt']}" + (" (unseen)" if task["unseen"] else "")
            lines.append(_row(label, {**task["metrics"], "intervals": task["intervals"]}))
        for name, values in results["baselines"].get(family, {}).items():
            lines.append(_row(name, values))
    return lines


def _per_user_ndcg10(predictions_file: pathlib.Path) -> tuple[list[str], np.ndarray]:
    rows = [json.loads(line) for line in predictions_file.read_text().splitlines() if line]
    values, _ = metrics.ranking_per_example([r["target"] for r in rows],
                                            [r["prediction"] for r in rows], ks=(10,))
    return [r["user_id"] for r in rows], np.asarray(values["ndcg@10"])


def _sasrec_per_user(dataset: str, root: pathlib.Path, users: list[str]) -> np.ndarray:
    from p5_jax import baselines, eval_baselines
    from p5_jax.data import tfds_builders

    ranker = eval_baselines.cached_sasrec(root=root, dataset=dataset)
    test = tfds_builders.load(root=root, dataset=dataset, kind="sequences", split="test")
    full = {r["user_id"].decode(): ([i.decode() for i in r["history"]], r["target"].decode())
            for r in test.as_numpy_iterator()}
    ranked = ranker.rank([full[u][0] for u in users], top_k=baselines.DEFAULT_TOP_K)
    values, _ = metrics.ranking_per_example([[full[u][1]] for u in users], ranked, ks=(10,))
    return np.asarray(values["ndcg@10"])


def ndcg10_ratio(eval_dir: pathlib.Path, dataset: str, root: pathlib.Path,
                 *, seed: int = 0) -> tuple[float, float, float]:
    """P5 over SASRec NDCG@10 on the headline sequential prompt, same users, with a paired
    per-user bootstrap interval (both means from the same draws of users)."""
    predictions = eval_dir / "predictions" / f"{_sequential_headline_task(dataset)}.jsonl"
    users, p5 = _per_user_ndcg10(predictions)
    sasrec = _sasrec_per_user(dataset, root, users)
    draws = intervals.bootstrap_distributions({"p5": ("mean", p5), "sasrec": ("mean", sasrec)},
                                              users, seed=seed)
    ratios = draws["p5"] / draws["sasrec"]
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return float(p5.mean() / sasrec.mean()), float(low), float(high)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--out_dir", default=str(REPO / "runs" / "quality"))
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING",
                        help="a gin binding added to the recipe's training, e.g. TRAIN_STEPS=3000")
    args = parser.parse_args(argv)
    out_dir = pathlib.Path(args.out_dir).resolve()
    os.environ["P5_DATA_DIR"] = str(out_dir / "prepared")   # before the tasks register
    env = dict(os.environ)
    summary = []
    for dataset in args.datasets:
        start = time.perf_counter()
        eval_dir, choice = run_stages(dataset, out_dir, env, tuple(args.gin))
        minutes = (time.perf_counter() - start) / 60
        results = json.loads((eval_dir / "results.json").read_text())
        ratio, low, high = ndcg10_ratio(eval_dir, dataset, pathlib.Path(env["P5_DATA_DIR"]))
        summary += [f"\n{dataset}: full test split ({results['tasks'][0]['metrics']['count']:.0f} "
                    f"users), protocol {results['protocol']['name']}, step "
                    f"{results['settings']['step']}, {minutes:.1f} min", choice,
                    *table(results),
                    f"ndcg10_ratio_vs_sasrec={ratio:.2f} ({dataset}, prompt "
                    f"{SEQUENTIAL_HEADLINE}, paired 95% interval [{low:.2f}, {high:.2f}])"]
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
