"""Prepare a dataset the P5 way: read, split, index items, sample negatives, extract explanations,
then write users/items tables, TFDS records and a manifest, all at once or not at all.

    python -m p5_jax.data.prepare --dataset musical_instruments --out_dir /tmp/p5
    python -m p5_jax.data.prepare --dataset mine --source DIR --format amazon|p5_sequential|recbole

Records are built in shards by --workers processes (default: every CPU) and written as they come;
--beam builds them as an Apache Beam pipeline instead, here or on a cluster (docs/DATA.md).

Splits: sequences are leave-one-out in time order (last item test, second to last validation);
users with fewer than 3 interactions get no sequence records. Reviews (rating, explanation,
review families), --review_split aligned (default): the review of a user's validation (test)
item goes to validation (test), all others 8:1:1 at random; --review_split p5: P5's independent
8:1:1, which puts most held-out (user, item) pairs into training (flagged in the manifest).
Repeats (a user's later interaction with an item they already had): kept in sequences for
p5_sequential sources, as P5 does; dropped for amazon and recbole, where a second review of the
same item is rare and a kept one would put the held-out item into the training history.
--dedupe / --no-dedupe overrides. Negatives and `interacted` are always distinct items.

Bad input (malformed or non-UTF-8 lines, wrong types, non-finite or out-of-range numbers,
unwritable text, conflicting datamaps ids, folders where files belong, nothing to write) stops
before anything is written with one line, `error: FILE, line N, field 'F': why` (or `error: FILE:
why` for a whole-file fault), and exit status 2; --skip_bad_lines skips and counts bad lines;
--debug shows the error's traceback instead.
"""
import argparse
import pathlib
import re
import sys

from tqdm.auto import tqdm

from p5_jax import cli_errors, paths
from p5_jax.tf_setup import quiet_tensorflow
from p5_jax.data import beam_build, output, shard_writer, shipped, tfds_builders
from p5_jax.data.assemble import assemble
from p5_jax.data.errors import BadLinePolicy, DataError
from p5_jax.data.indexing import SCHEMES
from p5_jax.data.negatives import NUM_NEGATIVES
from p5_jax.data.readers_meta import attach_metadata, metadata_coverage
from p5_jax.data.splits import REVIEW_SPLITS
from p5_jax.data.summary import format_summary

MANIFEST = "manifest.json"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_arguments(*, name, indexing, review_split="aligned", dedupe=None):
    if not _NAME.match(name or ""):
        raise ValueError(f"dataset name {name!r} must be lower case letters, digits and '_' "
                         "(it becomes part of task names)")
    if indexing not in SCHEMES:
        raise ValueError(f"unknown indexing {indexing!r}; choose one of {SCHEMES}")
    if review_split not in REVIEW_SPLITS:
        raise ValueError(f"unknown review split {review_split!r}; choose one of {REVIEW_SPLITS}")
    if dedupe not in (None, True, False):
        raise ValueError(f"dedupe must be True, False or None (the format's default), got {dedupe!r}")


def _manifest(*, name, source, indexing, seed, stats, skipped) -> dict:
    return {
        "name": name, "format": source.format,
        "source_files": [{"path": str(p), "md5": output.md5(p)} for p in source.source_files],
        "indexing": indexing, "seed": seed, "leaks_test_items": indexing == "original",
        "counts": stats["counts"], "splits": stats["splits"], "fields": source.fields,
        "explanation_coverage": stats["explanation_coverage"], "skipped_bad_lines": skipped,
        "negatives_per_user": stats["negatives_per_user"],
        "users_too_short_for_sequences": stats["users_too_short_for_sequences"],
        "duplicate_interactions_dropped_from_sequences": stats["duplicate_interactions_dropped_from_sequences"],
        "dedupe": stats["dedupe"], "repeat_interactions": stats["repeat_interactions"],
        "review_split": stats["review_split"], "leaks_held_out_items": stats["leaks_held_out_items"],
        "held_out_pairs": stats["held_out_pairs"],
        "held_out_pairs_in_review_training": stats["held_out_pairs_in_review_training"],
    }


def _write(folder, *, name, data, progress, workers, beam_options) -> dict:
    """Writes the tables and the records as they are built; returns the dataset's final stats."""
    output.write_jsonl(folder / "users.jsonl", data.users)
    output.write_jsonl(folder / "items.jsonl", data.items)
    plans = data.plans()
    total = sum(sum(plan.split_sizes.values()) for plan in plans.values())
    with tqdm(total=total, desc="writing records", unit="record", disable=not progress, leave=False) as bar:
        written = {kind: tfds_builders.build(data_dir=folder / "tfds", dataset=name, plan=plan, workers=workers,
                                             progress=bar, beam_options=beam_options)
                   for kind, plan in plans.items()}
    return data.final_stats(written)


def prepare_dataset(*, name: str, out_root=None, indexing: str = "random", seed: int = 0, source=None,
                    fmt: str | None = None, skip_bad_lines: bool = False, progress: bool = True,
                    num_negatives: int = NUM_NEGATIVES, review_split: str = "aligned",
                    dedupe: bool | None = None, meta=None, workers: int | None = None,
                    beam_options: str | None = None) -> dict:
    """Prepares `name` into `<out_root>/<name>/` and returns its manifest.

    `workers`: processes that build records (default: every CPU this process may use).
    `beam_options`: build the records with Apache Beam instead, under these pipeline flags ("" runs
    the DirectRunner here; see docs/DATA.md for a cluster).

    `meta`: an Amazon item metadata file whose titles, brands and prices are attached to the
    source's items by ASIN (see p5_jax.data.readers_meta).

    `review_split`: "aligned" (leak-free) or "p5" (see the module docstring). `dedupe`: drop repeated
    interactions with an item from sequences; None takes the format's default (keep for p5_sequential).
    """
    _check_arguments(name=name, indexing=indexing, review_split=review_split, dedupe=dedupe)
    out_root = pathlib.Path(out_root) if out_root is not None else paths.prepared_root()
    source_path, fmt = shipped.resolve_source(name=name, source=source, fmt=fmt)
    beam_options = None if beam_options is None else beam_build.pipeline_options(beam_options)
    policy = BadLinePolicy(skip=skip_bad_lines)
    dataset = shipped.READERS[fmt](path=source_path, policy=policy)
    if meta is not None:  # titles, brands, prices by ASIN (amazon and p5_sequential sources)
        attach_metadata(dataset, meta, policy=policy)
    try:
        data = assemble(source=dataset, indexing=indexing, seed=seed, num_negatives=num_negatives,
                        progress=progress, review_split=review_split, dedupe=dedupe)
    except DataError as err:  # about the dataset as a whole: name its main file
        raise err.naming(dataset.source_files[0]) from None
    with output.atomic_directory(out_root / name) as folder:
        stats = _write(folder, name=name, data=data, progress=progress, workers=workers or shard_writer.cpus(),
                       beam_options=beam_options)
        manifest = _manifest(name=name, source=dataset, indexing=indexing, seed=seed, stats=stats,
                             skipped=policy.count)
        manifest["bad_line_examples"] = policy.examples
        manifest["item_metadata"] = metadata_coverage(dataset)
        output.write_json(folder / MANIFEST, manifest)  # last: its presence marks a complete dataset
    return manifest


def ensure_prepared(*, name: str, out_root=None) -> pathlib.Path:
    """`<out_root>/<name>`, preparing the shipped dataset first if it has no manifest yet."""
    out_root = pathlib.Path(out_root) if out_root is not None else paths.prepared_root()
    folder = out_root / name
    if not (folder / MANIFEST).exists():
        prepare_dataset(name=name, out_root=out_root)
    return folder


def _parser() -> argparse.ArgumentParser:
    parser = cli_errors.ArgumentParser(prog="python -m p5_jax.data.prepare", description=__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help=f"shipped: {', '.join(shipped.SHIPPED)}; or a new name")
    parser.add_argument("--out_dir", default=None, help="prepared root (default: $P5_DATA_DIR or ./prepared)")
    parser.add_argument("--indexing", default="random", choices=SCHEMES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", default=None, help="file or folder of a dataset that is not shipped")
    parser.add_argument("--format", dest="fmt", default=None, choices=sorted(shipped.READERS))
    parser.add_argument("--skip_bad_lines", action="store_true", help="count bad lines instead of stopping")
    parser.add_argument("--review_split", default="aligned", choices=REVIEW_SPLITS,
                        help="aligned: held-out items' reviews in validation/test (default); "
                             "p5: P5's independent 8:1:1, leaks held-out items")
    parser.add_argument("--dedupe", action=argparse.BooleanOptionalAction, default=None,
                        help="drop repeated interactions with an item from sequences "
                             "(default: drop for amazon/recbole, keep for p5_sequential)")
    parser.add_argument("--meta", default=None, metavar="PATH",
                        help="Amazon item metadata (meta_<Category>.json[.gz]) for a source whose "
                             "item ids are ASINs: titles, brands, prices")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that build records (default: every CPU this process may use)")
    parser.add_argument("--beam", action="store_true",
                        help="build the records as an Apache Beam pipeline (pip install -e '.[beam]')")
    parser.add_argument("--beam_options", default="", metavar="FLAGS",
                        help="Beam pipeline flags with --beam, e.g. \"--runner=DataflowRunner --project=P "
                             "--region=R --temp_location=gs://B/tmp\" (default: the DirectRunner here)")
    parser.add_argument("--num_negatives", type=int, default=NUM_NEGATIVES, help=argparse.SUPPRESS)
    cli_errors.add_debug_argument(parser)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.beam:
        quiet_tensorflow()  # for Beam's workers; the local build writes without TensorFlow
    try:
        manifest = prepare_dataset(name=args.dataset, out_root=args.out_dir, indexing=args.indexing,
                                   seed=args.seed, source=args.source, fmt=args.fmt,
                                   skip_bad_lines=args.skip_bad_lines, num_negatives=args.num_negatives,
                                   review_split=args.review_split, dedupe=args.dedupe,
                                   meta=args.meta, workers=args.workers,
                                   beam_options=args.beam_options if args.beam else None)
    except (DataError, ValueError, FileNotFoundError) as err:
        return cli_errors.handle(err, debug=args.debug, note="nothing was written")
    for example in manifest["bad_line_examples"]:
        print(f"skipped: {example}", file=sys.stderr)
    print(format_summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
