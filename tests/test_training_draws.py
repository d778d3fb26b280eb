"""The training stream of the real tasks draws new randomness for every example (yes/no answers,
sampled negatives), not one draw per place in a preprocessing chunk."""
import p5_tasks
from p5_jax import feature_converter, input_pipeline

import eval_data

env = eval_data.module_environment("training_draws")
CHUNK = 4


def _answers(task: str, count: int) -> list[str]:
    stream = input_pipeline.MixtureStream(
        mixture_or_task_name=task, task_feature_lengths={"inputs": 64, "targets": 8},
        split="train", converter=feature_converter.P5EncDecFeatureConverter(), seed=0,
        shuffle=False, chunk_size=CHUNK)
    vocab = p5_tasks.OUTPUT_FEATURES["targets"].vocabulary
    examples = stream.examples(input_pipeline.StreamState()).take(count)
    return [vocab.decode([int(t) for t in ex["targets"] if t > 1])
            for ex, _ in examples.as_numpy_iterator()]


def test_yes_no_answers_are_drawn_anew_in_every_chunk(env):
    """With one seed per place in a chunk the answers would repeat with the chunk's period."""
    answers = _answers("p5_musical_instruments_direct_5_1", 80)
    assert set(answers) == {"yes", "no"}
    assert answers[CHUNK:] != answers[:-CHUNK]
    assert 0.3 < answers.count("yes") / len(answers) < 0.7
