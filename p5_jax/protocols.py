"""Evaluation protocols: how each prompt's output is decoded and scored.

Two protocols, named in every results file:

- `"exact"` (the default): free next-item prompts (2-1..2-6, 2-13) decode 20 beams constrained
  to valid item ids (a prefix trie) other than the user's whole history before the evaluated
  item (the items the baselines leave out too), and the beams are the ranking; candidate prompts (2-7..2-10,
  5-5..5-8) rank every candidate shown by its length-normalised log-likelihood (the mean
  log-probability per token of `item_<id>` plus end-of-sequence), so HR@k and NDCG@k among the
  candidates are exact; direct yes/no prompts (5-1..5-4) rank the true item and its 99
  negatives by p(yes); explanations decode greedily, so that their text reflects the model
  and not search settings tuned to P5 (its repetition penalty of 0.7 favours repeats).
- `"p5"` (P5's notebooks): free next-item prompts and candidate prompts decode 20 beams without
  any constraint and count hits in the generated list (an invalid or repeated id is a miss);
  direct yes/no prompts rank by p(yes) as above; explanation prompts (3-1..3-12) decode as P5
  did, with transformers 4.2.1's `generate(num_beams=12, num_beam_groups=3, min_length=9,
  repetition_penalty=0.7)` and its default max_length of 20 (`P5_EXPLANATION_SEARCH`, run by
  `p5_jax.group_beam`).

Every other prompt (ratings, yes/no, like/dislike, summaries) decodes greedily in both protocols.
"""
from __future__ import annotations

from p5_jax import families
from p5_jax.group_beam import GroupBeamConfig
from p5_tasks import prompts

EXACT, P5 = "exact", "p5"
PROTOCOLS = (EXACT, P5)

# Decodings.
BEAM = "beam"              # beams constrained to item ids, best first
FREE_BEAM = "free_beam"    # beams without a constraint, hits in the generated list
CANDIDATES = "candidates"  # every shown candidate ranked by length-normalised log-likelihood
YES_RANK = "yes_rank"      # a user's probed items ranked by p(yes)
GREEDY = "greedy"
GROUP_BEAM = "group_beam"  # P5's explanation search (P5_EXPLANATION_SEARCH)
RANKING_DECODINGS = (BEAM, FREE_BEAM, CANDIDATES, YES_RANK)

# P5's explanation call. It passed no max_length, diversity_penalty, length_penalty or
# early_stopping, so T5's config defaults apply: 20 (counting the decoder start token), 0.0, 1.0,
# False. With no diversity penalty the 3 groups run the same 4-beam search.
P5_EXPLANATION_SEARCH = GroupBeamConfig(num_beams=12, num_beam_groups=3, min_length=9,
                                        repetition_penalty=0.7, max_length=20)
GROUP_BEAM_NOTE = ("decoded as P5 did: 12 beams in 3 groups, min_length 9, repetition_penalty 0.7 "
                   "(favours repeats), max_length 20")

DESCRIPTIONS = {
    EXACT: ("free next-item prompts: 20 beams constrained to valid item ids, leaving out the "
            "user's whole history (as the baselines do); candidate prompts: "
            "every shown candidate ranked by mean per-token log-likelihood (item tokens and "
            "end-of-sequence); direct yes/no 5-1..5-4: true item and negatives ranked by p(yes); "
            "other prompts, explanations included, greedy"),
    P5: ("P5's notebooks: free next-item and candidate prompts: 20 unconstrained beams, hits "
         "counted in the generated list; direct yes/no 5-1..5-4: ranked by p(yes); explanations "
         "3-1..3-12: transformers 4.2.1 group beam search as P5 called it (12 beams in 3 groups, "
         "min_length 9, repetition_penalty 0.7, max_length 20); other prompts greedy"),
}


def check(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose one of {PROTOCOLS}")
    return protocol


def ranks_by_yes(prompt: prompts.Prompt) -> bool:
    """Direct yes/no prompts are scored as a ranking of the user's candidates by p(yes)."""
    return families.get(prompt.family).ranks_yes_no and prompt.output == "yes_no"


def decoding_for(prompt: prompts.Prompt, protocol: str = EXACT) -> str:
    check(protocol)
    if ranks_by_yes(prompt):
        return YES_RANK
    if protocol == P5 and prompt.family == "explanation":
        return GROUP_BEAM
    if prompt.output != "item":
        return GREEDY
    if protocol == P5:
        return FREE_BEAM
    return CANDIDATES if "candidates" in prompt.slots else BEAM
