"""List the registered P5 tasks and mixtures, or show a few rendered examples of one.

    python -m p5_jax.list_tasks                 # every task and mixture, one name a line
    python -m p5_jax.list_tasks --counts        # tasks per dataset and family
    python -m p5_jax.list_tasks --show p5_beauty_sequential_2_3 [--split test --num 3]
"""
from __future__ import annotations

import collections
import sys

DEFAULT_LENGTHS = {"inputs": 512, "targets": 64}


def p5_names() -> tuple[list[str], list[str]]:
    import seqio

    import p5_tasks  # noqa: F401  (registers)

    tasks = sorted(n for n in seqio.TaskRegistry.names() if n.startswith("p5_"))
    mixtures = sorted(n for n in seqio.MixtureRegistry.names() if n.startswith("p5_"))
    return tasks, mixtures


def task_counts() -> dict[str, collections.Counter]:
    """{dataset: Counter(family -> number of tasks)} of every registered dataset."""
    import p5_tasks  # noqa: F401  (registers)
    from p5_tasks import prompts, registration

    counts = {}
    for dataset in registration.registered_datasets():
        spec = registration.registered_spec(dataset)
        counts[dataset] = collections.Counter(
            p.family for p in prompts.prompts_for(fields=frozenset(spec.fields)))
    return counts


def _shown_lists(example: dict) -> str:
    """"history 20 ids, candidates 57 ids" for the list features an example carries."""
    parts = [f"{key} {len(example[key])} ids" for key in ("history", "candidates")
             if key in example]
    return ", ".join(parts)


def show(name: str, *, split: str, num: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(input, target, shown lists) of the first `num` examples of a task or mixture."""
    import seqio

    from p5_tasks import registration

    for dataset in registration.datasets_of(name):
        from p5_jax.data import prepare
        prepare.ensure_prepared(name=dataset)
    provider = seqio.get_mixture_or_task(name)
    kwargs = {"copy_pretokenized": True} if isinstance(provider, seqio.Mixture) else {}
    ds = provider.get_dataset(sequence_length=DEFAULT_LENGTHS, split=split, shuffle=False,
                              seed=seed, num_epochs=1, **kwargs)
    return [(ex["inputs_pretokenized"].decode(), ex["targets_pretokenized"].decode(),
             _shown_lists(ex)) for ex in ds.take(num).as_numpy_iterator()]


def main(argv=None) -> int:
    from p5_jax import cli_errors
    from p5_jax.tf_setup import quiet_tensorflow
    quiet_tensorflow()
    parser = cli_errors.ArgumentParser(prog="python -m p5_jax.list_tasks",
                                       description=__doc__.splitlines()[0])
    parser.add_argument("--show", metavar="NAME", help="print rendered examples of a task/mixture")
    parser.add_argument("--split", default="train", choices=("train", "validation", "test"))
    parser.add_argument("--num", type=int, default=3)
    parser.add_argument("--counts", action="store_true", help="tasks per dataset and family")
    cli_errors.add_debug_argument(parser)
    args = parser.parse_args(argv)
    tasks, mixtures = p5_names()
    from p5_tasks import registration

    if args.show:
        from p5_jax.data.errors import DataError

        try:  # an unknown name, or a dataset that cannot be prepared: one `error:` line
            registration.require_known(args.show)
            examples = show(args.show, split=args.split, num=args.num)
        except (registration.UnknownNameError, DataError, FileNotFoundError) as error:
            return cli_errors.handle(error, debug=args.debug)
        for inputs, targets, shown in examples:
            listed = f"shown:  {shown} (at {DEFAULT_LENGTHS['inputs']} input tokens)\n" \
                if shown else ""
            print(f"input:  {inputs}\ntarget: {targets}\n{listed}")
    elif args.counts:
        for dataset, counter in task_counts().items():
            detail = ", ".join(f"{family} {n}" for family, n in sorted(counter.items()))
            manifest = registration.registered_from_manifest(dataset)
            origin = " (from its manifest)" if manifest else ""
            print(f"{dataset}{origin}: {sum(counter.values())} tasks ({detail})")
        print(f"total: {len(tasks)} tasks, {len(mixtures)} mixtures")
    else:
        print("\n".join(tasks + mixtures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
