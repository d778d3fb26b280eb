"""Writes an evaluation's results: the report files per dataset and every scored prediction.

`write_results` calls `p5_jax.report.write_report` (results.json, results.md, metrics.png) and adds
the run's settings (checkpoint, example cap, decoding per task) to both results files, then writes
`predictions/<task>.jsonl` (input, target, raw output, parsed target and prediction per example).
One dataset is written into `out_dir`; several go to `out_dir/<dataset>/`.
"""
from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence

from p5_jax import report
from p5_jax.evaluation import TaskOutput


def settings_lines(settings: Mapping) -> list[str]:
    cap = settings.get("max_examples_per_task")
    lines = ["## Settings", ""]
    lines.append(f"- examples per task: {'all' if cap is None else f'at most {cap} (capped)'}")
    for key, value in settings.items():
        if key not in ("max_examples_per_task", "decoding"):
            lines.append(f"- {key}: {value}")
    return lines + [""]


def decoding_lines(outputs: Sequence[TaskOutput]) -> list[str]:
    lines = ["## Decoding and counts", "", "| Task | Decoding | Examples | Unparseable |",
             "|---|---|---|---|"]
    for output in outputs:
        m = output.result.metrics
        lines.append(f"| {output.plan.task} | {output.plan.decoding} | {int(m.get('count', 0))} "
                     f"| {int(m.get('unparseable', 0))} |")
    return lines + [""]


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def write_predictions(out_dir: pathlib.Path, outputs: Sequence[TaskOutput]) -> pathlib.Path:
    folder = out_dir / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    for output in outputs:
        with open(folder / f"{output.plan.task}.jsonl", "w", encoding="utf-8") as file:
            for row in output.rows:
                file.write(json.dumps(_json_value(row)) + "\n")
    return folder


def _write_dataset(out_dir: pathlib.Path, *, dataset: str, outputs: Sequence[TaskOutput],
                   baselines: Mapping, settings: Mapping, title: str | None) -> dict:
    paths = report.write_report(out_dir=out_dir, dataset=dataset,
                                results=[o.result for o in outputs], baselines=baselines,
                                title=title)
    payload = json.loads(paths["json"].read_text())
    payload["settings"] = _json_value(dict(settings))
    payload["decoding"] = {o.plan.task: o.plan.decoding for o in outputs}
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    body = paths["markdown"].read_text().split("\n")
    paths["markdown"].write_text("\n".join(body[:2] + settings_lines(settings) + body[2:])
                                 + "\n" + "\n".join(decoding_lines(outputs)))
    paths["predictions"] = write_predictions(out_dir, outputs)
    return paths


def write_results(*, out_dir, outputs: Sequence[TaskOutput], settings: Mapping,
                  baselines_fn: Callable[[str, Sequence[TaskOutput]], Mapping],
                  title: str | None = None) -> dict[str, dict]:
    """Report files per dataset; `baselines_fn(dataset, outputs)` gives that dataset's baselines.

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
            baselines=baselines_fn(dataset, dataset_outputs), settings=settings, title=title)
    return written
