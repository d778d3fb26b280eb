"""Report files: strict JSON, markdown tables with the expected rows, real PNG files."""
import json
import math

import pytest

from p5_jax import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

RESULTS = [
    report.TaskResult("p5_beauty_rating_1_1", "rating", "1-1",
                      {"rmse": 1.1, "mae": 0.9, "unparseable": 2.0, "count": 10.0}),
    report.TaskResult("p5_beauty_rating_1_3", "rating", "1-3",
                      {"accuracy": 0.6, "unparseable": 0.0, "count": 10.0}),
    report.TaskResult("p5_beauty_rating_1_10", "rating", "1-10",
                      {"rmse": math.nan, "mae": math.nan, "unparseable": 10.0}, unseen=True),
    report.TaskResult("p5_beauty_sequential_2_3", "sequential", "2-3",
                      {"hr@5": 0.04, "ndcg@5": 0.03, "hr@10": 0.06, "ndcg@10": 0.035,
                       "hr@1": 0.01, "unparseable": 0.0}),
    report.TaskResult("p5_beauty_sequential_2_13", "sequential", "2-13",
                      {"hr@5": 0.02, "ndcg@5": 0.01, "hr@10": 0.03, "ndcg@10": 0.015},
                      unseen=True),
]
BASELINES = {
    "rating": {"train mean": {"rmse": 1.3, "mae": 1.0, "unparseable": 0.0}},
    "sequential": {"most popular": {"hr@5": 0.01, "ndcg@5": 0.005, "hr@10": 0.02,
                                    "ndcg@10": 0.008}},
    "direct": {"most popular": {"hr@1": 0.01, "hr@5": 0.05, "ndcg@5": 0.03, "hr@10": 0.1,
                                "ndcg@10": 0.05}},
}
LOSS = [(0, 9.5), (10, 6.0), (20, 4.25)]


def _section(markdown, heading):
    """Lines from `heading` up to the next heading of any level."""
    lines = markdown.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return [line for line in lines[start:end] if line.startswith("|")]


def test_write_report_writes_all_files(tmp_path):
    paths = report.write_report(out_dir=tmp_path / "out", dataset="beauty", results=RESULTS,
                                baselines=BASELINES, loss_history=LOSS)
    assert set(paths) == {"json", "markdown", "metrics_plot", "loss_plot"}
    for key in ("metrics_plot", "loss_plot"):
        data = paths[key].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    payload = json.loads(paths["json"].read_text())  # strict: NaN written as null
    assert payload["dataset"] == "beauty"
    assert payload["tasks"][2]["metrics"]["rmse"] is None
    assert payload["tasks"][2]["unseen"] is True
    assert payload["loss_history"] == [[0, 9.5], [10, 6.0], [20, 4.25]]
    assert payload["family_means"]["seen"]["rating"]["rmse"] == pytest.approx(1.1)
    assert payload["published"]["sequential"][0]["method"].startswith("SASRec")
    assert "## sequential" in paths["markdown"].read_text()


def test_no_loss_history_means_no_loss_plot(tmp_path):
    paths = report.write_report(out_dir=tmp_path, dataset="toys", results=RESULTS[:1])
    assert "loss_plot" not in paths
    assert json.loads(paths["json"].read_text())["published"] == {}


def test_markdown_tables_separate_seen_and_unseen_with_baselines_and_published():
    markdown = report.markdown_report(dataset="beauty", results=RESULTS, baselines=BASELINES)
    assert markdown.startswith("# P5 evaluation: beauty")
    seen = _section(markdown, "### Seen prompts")  # the rating family comes first
    assert seen[0] == "| Prompt / method | Task | RMSE | MAE | Accuracy | Unparseable |"
    assert seen[2] == "| 1-1 | p5_beauty_rating_1_1 | 1.1000 | 0.9000 | – | 2 |"
    assert seen[3] == "| 1-3 | p5_beauty_rating_1_3 | – | – | 0.6000 | 0 |"
    assert seen[4] == "| baseline: train mean |  | 1.3000 | 1.0000 | – | 0 |"
    assert seen[5].startswith("| published: P5-B (P5 paper) |  | 1.2870 | 0.8531 |")
    assert len(seen) == 2 + 2 + 1 + 2  # header, rule, 2 prompts, 1 baseline, 2 published
    unseen = _section(markdown, "### Unseen prompts (zero-shot)")
    assert unseen[2] == "| 1-10 | p5_beauty_rating_1_10 | nan | nan | 10 |"
    assert not any("published" in row for row in unseen)
    # Sequential shows P5's four columns in P5's order; hr@1 is not one of them.
    sequential = markdown.split("## sequential")[1]
    assert "| Prompt / method | Task | HR@5 | NDCG@5 | HR@10 | NDCG@10 | Unparseable |" in (
        sequential)
    assert ("| published: P5-S 2-3, leaky ids (P5 paper) |  "
            "| 0.0503 | 0.0370 | 0.0659 | 0.0421 | – |") in sequential
    # A family with only a baseline still gets a table.
    assert "## direct" in markdown and "### Baselines only" in markdown


def test_no_published_rows_for_other_datasets():
    markdown = report.markdown_report(dataset="toys", results=RESULTS, baselines=BASELINES)
    assert "published" not in markdown


def test_family_means_skip_nan():
    means = report.family_means(RESULTS + [report.TaskResult(
        "t", "rating", "1-2", {"rmse": 1.5, "mae": math.nan})], unseen=False)
    assert means["rating"]["rmse"] == pytest.approx((1.1 + 1.5) / 2)
    assert means["rating"]["mae"] == pytest.approx(0.9)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="loss_history is empty"):
        report.plot_loss_curve([], "unused.png")
    with pytest.raises(ValueError, match="nothing|no results"):
        report.plot_metrics([], "unused.png")
    with pytest.raises(ValueError, match="task and a family"):
        report.TaskResult("", "rating", "1-1", {})


def test_cells_and_plots_carry_the_intervals():
    result = report.TaskResult("p5_x_sequential_2_3", "sequential", "2-3",
                               {"hr@5": 0.05, "ndcg@5": 0.03}, intervals={"hr@5": [0.04, 0.07]},
                               notes=("2 of 9 examples show fewer than the 100 candidates",))
    baselines = {"sequential": {"most popular": {"hr@5": 0.02, "intervals": {"hr@5": [0.01, 0.03]}}}}
    markdown = report.markdown_report(dataset="x", results=[result], baselines=baselines)
    rows = _section(markdown, "### Seen prompts")
    assert "| 2-3 | p5_x_sequential_2_3 | 0.0500 [0.0400, 0.0700] | 0.0300 |" in rows
    assert "| baseline: most popular |  | 0.0200 [0.0100, 0.0300] | – |" in rows
    assert "- p5_x_sequential_2_3: 2 of 9 examples show fewer than the 100 candidates" in markdown
    series = report._bar_series("sequential", ["hr@5", "ndcg@5"], [result], baselines)
    (label, values, errors), (base_label, _, base_errors) = series
    assert (label, values) == ("2-3", [0.05, 0.03]) and base_label == "baseline: most popular"
    assert errors == [[pytest.approx(0.01), 0.0], [pytest.approx(0.02), 0.0]]
    assert base_errors == [[pytest.approx(0.01), 0.0], [pytest.approx(0.01), 0.0]]
    payload = report.results_json(dataset="x", results=[result], baselines=baselines)
    assert payload["tasks"][0]["intervals"] == {"hr@5": [0.04, 0.07]}
    assert payload["tasks"][0]["notes"] == [result.notes[0]]


def test_json_safe_turns_non_finite_numbers_into_null_at_any_depth():
    value = {1: [float("nan"), (2.5, float("inf"))], "m": {"x": -float("inf"), "y": 3}}
    safe = report.json_safe(value)
    assert safe == {"1": [None, [2.5, None]], "m": {"x": None, "y": 3}}
    json.dumps(safe, allow_nan=False)  # strict JSON
