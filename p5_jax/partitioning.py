"""Device mesh, logical-axis rules and shardings.

Parameters and activations carry logical axis names (see docs/ARCHITECTURE.md); the single table
`LOGICAL_AXIS_RULES` maps them onto the two mesh axes `data` and `model`.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
MODEL_AXIS = "model"

LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", DATA_AXIS),
    ("vocab", MODEL_AXIS),
    ("mlp", MODEL_AXIS),
    ("heads", MODEL_AXIS),
    ("joined_kv", MODEL_AXIS),
    ("embed", None),
    ("kv", None),
    ("length", None),
    ("relpos_buckets", None),
    ("whole_words", None),
)


class PartitioningError(ValueError):
    """A mesh or batch shape that cannot work on the available devices."""


def resolve_mesh_shape(*, data: int, model: int, num_devices: int) -> tuple[int, int]:
    """Returns (data, model) sizes; one of them may be -1, meaning "all remaining devices"."""
    if data == -1 and model == -1:
        raise PartitioningError("At most one of the mesh sizes (data, model) may be -1.")
    for name, size in ((DATA_AXIS, data), (MODEL_AXIS, model)):
        if size == 0 or size < -1:
            raise PartitioningError(f"Mesh axis {name!r} has size {size}; use a positive size or -1.")
    fixed = model if data == -1 else data if model == -1 else data * model
    if num_devices % fixed:
        raise PartitioningError(
            f"Mesh (data={data}, model={model}) does not divide the {num_devices} available devices.")
    if data == -1:
        data = num_devices // model
    if model == -1:
        model = num_devices // data
    if data * model != num_devices:
        raise PartitioningError(
            f"Mesh (data={data}, model={model}) uses {data * model} devices but "
            f"{num_devices} are available; use -1 for one axis to take the rest.")
    return data, model


def make_mesh(*, data: int = -1, model: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 2-D (data, model) mesh over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    data, model = resolve_mesh_shape(data=data, model=model, num_devices=len(devices))
    if devices == list(jax.devices()):
        try:
            grid = mesh_utils.create_device_mesh((data, model), devices)
        except (AssertionError, NotImplementedError, ValueError):
            grid = np.asarray(devices).reshape(data, model)
    else:
        grid = np.asarray(devices).reshape(data, model)
    return Mesh(grid, (DATA_AXIS, MODEL_AXIS))


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape[DATA_AXIS]


def check_batch_size(*, batch_size: int, mesh: Mesh, accumulation_steps: int = 1) -> None:
    """Raises before any compute when a (micro)batch cannot be split over the data axis."""
    if batch_size <= 0:
        raise PartitioningError(f"batch_size must be positive, got {batch_size}.")
    if accumulation_steps <= 0 or batch_size % accumulation_steps:
        raise PartitioningError(
            f"batch_size {batch_size} is not divisible by accumulation_steps {accumulation_steps}.")
    micro = batch_size // accumulation_steps
    if micro % data_parallel_size(mesh):
        raise PartitioningError(
            f"Batch of {micro} examples (batch_size {batch_size} / accumulation_steps "
            f"{accumulation_steps}) is not divisible by the data axis of size "
            f"{data_parallel_size(mesh)}.")
    if batch_size % jax.process_count():
        raise PartitioningError(
            f"batch_size {batch_size} is not divisible by the {jax.process_count()} processes.")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


@contextlib.contextmanager
def sharding_context(mesh: Mesh, rules) -> Iterator[None]:
    """`mesh` and the logical axis `rules` in scope, so the network's activation constraints apply."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def global_batch_arrays(batch: Mapping[str, np.ndarray], sharding: NamedSharding,
                        keys: Sequence[str] | None = None) -> dict[str, jax.Array]:
    """Global arrays from the whole batch, which every process holds: each process places only
    the rows of its own devices, so the data does not depend on the number of processes."""
    wanted = batch if keys is None else [k for k in keys if k in batch]
    return {key: global_array(np.asarray(batch[key]), sharding) for key in wanted}


def global_array(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from `value`, which every process holds whole; each places its own shards."""
    return jax.make_array_from_callback(value.shape, sharding, value.__getitem__)


def logical_shardings(abstract_tree, *, mesh: Mesh, rules=LOGICAL_AXIS_RULES):
    """NamedShardings for a tree whose leaves may be boxed with logical axis names.

    Unboxed leaves (optimizer counters, step) are replicated.
    """
    specs = nn.get_partition_spec(abstract_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def distributed_init_args(environ: Mapping[str, str]) -> dict | None:
    """Arguments for `jax.distributed.initialize`, or None when this is a single-process job.

    Explicit: JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES (> 1) + JAX_PROCESS_ID, as a GPU
    launch sets them. Auto-detected by JAX (empty dict): SLURM or Open MPI with several tasks,
    and TPU VM pods (several TPU_WORKER_HOSTNAMES).
    """
    count = int(environ.get("JAX_NUM_PROCESSES", "1"))
    if environ.get("JAX_COORDINATOR_ADDRESS") and count > 1:
        if "JAX_PROCESS_ID" not in environ:
            raise PartitioningError("JAX_NUM_PROCESSES > 1 also needs JAX_PROCESS_ID.")
        return {"coordinator_address": environ["JAX_COORDINATOR_ADDRESS"],
                "num_processes": count, "process_id": int(environ["JAX_PROCESS_ID"])}
    launchers = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
    if any(int(environ.get(name, "1")) > 1 for name in launchers):
        return {}
    workers = [host for host in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if host]
    return {} if len(workers) > 1 else None


def initialize_distributed(environ: Mapping[str, str]) -> bool:
    """Connects the processes of a multi-host job; returns whether it did."""
    args = distributed_init_args(environ)
    if args is None:
        return False
    jax.distributed.initialize(**args)
    return True
