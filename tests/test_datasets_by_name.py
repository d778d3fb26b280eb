"""A prepared dataset is usable by name without code: its tasks register from its manifest, an
unknown name fails with one line, a `tasks/<name>.py` spec wins, and a second checkout on
PYTHONPATH uses its own tasks."""
import pathlib
import subprocess
import sys

import pytest
import seqio

import p5_tasks
from p5_jax import gin_bindings, list_tasks
from p5_jax.data import prepare
from p5_tasks import registration

import eval_data

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "data"
SPORTS, SHOP = "sports", "shop"


def _forget(dataset: str) -> None:
    registration.unregister_dataset(dataset)
    registration.register_all_datasets_mixture()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A prepared root with a sequences-only dataset and a reviewed one, read by the tasks."""
    folder = tmp_path_factory.mktemp("by_name")
    prepared = folder / "prepared"
    prepare.prepare_dataset(name=SPORTS, out_root=prepared, source=FIXTURES / "p5_sequential",
                            fmt="p5_sequential", num_negatives=1, progress=False)
    prepare.prepare_dataset(name=SHOP, out_root=prepared, fmt="amazon", num_negatives=5,
                            source=eval_data.write_amazon_source(folder / "raw"), progress=False)
    model = eval_data.train_vocabulary(folder / "spm.model")
    with eval_data.tasks_read(prepared, model):
        registration.register_prepared()
        yield prepared
    for dataset in (SPORTS, SHOP):
        _forget(dataset)


def test_prepared_datasets_register_from_their_manifests(root):
    assert {SPORTS, SHOP} <= set(registration.registered_datasets())
    assert all(registration.registered_from_manifest(d) for d in (SPORTS, SHOP))
    assert registration.registered_spec(SPORTS).fields == {"sequences"}
    assert registration.registered_spec(SHOP).fields == {
        "rating", "review_text", "summary", "explanation", "sequences"}
    for name in (f"p5_{SPORTS}_all", f"p5_{SPORTS}_sequential", f"p5_{SHOP}_review"):
        registration.require_known(name)
    assert f"p5_{SPORTS}_rating" not in seqio.MixtureRegistry.names()
    tasks = {t.name for t in seqio.get_mixture_or_task(registration.ALL_DATASETS_MIXTURE).tasks}
    assert f"p5_{SPORTS}_sequential_2_1" in tasks


@pytest.mark.parametrize("name, split", [(f"p5_{SPORTS}_all", "train"),
                                         (f"p5_{SPORTS}_sequential", "test"),
                                         (f"p5_{SHOP}_all", "train")])
def test_mixtures_by_name_yield_examples(root, name, split):
    examples = list_tasks.show(name, split=split, num=2)
    assert len(examples) == 2 and all(inputs and target for inputs, target, _ in examples)


def test_counts_show_every_registered_dataset(root, capsys):
    assert set(list_tasks.task_counts()) == set(registration.registered_datasets())
    list_tasks.main(["--counts"])
    assert f"{SPORTS} (from its manifest): " in capsys.readouterr().out


def test_an_unknown_name_is_one_line_naming_the_datasets_and_the_command(root):
    with pytest.raises(registration.UnknownNameError) as error:
        registration.require_known("p5_nosuch_all")
    message = str(error.value)
    assert "\n" not in message and "'p5_nosuch_all'" in message
    assert f"prepared under {root}: {SHOP}, {SPORTS}" in message
    assert "toys" in message and registration.PREPARE_COMMAND in message
    with pytest.raises(registration.UnknownNameError, match="p5_nosuch_all"):
        registration.require_known(f"p5_{SPORTS}_all, p5_nosuch_all", several=True)
    with pytest.raises(registration.UnknownNameError, match=f"p5_{SPORTS}_all, "):
        registration.require_known(f"p5_{SPORTS}_rating")   # no ratings: its mixtures listed
    with pytest.raises(registration.UnknownNameError, match="unknown dataset 'nosuch'"):
        registration.require_dataset("nosuch")


def test_entry_points_print_the_unknown_name_as_one_error_line(root, capsys):
    check = gin_bindings.report_job_errors(
        lambda: registration.require_known("p5_nosuch_all", error=gin_bindings.JobError))
    with pytest.raises(SystemExit) as exit_:
        check()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown task or mixture 'p5_nosuch_all'") and \
        err.count("\n") == 1
    assert list_tasks.main(["--show", "p5_nosuch_all"]) == 2


def test_a_dataset_prepared_after_import_is_found_on_a_miss(root):
    _forget(SPORTS)
    assert f"p5_{SPORTS}_all" not in seqio.MixtureRegistry.names()
    registration.require_known(f"p5_{SPORTS}_all")
    assert registration.registered_from_manifest(SPORTS)


def test_a_dataset_module_wins_over_the_manifest(root, tmp_path, monkeypatch):
    (tmp_path / f"{SPORTS}.py").write_text(
        "from p5_tasks.registration import DatasetSpec, register_dataset\n"
        f"SPEC = DatasetSpec(name={SPORTS!r}, fields=frozenset({{'sequences'}}), "
        "num_candidates=7)\nTASKS = register_dataset(SPEC)\n")
    monkeypatch.setattr(p5_tasks, "__path__", [*p5_tasks.__path__, str(tmp_path)])
    try:
        p5_tasks._import_dataset_modules()  # noqa: SLF001  (what `import p5_tasks` runs)
        registration.register_prepared()
        assert registration.registered_spec(SPORTS).num_candidates == 7
        assert not registration.registered_from_manifest(SPORTS)
    finally:
        sys.modules.pop(f"p5_tasks.{SPORTS}", None)
        _forget(SPORTS)
        registration.register_prepared()
    assert registration.registered_from_manifest(SPORTS)


def test_switching_sequential_sampling_keeps_where_a_dataset_came_from(root):
    try:
        registration.set_sequence_options(sampling="all_prefixes")
        assert registration.registered_spec(SPORTS).sequential_sampling == "all_prefixes"
        assert registration.registered_from_manifest(SPORTS)
    finally:
        registration.set_sequence_options(sampling="p5")


def test_manifest_without_fields_derives_them_from_counts():
    spec = registration.spec_from_manifest("old", {"counts": {"users": 4, "reviews": 9,
                                                              "explanations": 0}})
    assert spec.fields == {"rating", "sequences"}


def test_a_second_checkout_on_pythonpath_uses_its_own_tasks(tmp_path):
    """The installed `p5_tasks` hands over to the `tasks/` beside the imported p5_jax."""
    checkout = tmp_path / "second"
    (checkout / "p5_jax").mkdir(parents=True)
    (checkout / "p5_jax" / "__init__.py").write_text("")
    (checkout / "tasks").mkdir()
    (checkout / "tasks" / "__init__.py").write_text("CHECKOUT = 'second'\n")
    (checkout / "tasks" / "registration.py").write_text("")
    (checkout / "pyproject.toml").write_text("")
    out = subprocess.run(
        [sys.executable, "-c", "import p5_tasks, p5_tasks.registration as r; "
         "print(p5_tasks.CHECKOUT, r.__file__)"],
        env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"}, cwd=checkout,
        capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == ["second", str(checkout / "tasks" / "registration.py")]
