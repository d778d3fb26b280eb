"""Evaluation report: results.json, results.md (one table per family) and PNG plots.

The evaluation entry point hands over one `TaskResult` per scored task, the simple baselines'
metrics per family, and optionally the training loss history. Seen prompts and unseen (zero-shot)
prompts go in separate tables. For the beauty dataset, P5's published numbers sit beside ours.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Mapping, Sequence

import matplotlib

from p5_jax import families

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FAMILY_COLUMNS = {family.name: family.report_columns for family in families.FAMILIES}
FAMILY_ORDER = families.NAMES
UNPARSEABLE = "unparseable"
INTERVALS = "intervals"   # key of a row's metric -> (low, high) 95% intervals
COLUMN_TITLES = {
    "rmse": "RMSE", "mae": "MAE", "accuracy": "Accuracy", "bleu4": "BLEU-4", "bleu2": "BLEU-2",
    "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", UNPARSEABLE: "Unparseable",
    "p5_bleu4": "BLEU-4 (P5)", "p5_bleu2": "BLEU-2 (P5)", "p5_rouge1": "ROUGE-1 (P5)",
    "p5_rouge2": "ROUGE-2 (P5)", "p5_rougeL": "ROUGE-L (P5)",
}
# P5 computed BLEU/ROUGE on whitespace tokens without smoothing (metrics.p5_bleu, p5_rouge): its
# published text figures sit in those columns; the plain columns are sacrebleu / rouge-score.

PUBLISHED_SOURCE_NOTE = (
    "P5 (Geng et al. 2022) and later papers, on P5's Beauty split; sequential rows other than "
    "'P5 paper' come from Hua et al. 2023, OpenP5 and TIGER. P5's own ids leak test items, "
    "so compare with care.")
_SEQ = ("hr@5", "ndcg@5", "hr@10", "ndcg@10")
_DIRECT = ("hr@1", "hr@5", "ndcg@5", "hr@10", "ndcg@10")
_ROUGE = ("p5_rouge1", "p5_rouge2", "p5_rougeL")
# family -> [(method, metrics)]; text metrics in percent, as our metric functions give them.
PUBLISHED_BEAUTY = {
    "rating": [
        ("P5-B (P5 paper)", {"rmse": 1.2870, "mae": 0.8531}),
        ("MF (P5 paper)", {"rmse": 1.1973, "mae": 0.9461}),
    ],
    "sequential": [
        (method, dict(zip(_SEQ, values))) for method, values in (
            ("SASRec (P5 paper)", (0.0387, 0.0249, 0.0605, 0.0318)),
            ("S3-Rec (P5 paper)", (0.0387, 0.0244, 0.0647, 0.0327)),
            ("P5-S 2-3, leaky ids (P5 paper)", (0.0503, 0.0370, 0.0659, 0.0421)),
            ("T5-small, random ids (Hua et al.)", (0.0213, 0.0178, 0.0479, 0.0277)),
            ("time-sensitive sequential ids (Hua et al.)", (0.0430, 0.0288, 0.0602, 0.0368)),
            ("collaborative + independent ids (Hua et al.)", (0.0512, 0.0356, 0.0732, 0.0427)),
            ("T5, random ids (OpenP5)", (0.0318, 0.0226, 0.0464, 0.0273)),
            ("TIGER, RQ-VAE semantic ids", (0.0454, 0.0321, 0.0648, 0.0384)),
        )
    ],
    "explanation": [
        (method, dict(zip(("p5_bleu4",) + _ROUGE, values))) for method, values in (
            ("P5-S 3-3, no hint (P5 paper)", (1.2237, 17.69, 2.25, 12.86)),
            ("P5-S 3-9, feature hint (P5 paper)", (1.9788, 25.63, 6.37, 19.95)),
            ("PETER (P5 paper)", (1.1541, 14.85, 2.14, 11.41)),
        )
    ],
    "review": [("P5-S (P5 paper)", dict(zip(("p5_bleu2",) + _ROUGE, (2.1225, 8.42, 1.67, 7.55))))],
    "direct": [
        (method, dict(zip(_DIRECT, values))) for method, values in (
            ("P5-S 5-4 (P5 paper)", (0.0862, 0.2448, 0.1673, 0.3441, 0.1993)),
            ("SimpleX (P5 paper)", (0.0325, 0.2247, 0.1441, 0.3090, 0.1711)),
            ("BPR-MF (P5 paper)", (0.0311, 0.1426, 0.0857, 0.2573, 0.1224)),
        )
    ],
}


def published_rows(dataset: str) -> dict[str, list[tuple[str, dict[str, float]]]]:
    """Published numbers for the dataset (only beauty's are recorded), else an empty dict."""
    return PUBLISHED_BEAUTY if dataset == "beauty" else {}


# family -> baseline name -> metrics, e.g. {"sequential": {"most popular": {"hr@5": 0.01}}}
Baselines = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """Metrics of one evaluated task.

    task: seqio task name; family: one of FAMILY_ORDER (another name gets its own table with
    whatever metrics it has); prompt: prompt id such as "2-3"; unseen: a held-out prompt;
    intervals: metric -> (low, high) 95% bootstrap interval; notes: warnings shown with the table.
    """
    task: str
    family: str
    prompt: str
    metrics: Mapping[str, float]
    unseen: bool = False
    intervals: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.task or not self.family:
            raise ValueError(f"a TaskResult needs a task and a family, got {self!r}")


def _title(metric: str) -> str:
    return COLUMN_TITLES.get(metric, metric.upper())


def _format(value, column: str, interval=None) -> str:
    """Counts as integers, metrics with four decimals and their interval ("0.0530 [0.0412,
    0.0661]"), a dash where a row lacks the metric."""
    if value is None:
        return "–"
    value = float(value)
    if math.isnan(value):
        return "nan"
    if column == UNPARSEABLE:
        return str(round(value))
    text = f"{value:.4f}"
    if interval is not None and all(b is not None for b in interval):
        text += f" [{float(interval[0]):.4f}, {float(interval[1]):.4f}]"
    return text


def _families(results: Sequence[TaskResult], baselines: Baselines) -> list[str]:
    present = {r.family for r in results} | set(baselines)
    known = [f for f in FAMILY_ORDER if f in present]
    return known + sorted(present - set(FAMILY_ORDER))


def _columns(family: str, rows: Sequence[Mapping[str, float]]) -> list[str]:
    """The family's P5 metrics that some row has, then unparseable if any row reports it."""
    keys = set().union(*(row.keys() for row in rows)) if rows else set()
    preferred: Sequence[str] | None = FAMILY_COLUMNS.get(family)
    if preferred is None:
        preferred = sorted(k for k in keys if k not in (UNPARSEABLE, "count", INTERVALS)
                           and not k.endswith("_rate"))
    columns = [c for c in preferred if c in keys]
    return columns + ([UNPARSEABLE] if UNPARSEABLE in keys else [])


def _table(columns: Sequence[str], rows: Sequence[tuple[str, str, Mapping]]) -> list[str]:
    header = ["Prompt / method", "Task"] + [_title(c) for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, task, metrics in rows:
        bounds = metrics.get(INTERVALS) or {}
        cells = [label, task] + [_format(metrics.get(c), c, bounds.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _with_intervals(result: TaskResult) -> dict:
    return {**result.metrics, INTERVALS: dict(result.intervals)}


def _notes(results: Sequence[TaskResult], family: str) -> list[str]:
    return [f"- {r.task}: {note}" for r in results if r.family == family for note in r.notes]


def _family_rows(family, results, baselines, published, *, unseen):
    rows = [(r.prompt, r.task, _with_intervals(r)) for r in results
            if r.family == family and r.unseen == unseen]
    if not rows:
        return []
    rows += [(f"baseline: {name}", "", m) for name, m in baselines.get(family, {}).items()]
    if not unseen:
        rows += [(f"published: {label}", "", m) for label, m in published.get(family, ())]
    return rows


def markdown_report(*, dataset: str, results: Sequence[TaskResult],
                    baselines: Baselines | None = None, title: str | None = None) -> str:
    """results.md text: per family a table of seen prompts and one of unseen prompts."""
    baselines = baselines or {}
    published = published_rows(dataset)
    lines = [f"# {title or f'P5 evaluation: {dataset}'}", ""]
    if published:
        lines += [f"Published rows: {PUBLISHED_SOURCE_NOTE}", ""]
    for family in _families(results, baselines):
        lines += [f"## {family}", ""]
        for unseen, heading in ((False, "Seen prompts"), (True, "Unseen prompts (zero-shot)")):
            rows = _family_rows(family, results, baselines, published, unseen=unseen)
            if not rows:
                continue
            columns = _columns(family, [m for _, _, m in rows])
            lines += [f"### {heading}", ""] + _table(columns, rows) + [""]
        notes = _notes(results, family)
        if notes:
            lines += ["Notes:", ""] + notes + [""]
        if not any(r.family == family for r in results):
            rows = [(f"baseline: {n}", "", m) for n, m in baselines[family].items()]
            columns = _columns(family, [m for _, _, m in rows])
            lines += ["### Baselines only", ""] + _table(columns, rows) + [""]
    return "\n".join(lines)


def family_means(results: Sequence[TaskResult], *, unseen: bool) -> dict[str, dict[str, float]]:
    """Per family, each metric averaged over the prompts that report it (NaN values skipped)."""
    sums: dict[str, dict[str, list[float]]] = {}
    for result in results:
        if result.unseen != unseen:
            continue
        family = sums.setdefault(result.family, {})
        for name, value in result.metrics.items():
            if value is not None and not math.isnan(float(value)):
                family.setdefault(name, []).append(float(value))
    return {f: {n: sum(v) / len(v) for n, v in m.items()} for f, m in sums.items()}


def json_safe(value):
    """`value` for strict JSON: NaN and infinities become null, tuples lists, keys strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def results_json(*, dataset: str, results: Sequence[TaskResult],
                 baselines: Baselines | None = None,
                 loss_history: Sequence[tuple[int, float]] | None = None) -> dict:
    return json_safe({
        "dataset": dataset,
        "tasks": [{"task": r.task, "family": r.family, "prompt": r.prompt, "unseen": r.unseen,
                   "metrics": dict(r.metrics),
                   "intervals": {k: list(v) for k, v in r.intervals.items()},
                   "notes": list(r.notes)} for r in results],
        "family_means": {"seen": family_means(results, unseen=False),
                         "unseen": family_means(results, unseen=True)},
        "baselines": {f: {n: dict(m) for n, m in b.items()} for f, b in (baselines or {}).items()},
        "published": {f: [{"method": label, "metrics": dict(m)} for label, m in rows]
                      for f, rows in published_rows(dataset).items()},
        "loss_history": [[int(s), float(v)] for s, v in (loss_history or ())],
    })


def plot_loss_curve(loss_history: Sequence[tuple[int, float]], path) -> pathlib.Path:
    """PNG of training loss against step."""
    if not loss_history:
        raise ValueError("loss_history is empty: nothing to plot")
    steps, losses = zip(*sorted((int(s), float(v)) for s, v in loss_history))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, losses, marker="." if len(steps) < 50 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _error_bars(values, bounds, columns) -> list[list[float]]:
    """[[below...], [above...]] of each column's interval around its value (0 without one)."""
    below, above = [], []
    for value, column in zip(values, columns):
        low, high = (bounds.get(column) or (None, None))
        if low is None or high is None or not math.isfinite(value):
            below.append(0.0)
            above.append(0.0)
        else:
            below.append(max(value - float(low), 0.0))
            above.append(max(float(high) - value, 0.0))
    return [below, above]


def _bar_series(family, columns, results, baselines):
    """(label, values, error bars) per task of the family, then per baseline."""
    series = [(r.prompt + (" (unseen)" if r.unseen else ""), r.metrics, r.intervals)
              for r in results if r.family == family]
    series += [(f"baseline: {n}", m, m.get(INTERVALS) or {})
               for n, m in baselines.get(family, {}).items()]
    out = []
    for label, metrics, bounds in series:
        values = [float(metrics.get(c, math.nan)) for c in columns]
        out.append((label, values, _error_bars(values, bounds, columns)))
    return out


def plot_metrics(results: Sequence[TaskResult], path, *,
                 baselines: Baselines | None = None) -> pathlib.Path:
    """PNG bar chart: one panel per family, the family's metrics for each evaluated prompt (seen,
    then unseen) beside each baseline, with 95% intervals as error bars where they exist."""
    baselines = baselines or {}
    families = _families(results, baselines)
    if not families:
        raise ValueError("no results or baselines to plot")
    fig, axes = plt.subplots(len(families), 1, figsize=(8, 3.2 * len(families)), squeeze=False)
    for ax, family in zip(axes[:, 0], families):
        rows = [r.metrics for r in results if r.family == family]
        rows += list(baselines.get(family, {}).values())
        columns = [c for c in _columns(family, rows) if c != UNPARSEABLE]
        series = _bar_series(family, columns, results, baselines)
        width = 0.8 / max(len(series), 1)
        for index, (label, values, errors) in enumerate(series):
            positions = [x + (index - (len(series) - 1) / 2) * width for x in range(len(columns))]
            has_errors = any(e > 0 for side in errors for e in side)
            ax.bar(positions, values, width=width, label=label,
                   yerr=errors if has_errors else None, capsize=1.5, error_kw={"elinewidth": 0.6})
        ax.set_xticks(range(len(columns)), [_title(c) for c in columns],
                      rotation=30 if len(columns) > 6 else 0, fontsize="small")
        ax.set_title(family)
        ax.legend(fontsize="x-small", ncol=2)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(*, out_dir, dataset: str, results: Sequence[TaskResult],
                 baselines: Baselines | None = None,
                 loss_history: Sequence[tuple[int, float]] | None = None,
                 title: str | None = None) -> dict[str, pathlib.Path]:
    """Write results.json, results.md, metrics.png and (with a loss history) loss_curve.png.

    Returns the written paths keyed "json", "markdown", "metrics_plot", "loss_plot".
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    payload = results_json(dataset=dataset, results=results, baselines=baselines,
                           loss_history=loss_history)
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    paths["markdown"].write_text(markdown_report(
        dataset=dataset, results=results, baselines=baselines, title=title) + "\n")
    paths["metrics_plot"] = plot_metrics(results, out_dir / "metrics.png", baselines=baselines)
    if loss_history:
        paths["loss_plot"] = plot_loss_curve(loss_history, out_dir / "loss_curve.png")
    return paths
