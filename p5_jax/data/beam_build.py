"""The TFDS builders as an Apache Beam pipeline (any runner: Direct, Dataflow, Flink, Spark).

The driver decides everything over the whole dataset (ids, splits, review splits) as locally, then
stages the record plan's shards and shared context as pickles in a staging folder, so the pipeline
graph holds only their paths. Workers build each shard's records with the local build's code;
TFDS's BeamWriter encodes them and writes each split sorted by key, which is the local order.
Every worker must read the staging folder, which lies in the output: on a cluster, `--out_dir`
is a filesystem all workers mount. apache-beam is imported only here and only when used.
"""
import collections
import functools
import pickle
import shlex

from etils import epath

from p5_jax.data import records

_BUILDER, _TALLY = "builder.pkl", "tally.pkl"


def pipeline_options(flags: str = ""):
    """apache_beam PipelineOptions from command-line flags ("": the DirectRunner on this machine)."""
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise ValueError("--beam needs apache-beam: pip install -e '.[beam]'") from None
    return PipelineOptions(shlex.split(flags))


def _dump(path: epath.Path, value) -> str:
    path.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return str(path)


def _stage(plan, staging: epath.Path) -> list:
    """Paths of the staged shards, after staging them and the shard builder they share."""
    staging.mkdir(parents=True)
    _dump(staging / _BUILDER, plan.builder)
    return [_dump(staging / f"shard-{index:05d}.pkl", plan.shard(index)) for index in range(plan.num_shards)]


@functools.lru_cache(maxsize=2)
def _builder(path: str):
    """The staged record_shards.ShardBuilder, read once per worker process."""
    return pickle.loads(epath.Path(path).read_bytes())


def _shard_records(path: str, *, builder_path: str):
    """(split, key, record) for each record of one staged shard, then its tally (tagged "tally")."""
    from apache_beam import pvalue

    counts: collections.Counter[str] = collections.Counter()
    yield from _builder(builder_path).records(pickle.loads(epath.Path(path).read_bytes()), counts)
    yield pvalue.TaggedOutput("tally", counts)


def _split_number(element, _num_splits: int) -> int:
    return records.SPLITS.index(element[0])


def _save_tally(counts, *, path: str) -> None:
    _dump(epath.Path(path), counts)


def split_collections(pipeline, plan, *, staging) -> dict:
    """split -> PCollection of (key, record) for the splits with records, on `pipeline`."""
    import apache_beam as beam

    staging = epath.Path(staging)
    built = (pipeline
             | "Shards" >> beam.Create(_stage(plan, staging))
             | "Build" >> beam.FlatMap(_shard_records, builder_path=str(staging / _BUILDER)).with_outputs(
                 "tally", main="records"))
    _ = (built.tally
         | "Sum" >> beam.CombineGlobally(lambda tallies: sum(tallies, collections.Counter()))
         | "Save" >> beam.Map(_save_tally, path=str(staging / _TALLY)))
    parts = built.records | "Split" >> beam.Partition(_split_number, len(records.SPLITS))
    return {split: parts[number] | f"Key {split}" >> beam.Map(lambda element: element[1:])
            for number, split in enumerate(records.SPLITS) if plan.split_sizes[split]}


def staged_tallies(staging) -> collections.Counter:
    """The tally the pipeline saved (record_shards.tally of every record it built)."""
    return pickle.loads((epath.Path(staging) / _TALLY).read_bytes())
