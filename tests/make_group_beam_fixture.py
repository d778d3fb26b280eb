"""Writes fixtures/group_beam_hf421.json: what transformers 4.2.1 (P5's pinned version) generates
for the cases of `group_beam_cases`. Recent transformers no longer ship group beam search (5.x
loads it from the Hub as remote code), so the tests read the expected sequences from this file.

    pip download transformers==4.2.1 --no-deps -d /tmp/hf421
    python -m zipfile -e /tmp/hf421/transformers-4.2.1-py3-none-any.whl /tmp/hf421/src
    python tests/make_group_beam_fixture.py /tmp/hf421/src

Runs with the project's torch and tokenizers (4.2.1's version pins are not checked).
"""
import json
import os
import pathlib
import sys
import types

HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "fixtures" / "group_beam_hf421.json"


def import_transformers(source: str):
    os.environ.update(USE_TF="0", USE_FLAX="0", USE_TORCH="1")
    sys.path.insert(0, source)
    pins = "transformers.dependency_versions_check"
    sys.modules[pins] = types.ModuleType(pins)  # skip 4.2.1's pins (tokenizers==0.9.4, ...)
    import transformers
    if transformers.__version__ != "4.2.1":
        raise SystemExit(f"expected transformers 4.2.1 at {source}, got {transformers.__version__}")
    return transformers


def build_model(transformers, torch, cases):
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**cases.HF_CONFIG))
    tensors = {k: torch.from_numpy(v) for k, v in cases.hf_tensors().items()}
    for tied in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        tensors[tied] = tensors["shared.weight"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    unused = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"
    if unexpected or set(missing) - {unused}:
        raise SystemExit(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    return model.eval()


def main(source: str):
    transformers = import_transformers(source)
    import torch
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    import group_beam_cases as cases
    model = build_model(transformers, torch, cases)
    inputs = torch.from_numpy(cases.INPUTS)
    results = {}
    for name, kwargs in cases.CASES.items():
        with torch.no_grad():
            out = model.generate(inputs, num_return_sequences=1, return_dict_in_generate=True,
                                 output_scores=True, **kwargs)
        results[name] = {"sequences": out.sequences[:, 1:].tolist(),
                         "scores": out.sequences_scores.tolist()}
    lines = [f'  "{name}": {json.dumps(case)}' for name, case in results.items()]
    OUTPUT.write_text(f'{{"transformers": "{transformers.__version__}", "cases": {{\n'
                      + ",\n".join(lines) + "\n}}\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/hf421/src")
