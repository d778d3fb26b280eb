"""Inference for one user: prompt rendering, id checks, and a tiny checkpoint end to end."""
import gin
import pytest
import seqio

import p5_tasks  # noqa: F401
from p5_jax import eval as eval_entry
from p5_jax import gin_bindings, recommend
from p5_jax import infer as infer_entry
from p5_tasks import catalog, preprocessors, prompts, registration

import eval_data

DATASET = eval_data.DATASET


env = eval_data.module_environment("infer")


def test_render_matches_the_task_inputs(env):
    task = seqio.get_mixture_or_task(f"p5_{DATASET}_sequential_2_3")
    example = next(task.get_dataset(sequence_length={"inputs": 256, "targets": 16},
                                    split="test", shuffle=False, seed=0).as_numpy_iterator())
    text = example["inputs_pretokenized"].decode()
    user = text.split("user_")[1].split()[0]
    history = [h.replace("item_", "") for h in text.split() if h.startswith("item_")]
    joined = recommend.render(prompts.get_prompt("2-3"), {"user_id": user, "history": history})
    assert joined.split() == text.replace("->", ",").split()


def test_unknown_user_and_item_are_named(env):
    with pytest.raises(recommend.UnknownIdError, match="unknown user 'nobody'.*ids such as"):
        recommend.validate(root=env, dataset=DATASET, user_id="nobody", item_id=None)
    user = sorted(recommend.read_users(env / DATASET))[0]
    with pytest.raises(recommend.UnknownIdError, match="unknown item '99999'"):
        recommend.validate(root=env, dataset=DATASET, user_id=user, item_id="99999")


@pytest.mark.slow
def test_infer_on_a_tiny_checkpoint(env, tmp_path):
    gin.clear_config()
    try:
        gin_bindings.parse_config(gin_files=["runs/infer.gin", "models/tiny.gin"], gin_bindings=[
            f"CHECKPOINT_PATH = '{tmp_path}'", f"DATASET = '{DATASET}'",
            "TASK_FEATURE_LENGTHS = {'inputs': 128, 'targets': 16}"])
        eval_data.save_checkpoint(model=eval_entry.build_model(f"p5_{DATASET}_rating_1_1"),
                                  directory=tmp_path / "checkpoints", step=3)
        user = sorted(recommend.read_users(env / DATASET))[0]
        answer = infer_entry.infer(user_id=user, top_k=4, **infer_entry.infer_settings())
        given = infer_entry.infer(user_id=user, item_id="2", top_k=2,
                                  **infer_entry.infer_settings())
        short = infer_entry.infer(user_id=user, top_k=4,
                                  **{**infer_entry.infer_settings(), "max_history": 2})
    finally:
        gin.clear_config()
        registration.set_sequence_options(max_history=preprocessors.MAX_HISTORY)
    items = {str(i) for i in catalog.item_ids(DATASET)}
    ranked = answer["recommendations"]
    assert len(ranked) == 4 and {r["item_id"] for r in ranked} <= items
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert answer["item_id"] == ranked[0]["item_id"] and answer["step"] == 3
    assert answer["rating_prompt"] == "1-1" and answer["explanation_prompt"] == "3-8"
    assert "explanation" in answer and answer["history"]
    assert given["item_id"] == "2" and given["item_source"] == "given"
    # The user's own items are never recommended; a shorter history shows the newest items.
    seen = set(recommend.user_history(root=env, dataset=DATASET, user_id=user))
    assert not seen & {r["item_id"] for r in ranked + short["recommendations"]}
    assert short["history"] == answer["history"][-2:] and short["history_dropped"] == 0
