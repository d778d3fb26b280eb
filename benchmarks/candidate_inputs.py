"""What candidate prompts show at a given input length, scored by a random ranker.

For each candidate prompt (2-7..2-10, 5-5..5-8) of a prepared dataset, the test examples are
rendered at 512 and 1024 input tokens (`fit_candidates` off) and at the default evaluation length
(derived from the dataset's longest ids), and a ranker that scores every shown candidate at
random ranks them. With every candidate shown, a random ranker's HR@10 is 10/100 in expectation;
fewer candidates shown inflate it, and an emptied history does not show in it at all, so the
shown counts are printed beside it. The last line per dataset says whether every example at the
default length shows its history and all candidates.

    python benchmarks/candidate_inputs.py [--datasets musical_instruments beauty] [--max_users N]
"""
from __future__ import annotations

import argparse

import numpy as np

import p5_tasks
from p5_jax import evaluation, item_index, protocols
from p5_jax.data import prepare
from p5_tasks import catalog, prompts, registration

CANDIDATE_PROMPTS = ("2-7", "2-8", "2-9", "2-10", "5-5", "5-6", "5-7", "5-8")


class RandomRanker:
    """Stands in for a model: every candidate gets an independent uniform score."""
    data_size = 1

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def score_candidates(self, batch, candidates, *, chunk_size):
        del batch, chunk_size
        return self.rng.uniform(size=candidates.shape[:2]).astype(np.float32)


def _task_names(dataset: str) -> list[str]:
    spec = registration.registered_spec(dataset)
    names = []
    for prompt_id in CANDIDATE_PROMPTS:
        prompt = prompts.get_prompt(prompt_id)
        if prompt.required_fields <= spec.fields:
            names.append(registration.task_name(dataset, prompt))
    return names


def _evaluate(name: str, *, config, input_length: int | None, users):
    plan = evaluation.plan_task(name, protocol=protocols.EXACT)
    vocabulary = p5_tasks.VOCABULARY
    items = item_index.build_item_index(item_ids=catalog.item_ids(plan.dataset),
                                        vocabulary=vocabulary, vocab_size=vocabulary.vocab_size)
    if input_length is None:
        input_length = evaluation.input_length_for(plan, config=config, vocabulary=vocabulary,
                                                   items=items)
    output = evaluation.evaluate_task(predictor=RandomRanker(), plan=plan, vocabulary=vocabulary,
                                      items=items, config=config, users=users,
                                      input_length=input_length)
    return output, input_length


def _line(name: str, label: str, output, input_length: int) -> str:
    m, bounds = output.result.metrics, output.result.intervals
    hr = m.get("hr@10", float("nan"))
    interval = bounds.get("hr@10")
    hr_text = f"{hr:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")
    history = [len(r["history"]) for r in output.rows if "history" in r]
    history_text = (f"history min {min(history)}, empty {sum(h == 0 for h in history)}"
                    if history else "no history slot")
    return (f"{name:<40} {label:>8} ({input_length:>4} tokens): users {len(output.rows):>6}  "
            f"candidates min {int(m['candidates_shown_min']):>3} mean "
            f"{m['candidates_shown_mean']:6.1f} of {int(m['candidates_offered'])}  "
            f"{history_text}  random HR@10 {hr_text}")


LENGTHS = {"512": 512, "1024": 1024, "default": None}


def run(dataset: str, *, max_users: int | None, seed: int, lengths=tuple(LENGTHS)) -> bool:
    prepare.ensure_prepared(name=dataset)
    config = evaluation.EvalConfig(batch_size=64, progress=False, min_candidate_share=0.0,
                                   bootstrap_resamples=1000, seed=seed, on_truncation="warn")
    users = evaluation.sampled_users(list(catalog.users(dataset)), max_users=max_users,
                                     seed=seed)
    all_shown = "default" in lengths
    for name in _task_names(dataset):
        for label in lengths:
            length = LENGTHS[label]
            output, used = _evaluate(name, config=config, input_length=length,
                                     users=users)
            print(_line(name, label, output, used), flush=True)
            if length is None:
                m = output.result.metrics
                complete = m["candidates_shown_min"] == m["candidates_offered"]
                has_history = all(r.get("history", [1]) for r in output.rows)
                all_shown &= complete and has_history
    print(f"{dataset}: default evaluation length shows every history and all candidates: "
          f"{'yes' if all_shown else 'NO'}", flush=True)
    return all_shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["musical_instruments", "beauty"])
    parser.add_argument("--max_users", type=int, default=None,
                        help="users drawn at random per dataset (default: all test users)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lengths", nargs="+", default=list(LENGTHS), choices=list(LENGTHS))
    args = parser.parse_args()
    for dataset in args.datasets:
        run(dataset, max_users=args.max_users, seed=args.seed, lengths=tuple(args.lengths))


if __name__ == "__main__":
    main()
