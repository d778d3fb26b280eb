"""Preparation speed and memory on a P5-format dataset the size of the issue's (issue 12, item 1).

Synthesises a P5 sequential dataset (sequential_data.txt + datamaps.json) of 35,598 users,
18,357 items and 296,337 interactions (Amazon Sports' shape: every user has 5 or more
interactions, item popularity falls off as a power law) and a quarter of it (a quarter of the users
and interactions, the same items), in a temporary folder. Each is prepared in a fresh process with
`prepare_dataset` (default options, no progress bar); that process prints the wall and CPU
seconds of importing and calling it, the records written per second, the records per second of the
writing alone (the issue's measure: the time in `tfds_builders.build`, which now also draws the
negatives that were drawn before it), and the peak memory: of the preparing process alone
(ru_maxrss), and of it together with its record-building workers (its resident memory plus each
worker's own pages, sampled every 0.1 s).

The figures before this change (records held in lists, then written through TFDS's feature
encoders in one process) were measured with this same harness on the same 2-core machine and are
kept below as OLD. On a shared machine, whose load moves both, `--baseline DIR` measures them
again, right before each size: DIR holds the `p5_jax` package of the earlier code (e.g. a
`git worktree` of the commit before). prepare_speedup compares the full-size runs.

Ends with `prepare_records_per_s=N`, `prepare_peak_rss_gib=X.XX` (preparing process and workers,
full size) and `prepare_speedup=X.X`.

    python benchmarks/prepare_speed.py [--workers N] [--keep DIR] [--baseline DIR] [--users N]

`--users N` scales both sizes down for a quick run (the recorded OLD figures are of the issue's size).
"""
import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil

FULL = {"users": 35_598, "items": 18_357, "interactions": 296_337}
# The code before issue 12, item 1 (records in lists, TFDS's encoders, one process), with this harness
# on this 2-core machine while it was lightly loaded (load average about 2), 2026-11-30:
# (records/s, CPU seconds, peak RSS GiB) per size. Under heavier load it fell to 650 records/s.
OLD = {"full": (1288, 81.1, 0.91), "quarter": (1418, 19.0, 0.76)}
ISSUE_RECORDS_PER_S = 400  # the issue's figure: 107k records in about 4.5 min of writing


def synthesise(folder: pathlib.Path, *, users: int, items: int, interactions: int, seed: int = 0) -> None:
    """A P5 sequential source: each user's items in time order, numbered by first appearance."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lengths = 5 + rng.multinomial(interactions - 5 * users, rng.dirichlet(np.ones(users)))
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    unseen = list(rng.permutation(items))  # every item is somebody's at least once, while any are left
    numbers: dict[int, int] = {}  # item -> its number in sequential_data.txt
    lines: list[str] = []
    for user, length in enumerate(lengths, start=1):
        chosen = [int(unseen.pop()) for _ in range(min(2, len(unseen)))]
        while len(chosen) < length:
            chosen = list(dict.fromkeys(chosen + [int(i) for i in rng.choice(items, length, p=popularity)]))[:length]
        rng.shuffle(chosen)
        lines.append(" ".join([str(user), *(str(numbers.setdefault(i, len(numbers) + 1)) for i in chosen)]))
    (folder / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    datamaps = {"id2user": {str(u): f"A{u:013d}" for u in range(1, users + 1)},
                "id2item": {str(n): f"B{i:09d}" for i, n in numbers.items()}}
    (folder / "datamaps.json").write_text(json.dumps(datamaps))


class _TreeMemory(threading.Thread):
    """Peak of this process's resident memory plus its children's own (unique) pages."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._done = 0, threading.Event()

    def run(self):
        me = psutil.Process()
        while not self._done.wait(0.1):
            try:
                total = me.memory_info().rss + sum(c.memory_full_info().uss for c in me.children(recursive=True))
            except psutil.Error:  # a worker that ended between listing and reading
                continue
            self.peak = max(self.peak, total)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak / 2 ** 30


def measure(source: str, out_dir: str, workers) -> dict:
    """Prepares `source` here and returns the figures (run in a fresh process per size). The time
    includes importing prepare (and TensorFlow, for the code before), which a user of the
    command waits for too."""
    start, cpu, memory = time.perf_counter(), time.process_time(), _TreeMemory()
    memory.start()
    from p5_jax.data import prepare, tfds_builders

    writing, build = [], tfds_builders.build

    def timed_build(*args, **kwargs):
        began = time.perf_counter()
        try:
            return build(*args, **kwargs)
        finally:
            writing.append(time.perf_counter() - began)

    tfds_builders.build = timed_build
    manifest = prepare.prepare_dataset(name="bench", out_root=out_dir, source=source, fmt="p5_sequential",
                                       progress=False, **({"workers": workers} if workers else {}))
    seconds = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    records = sum(sum(manifest["splits"][family].values()) for family in ("sequential", "rating")
                  if family in manifest["splits"])
    return {"users": manifest["counts"]["users"], "interactions": manifest["counts"]["interactions"],
            "records": records, "seconds": seconds,
            "cpu_seconds": time.process_time() - cpu + children.ru_utime + children.ru_stime,
            "records_per_s": records / seconds, "writing_records_per_s": records / sum(writing),
            "tree_peak_gib": memory.stop(),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}  # KiB on Linux


def _measured(source: pathlib.Path, out_dir: pathlib.Path, *, workers=None, package=None) -> dict:
    """`measure` in a fresh process, of this checkout's code or of the `p5_jax` package in `package`."""
    command = [sys.executable, __file__, "--_measure", str(source), str(out_dir)]
    command += ["--workers", str(workers)] if workers else []
    env = {**os.environ, "PYTHONPATH": str(package)} if package else None
    result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _report(name: str, figures: dict, before: dict | None) -> None:
    print(f"{name:>8}: {figures['users']:,} users, {figures['interactions']:,} interactions, "
          f"{figures['records']:,} records in {figures['seconds']:.1f} s ({figures['cpu_seconds']:.1f} CPU s): "
          f"{figures['records_per_s']:,.0f} records/s (writing alone {figures['writing_records_per_s']:,.0f}); "
          f"peak memory {figures['tree_peak_gib']:.2f} GiB with "
          f"the workers, {figures['peak_rss_gib']:.2f} GiB for the preparing process")
    old_rate, old_cpu, old_rss = OLD[name]
    recorded = f"; recorded: {old_rate:,} records/s ({old_cpu:.1f} CPU s)"
    if before:
        old_rate, old_cpu, old_rss = before["records_per_s"], before["cpu_seconds"], before["tree_peak_gib"]
    writing = f" (writing alone {before['writing_records_per_s']:,.0f})" if before else ""
    print(f"{'before':>8}: {old_rate:,.0f} records/s{writing} ({old_cpu:.1f} CPU s); peak memory {old_rss:.2f} GiB"
          + (recorded if before else ""))


def _scaled(users: int) -> dict:
    """FULL with `users` users and as many interactions per user (the same items)."""
    return {**FULL, "users": users, "interactions": FULL["interactions"] * users // FULL["users"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=None, help="default: prepare's (every CPU)")
    parser.add_argument("--keep", default=None, help="keep the sources and prepared data in DIR")
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="measure the earlier code too: DIR holds its p5_jax package")
    parser.add_argument("--users", type=int, default=FULL["users"],
                        help="users of the full size, interactions scaled with them (quick runs; default: the issue's)")
    parser.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._measure:
        source, out_dir = args._measure
        print(json.dumps(measure(source, out_dir, workers=args.workers)))
        return 0
    full = _scaled(args.users)
    sizes = {"quarter": {**full, "users": full["users"] // 4, "interactions": full["interactions"] // 4},
             "full": full}
    figures, before = {}, {}
    with tempfile.TemporaryDirectory() as temporary:
        work = pathlib.Path(args.keep or temporary)
        for name, counts in sizes.items():
            synthesise(work / f"source_{name}", **counts)
            if args.baseline:
                before[name] = _measured(work / f"source_{name}", work / f"before_{name}", package=args.baseline)
            figures[name] = _measured(work / f"source_{name}", work / f"prepared_{name}", workers=args.workers)
    for name in sizes:
        _report(name, figures[name], before.get(name))
    full, old_full = figures["full"], before.get("full", {}).get("records_per_s", OLD["full"][0])
    growth = full["tree_peak_gib"] - figures["quarter"]["tree_peak_gib"]
    old_growth = (before["full"]["tree_peak_gib"] - before["quarter"]["tree_peak_gib"] if before
                  else OLD["full"][2] - OLD["quarter"][2])
    print(f"memory: {growth:+.2f} GiB for 4x the users, before {old_growth:+.2f} GiB "
          "(the source is held in memory; the records are not)")
    print(f"vs the issue's {ISSUE_RECORDS_PER_S} records/s: {full['records_per_s'] / ISSUE_RECORDS_PER_S:.1f}x")
    print(f"prepare_records_per_s={full['records_per_s']:.0f}")
    print(f"prepare_peak_rss_gib={full['tree_peak_gib']:.2f}")
    print(f"prepare_speedup={full['records_per_s'] / old_full:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
