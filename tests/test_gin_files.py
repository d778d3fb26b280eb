"""Every shipped gin file parses, from any working directory, even one with runs/ and models/."""

import gin
import pytest

from p5_jax import eval as eval_entry  # noqa: F401  (registers `evaluate`)
from p5_jax import gin_bindings, paths
from p5_jax import infer as infer_entry  # noqa: F401  (registers `infer`)
from p5_jax import train as train_entry  # noqa: F401  (registers `train`)

GIN_DIR = paths.REPO_ROOT / "gin"
RUN_FILES = sorted(p.relative_to(paths.REPO_ROOT) for p in (GIN_DIR / "experiments").glob("*.gin"))


@pytest.fixture
def cluttered_cwd(tmp_path, monkeypatch):
    for folder in ("runs/demo", "models", "experiments"):
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    gin.clear_config()
    yield tmp_path
    gin.clear_config()


@pytest.mark.parametrize("gin_file", [str(p) for p in RUN_FILES])
def test_experiment_files_parse_outside_the_repo(cluttered_cwd, gin_file):
    gin_bindings.parse_config(gin_files=[gin_file],
                              gin_bindings=["MODEL_DIR = '/tmp/x'", "CHECKPOINT_PATH = '/tmp/x'"],
                              search_paths=())
    assert gin.query_parameter("%MIXTURE_OR_TASK_NAME").startswith("p5_")


def test_run_file_relative_to_gin_dir_resolves(cluttered_cwd):
    assert gin_bindings.resolve_gin_file("runs/train.gin") == str(GIN_DIR / "runs" / "train.gin")


def test_missing_gin_file_names_where_it_looked(cluttered_cwd):
    with pytest.raises(FileNotFoundError, match="nope.gin"):
        gin_bindings.resolve_gin_file("nope.gin")


@pytest.mark.parametrize("layers", ["t5_1_0", "t5_1_1"])
@pytest.mark.parametrize("size_file, preset", gin_bindings.SIZE_FILES,
                         ids=[f for f, _ in gin_bindings.SIZE_FILES])
def test_model_size_files_match_the_network_presets(cluttered_cwd, size_file, preset, layers):
    """gin/models/<size>.gin (alone, or with t5_1_1.gin) gives exactly network's preset config:
    checkpoint messages name the gin file from the preset."""
    t5_1_1 = layers == "t5_1_1"
    files = [size_file] + ([gin_bindings.T5_1_1_FILE] if t5_1_1 else [])
    gin_bindings.parse_config(gin_files=files, gin_bindings=[])
    expected = preset(**(gin_bindings.T5_1_1_LAYERS if t5_1_1 else {}))
    assert gin_bindings.T5Config(vocab_size=expected.vocab_size) == expected


def test_every_model_size_file_has_a_network_preset():
    layer_files = {"gin/models/t5_1_0.gin", gin_bindings.T5_1_1_FILE}
    shipped = {str(p.relative_to(paths.REPO_ROOT)) for p in (GIN_DIR / "models").glob("*.gin")}
    assert shipped - layer_files == {f for f, _ in gin_bindings.SIZE_FILES}


def _bindings(gin_file: str) -> dict:
    gin_bindings.parse_config(gin_files=[gin_file], gin_bindings=["MODEL_DIR = '/tmp/x'"])
    return {key: dict(values) for key, values in gin.config._CONFIG.items()}


@pytest.mark.parametrize("experiment", ["experiments/demo_train.gin",
                                        "experiments/quality_train.gin"])
def test_demo_and_quality_recipes_take_the_item_ranking_settings(cluttered_cwd, experiment):
    """Both recipes bind every setting of gin/recipes/item_ranking.gin to its value there."""
    recipe = _bindings("recipes/item_ranking.gin")
    gin.clear_config()
    bound = _bindings(experiment)
    assert {"train.item_tokens", "make_schedule.peak_value"} <= {
        f"{key[1].split('.')[-1]}.{name}" for key, values in recipe.items() for name in values}
    for key, values in recipe.items():
        assert {name: bound[key][name] for name in values} == values
