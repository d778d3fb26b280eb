"""The preprocessor list and the metric wiring of one prompt on one dataset."""
from __future__ import annotations

import functools

import seqio

from p5_jax import families, metrics, postprocessors
from p5_tasks import preprocessors as pre
from p5_tasks import rendering
from p5_tasks.prompts import Prompt

# Prompt output kind -> (postprocess_fn, metric_fns).
OUTPUT_METRICS = {
    "rating": (postprocessors.rating_postprocessor, (metrics.rating_metrics,)),
    "yes_no": (postprocessors.yes_no_postprocessor, (metrics.accuracy,)),
    "like": (postprocessors.like_postprocessor, (metrics.accuracy,)),
    "item": (postprocessors.item_list_postprocessor, (metrics.ranking_metrics,)),
    "explanation": (postprocessors.text_postprocessor, (metrics.explanation_metrics,)),
    "rating_explanation": (postprocessors.rating_and_text_postprocessor,
                           (metrics.rating_and_explanation_metrics,)),
    "summary": (postprocessors.text_postprocessor, (metrics.review_summary_metrics,)),
}
_TEXT_SLOTS = ("item_title", "item_brand", "item_price", "review_text", "summary", "explanation")


def _review_steps(prompt: Prompt) -> list:
    steps = [pre.add_sample_seed]
    needs_text = families.get(prompt.family).needs_text
    if needs_text:
        steps.append(functools.partial(rendering.filter_nonempty, fields=[needs_text]))
    if "star" in prompt.slots:
        steps.append(pre.add_shown_star)
    return steps


def _sequence_steps(prompt: Prompt, *, dataset: str, num_candidates: int,
                    sequential_sampling: str, max_history: int, continuation: int) -> list:
    family = families.get(prompt.family)
    if family.sequence_target == "next_item":
        listed = continuation if "continuation" in prompt.target_slots else 0
        steps = [functools.partial(pre.filter_usable_sequences, min_train_history=2),
                 pre.add_sample_seed,
                 functools.partial(pre.next_item_from_prefix, sampling=sequential_sampling,
                                   max_history=max_history, continuation=listed)]
    else:
        steps = [functools.partial(pre.filter_usable_sequences, min_train_history=1),
                 pre.add_sample_seed, pre.positive_from_history]
    if prompt.output == "yes_no" and family.ranks_yes_no:  # ranked by p(yes) in evaluation
        steps.append(functools.partial(pre.add_ranked_probes, dataset_name=dataset,
                                       num_candidates=num_candidates))
    elif prompt.output == "yes_no":  # the probed item fills {item_id} and/or {item_title}
        steps.append(functools.partial(pre.add_probe_item, dataset_name=dataset))
    if "item_title" in prompt.slots:
        steps.append(functools.partial(pre.add_item_titles, dataset_name=dataset))
    if "candidates" in prompt.slots:
        steps.append(functools.partial(pre.add_candidates, dataset_name=dataset,
                                       num_candidates=num_candidates))
    if "history" in prompt.slots:
        steps.append(pre.choose_joiner)
    return steps


def preprocessors(prompt: Prompt, *, dataset: str, kind: str, num_candidates: int,
                  sequential_sampling: str = "p5", max_history: int = pre.MAX_HISTORY,
                  continuation: int = 1) -> list:
    """Sampling -> length fit -> shuffle -> render -> tokenize -> EOS -> whole-word ids.
    `continuation`: the most items a {continuation} target lists."""
    if kind == "reviews":
        steps = _review_steps(prompt)
    else:
        steps = _sequence_steps(prompt, dataset=dataset, num_candidates=num_candidates,
                                sequential_sampling=sequential_sampling, max_history=max_history,
                                continuation=continuation)
    text_slots = [s for s in _TEXT_SLOTS if s in prompt.slots + prompt.target_slots]
    steps.append(functools.partial(rendering.filter_nonempty, fields=text_slots))
    steps.append(functools.partial(rendering.fit_lists_to_length, prompt=prompt))
    if "candidates" in prompt.slots:
        steps.append(pre.shuffle_candidates)
    steps += [functools.partial(rendering.render, prompt=prompt),
              seqio.preprocessors.tokenize,
              seqio.preprocessors.append_eos_after_trim,
              rendering.add_whole_word_ids,
              functools.partial(rendering.select_output_features, prompt=prompt)]
    return steps


def postprocess_and_metrics(prompt: Prompt):
    postprocess_fn, metric_fns = OUTPUT_METRICS[prompt.output]
    return postprocess_fn, list(metric_fns)
