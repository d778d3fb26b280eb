"""Scores seqio tasks on their test split the way P5 reported them.

Decoding per prompt output (`plan_task`):
- a free item id (sequential 2-1..2-6, 2-13): 20-beam search constrained to the dataset's item
  ids (a `PrefixTrie` over the tokenised `item_<id>` targets of items.jsonl); the beams, best
  first, are the ranking scored by HR@k / NDCG@k over all items;
- an item from a candidate list (direct 5-5..5-8, sequential 2-7..2-10): every candidate shown in
  the input is scored by log p(item | input) (`p5_jax.scoring`) and the candidates are ranked by
  it, so HR@1/5/10 and NDCG@5/10 among the candidates are exact;
- anything else (rating, yes/no, like, explanation, summary): greedy decoding, then the task's
  postprocessor and metric functions (`p5_jax.metrics`).
Unparseable outputs are counted by the metrics and never raise. Examples are read in order
(`shuffle=False`, a fixed seed for the prompts' sampled choices), capped by `max_examples`.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import seqio
from tqdm.auto import tqdm

from p5_jax import inference, report, scoring
from p5_tasks import catalog, prompts

BEAM, CANDIDATES, GREEDY = "beam", "candidates", "greedy"
DEFAULT_FEATURE_LENGTHS = {"inputs": 512, "targets": 64}


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How to run an evaluation; `max_examples` None means the whole test split."""
    batch_size: int = 32
    max_examples: int | None = None
    feature_lengths: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_FEATURE_LENGTHS))
    num_beams: int = 20
    alpha: float = 0.6
    candidate_chunk_size: int = 0
    seed: int = 0
    split: str = "test"
    progress: bool = True

    def __post_init__(self):
        if self.batch_size < 1 or self.num_beams < 1:
            raise ValueError("batch_size and num_beams must be positive")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples must be positive or None, got {self.max_examples}")


@dataclasses.dataclass(frozen=True)
class TaskPlan:
    """A task's dataset, prompt and decoding; `unseen` marks zero-shot results."""
    task: str
    dataset: str
    prompt: prompts.Prompt
    decoding: str
    unseen: bool

    @property
    def family(self) -> str:
        return self.prompt.family


@dataclasses.dataclass
class TaskOutput:
    """One task's result and its scored rows (input, target, raw and parsed predictions)."""
    plan: TaskPlan
    result: report.TaskResult
    rows: list[dict]


def decoding_for(prompt: prompts.Prompt) -> str:
    if prompt.output != "item":
        return GREEDY
    return CANDIDATES if "candidates" in prompt.slots else BEAM


def plan_task(task_name: str, *, zero_shot_domain: bool = False) -> TaskPlan:
    """The plan of a task named `p5_{dataset}_{family}_{prompt}`.

    With `zero_shot_domain` (a model trained on another dataset) every task counts as unseen.
    """
    for prompt in prompts.PROMPTS:
        suffix = f"_{prompt.family}_{prompt.task_suffix}"
        if task_name.startswith("p5_") and task_name.endswith(suffix):
            dataset = task_name[len("p5_"):-len(suffix)]
            if dataset:
                return TaskPlan(task=task_name, dataset=dataset, prompt=prompt,
                                decoding=decoding_for(prompt),
                                unseen=zero_shot_domain or not prompt.seen)
    raise ValueError(f"{task_name!r} is not a P5 task name (p5_<dataset>_<family>_<prompt>)")


def task_names(mixture_or_task: str, *, include_unseen: bool = True) -> list[str]:
    """The tasks of a mixture (or the task itself), plus each dataset's `_unseen` mixture."""
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


# -- reading the prompt's slots back from rendered text ------------------------------------------
@functools.lru_cache(maxsize=None)
def _template_regex(template: str) -> re.Pattern:
    pattern, seen = [], set()
    for literal, slot, _, _ in string.Formatter().parse(template):
        pattern.append(re.escape(literal))
        if slot:
            pattern.append(f"(?P={slot})" if slot in seen else f"(?P<{slot}>.*?)")
            seen.add(slot)
    return re.compile("^" + "".join(pattern) + "$", re.DOTALL)


def template_slots(template: str, text: str) -> dict[str, str] | None:
    """The slot texts of `text` rendered from `template`, or None when it does not match."""
    match = _template_regex(template).match(text)
    return None if match is None else match.groupdict()


def shown_items(prompt: prompts.Prompt, inputs: str, slot: str) -> list[str]:
    """Item ids listed in one slot (`history`, `candidates`) of a rendered input."""
    slots = template_slots(prompt.input_template, inputs)
    if slots is None or slot not in slots:
        return []
    return re.findall(r"\bitem_(\S+)", slots[slot])


# -- items of a dataset ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ItemIndex:
    """Tokenised item targets of one dataset and the trie that constrains decoding to them."""
    tokens: Mapping[str, tuple[int, ...]]
    trie: object
    max_length: int


def build_item_index(*, item_ids: Iterable[str], vocabulary, vocab_size: int) -> ItemIndex:
    tokens = inference.tokenize_item_ids(vocabulary=vocabulary, item_ids=item_ids)
    if not tokens:
        raise ValueError("no items to build an item index from")
    return ItemIndex(tokens=tokens,
                     trie=inference.item_trie(item_tokens=tokens, vocab_size=vocab_size),
                     max_length=max(len(t) for t in tokens.values()))


# -- reading examples -----------------------------------------------------------------------------
def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def task_examples(task: seqio.Task, *, config: EvalConfig) -> Iterator[dict]:
    """The task's evaluation examples as numpy dicts, in order, at most `max_examples`."""
    dataset = task.get_dataset(sequence_length=dict(config.feature_lengths), split=config.split,
                               shuffle=False, num_epochs=1, seed=config.seed, use_cached=False)
    if config.max_examples is not None:
        dataset = dataset.take(config.max_examples)
    for example in dataset.as_numpy_iterator():
        yield example


def _padded(rows: Sequence[np.ndarray], *, length: int, num_rows: int) -> np.ndarray:
    out = np.zeros((num_rows, length), np.int32)
    for index, row in enumerate(rows):
        row = np.asarray(row, np.int32)[:length]
        out[index, :row.shape[0]] = row
    return out


def model_batch(examples: Sequence[dict], *, input_length: int, batch_size: int) -> dict:
    """Encoder features of up to `batch_size` examples, padded with empty rows to `batch_size`."""
    batch = {"encoder_input_tokens": _padded([e["inputs"] for e in examples],
                                             length=input_length, num_rows=batch_size)}
    if all("inputs_whole_word_ids" in e for e in examples):
        batch["encoder_whole_word_ids"] = _padded(
            [e["inputs_whole_word_ids"] for e in examples], length=input_length,
            num_rows=batch_size)
    return batch


def _chunks(iterable: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- decoding one batch ---------------------------------------------------------------------------
def _beam_outputs(predictor, batch, count, *, vocabulary, items: ItemIndex, config) -> list:
    tokens, scores = predictor.beam_search(batch, num_decodes=config.num_beams,
                                           max_decode_length=items.max_length,
                                           alpha=config.alpha, trie=items.trie)
    outputs = []
    for row in range(count):
        beams = [inference.decode_tokens(vocabulary=vocabulary, tokens=tokens[row, k])
                 for k in range(tokens.shape[1]) if np.isfinite(scores[row, k])
                 and scores[row, k] > -1e9]
        outputs.append(beams)
    return outputs


def _candidate_outputs(predictor, batch, examples, *, plan, vocabulary, items: ItemIndex,
                       config) -> list:
    shown = [shown_items(plan.prompt, _text(e["inputs_pretokenized"]), "candidates")
             for e in examples]
    token_lists = [[items.tokens.get(i) or inference.tokenize_item_ids(
        vocabulary=vocabulary, item_ids=[i])[i] for i in ids] for ids in shown]
    width = max(16, -(-max(len(ids) for ids in shown) // 16) * 16)
    length = max([items.max_length] + [len(t) for ts in token_lists for t in ts])
    candidates, _ = scoring.pad_candidates(token_lists + [[]] * (len(
        batch["encoder_input_tokens"]) - len(examples)), num_candidates=width, length=length)
    scores = predictor.score_candidates(batch, candidates,
                                        chunk_size=_chunk(width, config.candidate_chunk_size))
    return [[inference.ITEM_PREFIX + i for i in scoring.rank_by_scores(
        candidates=ids, scores=scores[row])] for row, ids in enumerate(shown)]


def _chunk(width: int, requested: int) -> int:
    return requested if requested and width % requested == 0 else 0


def _greedy_outputs(predictor, batch, count, *, vocabulary, config) -> list[str]:
    tokens = predictor.greedy(batch, max_decode_length=config.feature_lengths["targets"])
    return [inference.decode_tokens(vocabulary=vocabulary, tokens=tokens[row])
            for row in range(count)]


def decode_examples(*, predictor, plan: TaskPlan, examples: Sequence[dict], vocabulary,
                    items: ItemIndex | None, config: EvalConfig) -> list:
    """Raw outputs of one batch: a text per example, or ranked item texts (best first)."""
    batch_size = -(-config.batch_size // predictor.data_size) * predictor.data_size
    batch = model_batch(examples, input_length=config.feature_lengths["inputs"],
                        batch_size=batch_size)
    if plan.decoding == BEAM:
        return _beam_outputs(predictor, batch, len(examples), vocabulary=vocabulary,
                             items=items, config=config)
    if plan.decoding == CANDIDATES:
        return _candidate_outputs(predictor, batch, examples, plan=plan, vocabulary=vocabulary,
                                  items=items, config=config)
    return _greedy_outputs(predictor, batch, len(examples), vocabulary=vocabulary, config=config)


# -- one task, many tasks -------------------------------------------------------------------------
def _score(task: seqio.Task, targets_text: list[str], outputs: list) -> tuple[list, list, dict]:
    postprocess = task.postprocess_fn or (lambda output, **_: output)
    targets = [postprocess(t, example=None, is_target=True) for t in targets_text]
    predictions = [postprocess(o, example=None, is_target=False) for o in outputs]
    metrics: dict[str, float] = {}
    for metric_fn in task.predict_metric_fns:
        metrics.update(metric_fn(targets, predictions))
    return targets, predictions, metrics


def evaluate_task(*, predictor, plan: TaskPlan, vocabulary, items: ItemIndex | None,
                  config: EvalConfig) -> TaskOutput:
    """Decodes and scores one task; a task with no examples gets empty metrics and no rows."""
    task = seqio.get_mixture_or_task(plan.task)
    inputs, targets_text, outputs = [], [], []
    bar = tqdm(total=config.max_examples, desc=plan.task, unit="ex", disable=not config.progress,
               leave=False)
    for examples in _chunks(task_examples(task, config=config), config.batch_size):
        outputs += decode_examples(predictor=predictor, plan=plan, examples=examples,
                                   vocabulary=vocabulary, items=items, config=config)
        inputs += [_text(e["inputs_pretokenized"]) for e in examples]
        targets_text += [_text(e["targets_pretokenized"]) for e in examples]
        bar.update(len(examples))
    bar.close()
    metrics, rows = {"count": 0.0}, []
    if outputs:
        targets, predictions, metrics = _score(task, targets_text, outputs)
        rows = [{"inputs": i, "targets": t, "output": o, "target": tv, "prediction": pv}
                for i, t, o, tv, pv in zip(inputs, targets_text, outputs, targets, predictions)]
    if plan.decoding == CANDIDATES and rows:
        metrics["mean_candidates"] = float(np.mean(
            [len(shown_items(plan.prompt, r["inputs"], "candidates")) for r in rows]))
    result = report.TaskResult(task=plan.task, family=plan.family, prompt=plan.prompt.id,
                               metrics=metrics, unseen=plan.unseen)
    return TaskOutput(plan=plan, result=result, rows=rows)


def evaluate_tasks(*, predictor, task_names: Sequence[str], config: EvalConfig,
                   zero_shot_domain: bool = False,
                   item_ids_fn=catalog.item_ids) -> list[TaskOutput]:
    """Evaluates each task in turn; item indexes are built once per dataset, when needed."""
    indexes: dict[str, ItemIndex] = {}
    outputs = []
    for name in tqdm(task_names, desc="tasks", unit="task", disable=not config.progress):
        plan = plan_task(name, zero_shot_domain=zero_shot_domain)
        vocabulary = seqio.get_mixture_or_task(name).output_features["targets"].vocabulary
        items = None
        if plan.decoding != GREEDY:
            if plan.dataset not in indexes:
                indexes[plan.dataset] = build_item_index(
                    item_ids=item_ids_fn(plan.dataset), vocabulary=vocabulary,
                    vocab_size=predictor.vocab_size)
            items = indexes[plan.dataset]
        outputs.append(evaluate_task(predictor=predictor, plan=plan, vocabulary=vocabulary,
                                     items=items, config=config))
    return outputs
