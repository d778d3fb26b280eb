"""Scores seqio tasks on their test split under a named protocol (see `p5_jax.protocols`).

Per task: read the test examples (every user, or `max_users` users drawn at random with a fixed
seed), decode them as the protocol says, score them with the task's metric code, and attach a 95%
bootstrap interval (users resampled) to every ranking, rating and accuracy metric. Examples carry
the ids they were rendered from (user, target, history, candidates), so nothing is parsed back
out of rendered text. An example whose input length dropped candidates or history items stops
the task with a `TruncationError` before any decoding of it (`on_truncation="error"`), or with
`"warn"` is evaluated and noted; every list prompt records the ids it showed (min, mean, examples
cut), and one that shows under `min_candidate_share` of the offered candidates has its ranking
metrics withheld. Unparseable outputs are counted by the metrics and never raise.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf
from absl import logging
from tqdm.auto import tqdm

from p5_jax import (
    eval_lengths,
    inference,
    intervals,
    metrics,
    multihost,
    postprocessors,
    protocols,
    report,
    scoring,
)
from p5_jax.batch_decoding import ATTENTION_CELLS, batch_length, chunks, decode_examples, ids_of, length_order, text_of
from p5_jax.heap import drop_compiled_programs, release_memory
from p5_jax.item_index import ItemIndex, build_item_index
from p5_jax.protocols import BEAM, GREEDY, GROUP_BEAM, YES_RANK
from p5_jax.spilled_rows import SpilledRows
from p5_tasks import catalog, prompts, registration
from p5_tasks.rendering import DROPPED

DEFAULT_FEATURE_LENGTHS = {"inputs": 512, "targets": 64}
_DROPPED_KEYS = tuple(DROPPED.format(slot) for slot in prompts.LIST_SLOTS)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How to run an evaluation; `max_users` None means every user of the test split."""
    batch_size: int = 32
    max_users: int | None = None
    feature_lengths: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_FEATURE_LENGTHS))
    fit_candidates: bool = True
    min_candidate_share: float = 0.9
    num_beams: int = 20
    alpha: float = 0.6
    candidate_chunk_size: int = 0
    max_attention_cells: int = ATTENTION_CELLS   # see rows_per_call; raise it on accelerators
    seed: int = 0
    split: str = "test"
    bootstrap_resamples: int = 1000
    progress: bool = True
    on_truncation: str = "error"   # or "warn": see p5_jax.eval_lengths
    pad_to_input_length: bool = False   # see batch_decoding.batch_length

    def __post_init__(self):
        if self.batch_size < 1 or self.num_beams < 1:
            raise ValueError("batch_size and num_beams must be positive")
        eval_lengths.check_policy(self.on_truncation)
        if self.max_users is not None and self.max_users < 1:
            raise ValueError(f"max_users must be positive or None, got {self.max_users}")
        if not 0.0 <= self.min_candidate_share <= 1.0:
            raise ValueError(f"min_candidate_share must be in [0, 1], got "
                             f"{self.min_candidate_share}")
        missing = {"inputs", "targets"} - set(self.feature_lengths)
        if missing:
            raise ValueError(f"task_feature_lengths lacks {sorted(missing)}; give both, e.g. "
                             "{'inputs': 512, 'targets': 64}")


@dataclasses.dataclass(frozen=True)
class TaskPlan:
    """A task's dataset, prompt, protocol and decoding; `unseen` marks zero-shot results."""
    task: str
    dataset: str
    prompt: prompts.Prompt
    decoding: str
    unseen: bool
    protocol: str = protocols.EXACT

    @property
    def family(self) -> str:
        return self.prompt.family

    @property
    def shows_candidates(self) -> bool:
        return "candidates" in self.prompt.slots

    @property
    def list_slots(self) -> tuple[str, ...]:
        return tuple(slot for slot in prompts.LIST_SLOTS if slot in self.prompt.slots)


@dataclasses.dataclass
class TaskOutput:
    """One task's result and its scored rows (ids, input, target, raw and parsed predictions),
    in memory or spilled to disk (`p5_jax.spilled_rows`)."""
    plan: TaskPlan
    result: report.TaskResult
    rows: Sequence[dict]


def plan_task(task_name: str, *, zero_shot_domain: bool = False,
              protocol: str = protocols.EXACT) -> TaskPlan:
    """The plan of a task named `p5_{dataset}_{family}_{prompt}`.

    With `zero_shot_domain` (a model trained on another dataset) every task counts as unseen.
    """
    dataset, prompt = registration.parse_task_name(task_name)
    return TaskPlan(task=task_name, dataset=dataset, prompt=prompt,
                    decoding=protocols.decoding_for(prompt, protocol),
                    unseen=zero_shot_domain or not prompt.seen, protocol=protocol)


def task_names(mixture_or_task: str, *, include_unseen: bool = True) -> list[str]:
    """The tasks of a mixture (or the task itself), plus each dataset's `_unseen` mixture.

    Several names joined by commas ("p5_ml100k_sequential_2_1,p5_ml100k_direct_5_8") give the
    tasks of each, in that order."""
    if "," in mixture_or_task:
        parts = [task_names(part.strip(), include_unseen=include_unseen)
                 for part in mixture_or_task.split(",") if part.strip()]
        return list(dict.fromkeys(name for names in parts for name in names))
    if mixture_or_task in seqio.TaskRegistry.names():
        names = [mixture_or_task]
    else:
        names = sorted(t.name for t in seqio.get_subtasks(
            seqio.get_mixture_or_task(mixture_or_task)))
    if include_unseen:
        for dataset in sorted({plan_task(n).dataset for n in names}):
            unseen = f"p5_{dataset}_unseen"
            if unseen in seqio.MixtureRegistry.names() and unseen != mixture_or_task:
                mixture = seqio.get_mixture_or_task(unseen)
                names += sorted(t.name for t in seqio.get_subtasks(mixture))
    return list(dict.fromkeys(names))


# -- items and users of a dataset -----------------------------------------------------------------
def sampled_users(user_ids: Sequence[str], *, max_users: int | None,
                  seed: int) -> frozenset[str] | None:
    """`max_users` of `user_ids` drawn uniformly without replacement under `seed` (never the
    first N in file order); None (everyone) when there is no cap or it covers all users."""
    if max_users is None or max_users >= len(user_ids):
        return None
    picked = np.random.default_rng(seed).choice(len(user_ids), size=max_users, replace=False)
    return frozenset(str(user_ids[i]) for i in picked)


# -- reading examples -----------------------------------------------------------------------------
def users_only(task: seqio.Task, users: frozenset[str]) -> seqio.Task:
    """The task reading only the records of `users`, dropped before any preprocessing (so a
    sample of users never preprocesses, e.g. expands into 100 probes, the whole split).
    Evaluation records draw from seeds hashed from the record, so the examples are the same."""
    keep = tf.constant(sorted(users))
    source = task.source

    def records(split, shuffle_files, seed=None):
        dataset = source.get_dataset(split=split, shuffle=shuffle_files, seed=seed)
        return dataset.filter(lambda ex: tf.reduce_any(tf.equal(ex["user_id"], keep)))

    return task.replace(source=seqio.FunctionDataSource(records, splits=source.splits))


def task_examples(task: seqio.Task, *, config: EvalConfig, input_length: int,
                  users: frozenset[str] | None = None) -> Iterator[dict]:
    """The task's evaluation examples as numpy dicts, in order, only of `users` when given;
    streamed (no in-memory cache of the split)."""
    lengths = {"inputs": input_length, "targets": config.feature_lengths["targets"]}
    if users is not None:
        task = users_only(task, users)
    dataset = task.get_dataset(sequence_length=lengths, split=config.split, shuffle=False,
                               num_epochs=1, seed=config.seed, use_cached=False,
                               try_in_mem_cache=False)
    yield from dataset.as_numpy_iterator()


# -- rows and scores ------------------------------------------------------------------------------
def example_row(example: dict, output) -> dict:
    """What is kept of one scored example: its ids, texts and the raw output."""
    row = {"user_id": text_of(example["user_id"]),
           "inputs": text_of(example["inputs_pretokenized"]),
           "targets": text_of(example["targets_pretokenized"]), "output": output}
    for key in ("item_id", "history", "candidates"):
        if key in example:
            value = example[key]
            row[key] = text_of(value) if np.ndim(value) == 0 else ids_of(value)
    for slot in prompts.LIST_SLOTS:
        if DROPPED.format(slot) in example:
            row[DROPPED.format(slot)] = eval_lengths.dropped(example, slot)
    return row


def rank_probes(rows: Sequence[dict]) -> list[dict]:
    """Rows of probed items (one per candidate, output log p(yes)) -> one row per user whose
    output ranks the user's candidates by p(yes); the target is the probe answered "yes"."""
    by_user: dict[str, list[dict]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row)
    ranked = []
    for user, probes in by_user.items():
        items = [p["item_id"] for p in probes]
        targets = [p["item_id"] for p in probes if p["targets"] == "yes"]
        order = scoring.rank_by_scores(candidates=items, scores=[p["output"] for p in probes])
        ranked.append({"user_id": user, "inputs": probes[0]["inputs"],
                       "targets": inference.ITEM_PREFIX + (targets[0] if targets else ""),
                       "candidates": items,
                       "output": [inference.ITEM_PREFIX + i for i in order]})
    return ranked


def _interval_kind(plan: TaskPlan) -> str | None:
    if plan.decoding in protocols.RANKING_DECODINGS:
        return "ranking"
    return {"rating": "rating", "yes_no": "accuracy", "like": "accuracy"}.get(plan.prompt.output)


def score_rows(task: seqio.Task, plan: TaskPlan, rows: Sequence[dict], *,
               config: EvalConfig) -> tuple[dict, dict]:
    """(metrics, intervals) of the rows; each row gains its parsed `target` and `prediction`."""
    postprocess: Callable[..., object]
    if plan.decoding in protocols.RANKING_DECODINGS:
        postprocess, metric_fns = postprocessors.item_list_postprocessor, [metrics.ranking_metrics]
    else:
        postprocess = task.postprocess_fn or (lambda output, **_: output)
        metric_fns = task.predict_metric_fns
    for row in rows:
        row["target"] = postprocess(row["targets"], example=None, is_target=True)
        row["prediction"] = postprocess(row["output"], example=None, is_target=False)
    targets, predictions = [r["target"] for r in rows], [r["prediction"] for r in rows]
    values: dict[str, float] = {}
    for metric_fn in metric_fns:
        values.update(metric_fn(targets, predictions))
    kind = _interval_kind(plan)
    bounds = {}
    if kind is not None:
        bounds = intervals.metric_intervals(kind, targets, predictions,
                                            [r["user_id"] for r in rows],
                                            num_resamples=config.bootstrap_resamples,
                                            seed=config.seed)
    return values, bounds


def offered_candidates(dataset: str) -> int:
    """Candidates each test example of the dataset offers: the target and its negatives."""
    spec = registration.registered_spec(dataset)
    negatives = catalog.manifest(dataset).get("negatives_per_user", spec.num_candidates - 1)
    return min(spec.num_candidates, int(negatives) + 1)


def candidate_check(rows: Sequence[dict], *, offered: int,
                    min_share: float) -> tuple[dict, list[str], bool]:
    """(shown-count figures, notes, whether ranking metrics must be withheld)."""
    figures = {"candidates_offered": float(offered),
               **eval_lengths.shown_figures(rows, ("candidates",))}
    if figures["candidates_shown_min"] >= min_share * offered:
        return figures, [], False
    return figures, [f"ranking metrics withheld: an example shows under {min_share:.0%} of the "
                     f"{offered} candidates offered"], True


def _withheld(values: dict) -> dict:
    return {k: (float("nan") if k.startswith(("hr@", "ndcg@")) else v) for k, v in values.items()}


def fitting_length(plan: TaskPlan, *, vocabulary, items: ItemIndex | None) -> int:
    """The input length that shows every offered candidate and a full history (see
    `eval_lengths.needed_input_length`)."""
    tokens = items.tokens if items is not None else inference.tokenize_item_ids(
        vocabulary=vocabulary, item_ids=catalog.item_ids(plan.dataset))
    return eval_lengths.needed_input_length(
        plan.prompt, vocabulary=vocabulary, item_tokens=tokens,
        users=catalog.users(plan.dataset), num_candidates=offered_candidates(plan.dataset),
        max_history=registration.registered_spec(plan.dataset).max_history)


def _truncation_text(examples: Iterable[Mapping], *, plan: TaskPlan, vocabulary,
                     items: ItemIndex | None, input_length: int) -> str:
    total, cut, by_slot = eval_lengths.cut_counts(examples)
    return eval_lengths.truncation_message(
        input_length=input_length, total=total, cut=cut, by_slot=by_slot,
        fits=fitting_length(plan, vocabulary=vocabulary, items=items))


def _decoded_rows(examples: Iterator[dict], *, predictor, plan: TaskPlan, vocabulary,
                  items: ItemIndex | None, config: EvalConfig, input_length: int) -> list[dict]:
    """Rows of every example, in the task's order; with `on_truncation="error"` the first batch
    with an example that lost ids raises, after counting the rest of the task (not decoded).

    Batches go shortest first (`batch_decoding.length_order`), and the compiled programs of one
    batch length are dropped when the next starts: however many examples a task has, one
    length's programs are in memory at a time. Several processes share the batches round-robin
    (each decodes its own on its own devices) and gather the rows, in order, on every process."""
    held = list(examples)
    order = length_order(held, input_length=input_length,
                         pad_to_input_length=config.pad_to_input_length)
    ordered = (held[i] for i in order)
    mine: list[list[dict]] = []  # rows of this process's batches
    skipped: list[dict] = []  # list cuts of the others'
    compiled_for = None   # the batch length whose programs are in memory
    bar = tqdm(desc=f"{plan.task} ({plan.protocol})", unit="ex", disable=not config.progress,
               leave=False)
    for index, chunk in enumerate(chunks(ordered, config.batch_size)):
        if config.on_truncation == "error" and any(map(eval_lengths.lost_lists, chunk)):
            bar.close()
            raise eval_lengths.TruncationError(plan.task + ": " + _truncation_text(
                itertools.chain(*mine, skipped, chunk, ordered), plan=plan,
                vocabulary=vocabulary, items=items, input_length=input_length))
        if multihost.is_mine(index):
            compiled_for = _programs_for(chunk, compiled_for, input_length=input_length,
                                         config=config)
            outputs = decode_examples(predictor=predictor, plan=plan, examples=chunk,
                                      vocabulary=vocabulary, items=items, config=config,
                                      input_length=input_length)
            mine.append([example_row(e, o) for e, o in zip(chunk, outputs)])
        else:
            skipped += [{key: e[key] for key in _DROPPED_KEYS if key in e} for e in chunk]
        bar.update(len(chunk))
    bar.close()
    rows: list = [None] * len(order)
    for position, row in zip(order, itertools.chain(*multihost.gather_shares(mine))):
        rows[position] = row
    return rows


def _programs_for(chunk: Sequence[dict], compiled_for: int | None, *, input_length: int,
                  config: EvalConfig) -> int:
    """The chunk's batch length, after dropping the programs compiled for another length."""
    length = batch_length(chunk, input_length=input_length,
                          pad_to_input_length=config.pad_to_input_length)
    if compiled_for is not None and length != compiled_for:
        drop_compiled_programs()
    return length


def _list_figures(rows: Sequence[dict], *, plan: TaskPlan, vocabulary, items: ItemIndex | None,
                  config: EvalConfig, input_length: int) -> tuple[dict, list[str], bool]:
    """(ids shown per list, notes, whether ranking metrics must be withheld); an example that
    lost ids (allowed by `on_truncation="warn"`) is logged and noted."""
    figures = eval_lengths.shown_figures(rows, plan.list_slots)
    notes, withhold = [], False
    if any(map(eval_lengths.lost_lists, rows)):
        text = _truncation_text(rows, plan=plan, vocabulary=vocabulary, items=items,
                                input_length=input_length)
        logging.warning("%s: %s (evaluated anyway: on_truncation='warn')", plan.task, text)
        notes.append(text)
    if plan.shows_candidates:
        counts, more, withhold = candidate_check(
            rows, offered=offered_candidates(plan.dataset), min_share=config.min_candidate_share)
        figures.update(counts)
        notes += more
    return figures, notes, withhold


def evaluate_task(*, predictor, plan: TaskPlan, vocabulary, items: ItemIndex | None,
                  config: EvalConfig, input_length: int,
                  users: frozenset[str] | None = None) -> TaskOutput:
    """Decodes and scores one task; a task with no examples gets empty metrics and no rows."""
    task = seqio.get_mixture_or_task(plan.task)
    rows = _decoded_rows(
        task_examples(task, config=config, input_length=input_length, users=users),
        predictor=predictor, plan=plan, vocabulary=vocabulary, items=items, config=config,
        input_length=input_length)
    if plan.decoding == YES_RANK:
        rows = rank_probes(rows)
    values: dict = {"count": 0.0}
    bounds: dict = {}
    notes: list[str] = []
    if rows:
        values, bounds = score_rows(task, plan, rows, config=config)
    if rows and plan.list_slots:
        figures, notes, withhold = _list_figures(rows, plan=plan, vocabulary=vocabulary,
                                                 items=items, config=config,
                                                 input_length=input_length)
        values.update(figures)
        if withhold:
            values, bounds = _withheld(values), {}
    if plan.decoding == GROUP_BEAM:
        notes.append(protocols.GROUP_BEAM_NOTE)
    result = report.TaskResult(task=plan.task, family=plan.family, prompt=plan.prompt.id,
                               metrics=values, unseen=plan.unseen, intervals=bounds,
                               notes=tuple(notes))
    return TaskOutput(plan=plan, result=result, rows=rows)


# -- many tasks, one or more protocols ------------------------------------------------------------
def input_length_for(plan: TaskPlan, *, config: EvalConfig, vocabulary, items) -> int:
    """The configured input length, or for a candidate prompt (with `fit_candidates`) the
    length that shows every offered candidate and a full history, when that is longer."""
    base = config.feature_lengths["inputs"]
    if not (config.fit_candidates and plan.shows_candidates):
        return base
    return max(base, fitting_length(plan, vocabulary=vocabulary, items=items))


def evaluate_tasks(*, predictor, task_names: Sequence[str], config: EvalConfig,
                   protocol_names: Sequence[str] = (protocols.EXACT,),
                   zero_shot_domain: bool = False,
                   item_ids_fn=catalog.item_ids,
                   histories_fn=catalog.full_histories,
                   spill_dir: str | os.PathLike | None = None) -> dict[str, list[TaskOutput]]:
    """{protocol: outputs}: each task under each protocol; a task whose decoding is the same
    under two protocols is decoded once. Item indexes are built once per dataset (and once
    more with each user's whole history, `histories_fn(dataset, split)`, to leave out of
    constrained beams). With `spill_dir`, each finished task's rows go to a file there.

    Every compiled JAX program of the process is dropped between batch lengths and tasks
    (`heap.drop_compiled_programs`): a caller that jits its own functions compiles them again."""
    indexes: dict[tuple[str, bool], ItemIndex] = {}
    results: dict[str, list[TaskOutput]] = {p: [] for p in map(protocols.check, protocol_names)}
    for name in tqdm(task_names, desc="tasks", unit="task", disable=not config.progress):
        vocabulary = seqio.get_mixture_or_task(name).output_features["targets"].vocabulary
        done: dict[str, TaskOutput] = {}
        for protocol in results:
            plan = plan_task(name, zero_shot_domain=zero_shot_domain, protocol=protocol)
            if plan.decoding in done:
                results[protocol].append(dataclasses.replace(done[plan.decoding], plan=plan))
                continue
            items = None
            if plan.decoding not in (GREEDY, GROUP_BEAM):
                key = (plan.dataset, plan.decoding == BEAM)
                if key not in indexes:
                    indexes[key] = build_item_index(
                        item_ids=item_ids_fn(plan.dataset), vocabulary=vocabulary,
                        vocab_size=predictor.vocab_size,
                        excluded=histories_fn(plan.dataset, config.split) if key[1] else None)
                items = indexes[key]
            users = sampled_users(list(catalog.users(plan.dataset)), max_users=config.max_users,
                                  seed=config.seed)
            output = evaluate_task(
                predictor=predictor, plan=plan, vocabulary=vocabulary, items=items,
                config=config, users=users,
                input_length=input_length_for(plan, config=config, vocabulary=vocabulary,
                                              items=items))
            if spill_dir is not None:
                output = dataclasses.replace(output, rows=SpilledRows.spill(
                    output.rows, pathlib.Path(spill_dir) / f"{protocol}.{name}.jsonl"))
            done[plan.decoding] = output
            results[protocol].append(output)
            drop_compiled_programs()
            release_memory()
    return results
