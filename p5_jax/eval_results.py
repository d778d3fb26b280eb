"""Writes an evaluation's results: the report files per dataset and every scored prediction.

`write_results` calls `p5_jax.report.write_report` (results.json, results.md, metrics.png) and adds
the protocol, the run's settings (checkpoint, user sample, decoding per task) and the dataset's
split and indexing flags to both results files, then writes `predictions/<task>.jsonl` (ids,
input, target, raw output, parsed target and prediction per example). One dataset is written into
`out_dir`; several go to `out_dir/<dataset>/`.
"""
from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Mapping, Sequence

from p5_jax import eval_baselines, protocols, report
from p5_jax.evaluation import TaskOutput
from p5_jax.spilled_rows import SpilledRows, write_rows


def settings_lines(settings: Mapping, *, protocol: str) -> list[str]:
    cap, seed = settings.get("max_users_per_task"), settings.get("seed", 0)
    lines = ["## Protocol and settings", "",
             f"- protocol: **{protocol}**: {protocols.DESCRIPTIONS[protocol]}",
             "- intervals: 95% bootstrap over users (users resampled with replacement)",
             f"- baselines: {eval_baselines.PROTOCOL_NOTE}"]
    split = settings.get("split", "test")
    users = f"all (the full {split} split)" if cap is None else (
        f"at most {cap}, sampled at random (seed {seed}); the same users for every task")
    lines.append(f"- users per task: {users}")
    for key, value in settings.items():
        if key not in ("max_users_per_task", "decoding", "protocols"):
            lines.append(f"- {key}: {value}")
    return lines + [""]


def data_lines(flags: Mapping) -> list[str]:
    lines = ["## Data", ""]
    lines += [f"- {key}: {value}" for key, value in flags.items() if key != "warnings"]
    lines += [f"- **warning: {w}**" for w in flags.get("warnings", ())]
    return lines + [""]


def _shown(metrics: Mapping, slot: str) -> str:
    """"95 / 99.2 of 100 (3 cut)": the fewest and mean ids shown, of those offered, and how
    many examples the input length cut."""
    if f"{slot}_shown_min" not in metrics:
        return "–"
    text = f"{int(metrics[f'{slot}_shown_min'])} / {metrics[f'{slot}_shown_mean']:.1f}"
    if f"{slot}_offered" in metrics:
        text += f" of {int(metrics[f'{slot}_offered'])}"
    cut = int(metrics.get(f"{slot}_cut", 0))
    return text + (f" ({cut} cut)" if cut else "")


def decoding_lines(outputs: Sequence[TaskOutput]) -> list[str]:
    lines = ["## Decoding and counts", "",
             "| Task | Decoding | Examples | Unparseable | Candidates shown (min / mean) "
             "| History items shown (min / mean) |",
             "|---|---|---|---|---|---|"]
    for output in outputs:
        m = output.result.metrics
        lines.append(f"| {output.plan.task} | {output.plan.decoding} | {int(m.get('count', 0))} "
                     f"| {int(m.get('unparseable', 0))} | {_shown(m, 'candidates')} "
                     f"| {_shown(m, 'history')} |")
    return lines + [""]


def write_predictions(out_dir: pathlib.Path, outputs: Sequence[TaskOutput]) -> pathlib.Path:
    folder = out_dir / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    for output in outputs:
        path = folder / f"{output.plan.task}.jsonl"
        if isinstance(output.rows, SpilledRows):
            output.rows.copy_to(path)
            continue
        with open(path, "w", encoding="utf-8") as file:
            write_rows(file, output.rows)
    return folder


def _write_dataset(out_dir: pathlib.Path, *, dataset: str, outputs: Sequence[TaskOutput],
                   baselines: Mapping, settings: Mapping, flags: Mapping, protocol: str,
                   title: str | None) -> dict:
    paths = report.write_report(out_dir=out_dir, dataset=dataset,
                                results=[o.result for o in outputs], baselines=baselines,
                                title=title)
    payload = json.loads(paths["json"].read_text())
    payload["protocol"] = {"name": protocol, "description": protocols.DESCRIPTIONS[protocol]}
    payload["settings"] = report.json_safe(dict(settings))
    payload["data"] = report.json_safe(dict(flags))
    payload["decoding"] = {o.plan.task: o.plan.decoding for o in outputs}
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    body = paths["markdown"].read_text().split("\n")
    head = settings_lines(settings, protocol=protocol) + data_lines(flags)
    paths["markdown"].write_text("\n".join(body[:2] + head + body[2:])
                                 + "\n" + "\n".join(decoding_lines(outputs)))
    paths["predictions"] = write_predictions(out_dir, outputs)
    return paths


def write_results(*, out_dir, outputs: Sequence[TaskOutput], settings: Mapping,
                  baselines_fn: Callable[[str, Sequence[TaskOutput]], Mapping],
                  flags_fn: Callable[[str], Mapping] = lambda dataset: {},
                  protocol: str = protocols.EXACT,
                  title: str | None = None) -> dict[str, dict]:
    """Report files per dataset; `baselines_fn(dataset, outputs)` gives that dataset's baselines
    and `flags_fn(dataset)` its data flags (review split, indexing, warnings).

    Returns {dataset: {"json", "markdown", "metrics_plot", "predictions": path}}.
    """
    out_dir = pathlib.Path(out_dir)
    by_dataset: dict[str, list[TaskOutput]] = {}
    for output in outputs:
        by_dataset.setdefault(output.plan.dataset, []).append(output)
    written = {}
    for dataset, dataset_outputs in by_dataset.items():
        folder = out_dir if len(by_dataset) == 1 else out_dir / dataset
        written[dataset] = _write_dataset(
            folder, dataset=dataset, outputs=dataset_outputs,
            baselines=baselines_fn(dataset, dataset_outputs), settings=settings,
            flags=flags_fn(dataset), protocol=protocol, title=title)
    return written
