"""Mesh shapes, the logical-axis table and the errors raised before any compute."""
import jax
import pytest
from jax.sharding import PartitionSpec

from p5_jax import partitioning
from p5_jax.partitioning import PartitioningError


@pytest.mark.parametrize("data,model,expected", [
    (-1, 1, (8, 1)), (-1, 2, (4, 2)), (2, -1, (2, 4)), (8, 1, (8, 1)), (1, 8, (1, 8)),
])
def test_resolve_mesh_shape_fills_the_rest(data, model, expected):
    assert partitioning.resolve_mesh_shape(data=data, model=model, num_devices=8) == expected


@pytest.mark.parametrize("data,model,message", [
    (3, -1, "does not divide"), (-1, 3, "does not divide"), (2, 2, "uses 4 devices"),
    (-1, -1, "At most one"), (0, 8, "size 0"),
])
def test_bad_mesh_raises_clearly(data, model, message):
    with pytest.raises(PartitioningError, match=message):
        partitioning.resolve_mesh_shape(data=data, model=model, num_devices=8)


def test_make_mesh_uses_all_devices_with_named_axes():
    mesh = partitioning.make_mesh(data=-1, model=2)
    assert mesh.axis_names == ("data", "model")
    assert dict(mesh.shape) == {"data": 4, "model": 2}
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices())


def test_single_device_mesh():
    mesh = partitioning.make_mesh(data=1, model=1, devices=jax.devices()[:1])
    assert mesh.devices.size == 1


def test_batch_not_divisible_by_data_axis_raises():
    mesh = partitioning.make_mesh(data=4, model=2)
    partitioning.check_batch_size(batch_size=8, mesh=mesh)
    with pytest.raises(PartitioningError, match="not divisible by the data axis of size 4"):
        partitioning.check_batch_size(batch_size=6, mesh=mesh)
    with pytest.raises(PartitioningError, match="not divisible by the data axis"):
        partitioning.check_batch_size(batch_size=8, mesh=mesh, accumulation_steps=4)
    with pytest.raises(PartitioningError, match="accumulation_steps"):
        partitioning.check_batch_size(batch_size=8, mesh=mesh, accumulation_steps=3)


def test_rules_table_matches_the_contract():
    rules = dict(partitioning.LOGICAL_AXIS_RULES)
    assert rules["batch"] == "data"
    assert {name for name, axis in rules.items() if axis == "model"} == {
        "vocab", "mlp", "heads", "joined_kv"}
    for name in ("embed", "kv", "length", "relpos_buckets", "whole_words"):
        assert rules[name] is None


def test_logical_shardings_map_boxed_names_to_mesh_axes():
    from flax import linen as nn
    mesh = partitioning.make_mesh(data=4, model=2)
    tree = {"w": nn.Partitioned(jax.ShapeDtypeStruct((4, 8), "float32"), names=("embed", "mlp")),
            "e": nn.Partitioned(jax.ShapeDtypeStruct((8, 4), "float32"),
                                names=("vocab", "embed"))}
    shardings = partitioning.logical_shardings(tree, mesh=mesh)
    assert shardings["w"].spec == PartitionSpec(None, "model")
    assert shardings["e"].spec == PartitionSpec("model", None)
