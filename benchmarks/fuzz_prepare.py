"""The long run of tests/test_fuzz_prepare.py: thousands of corrupted inputs through the prepare CLI
(cases from tests/fuzz_cases.py, judged by tests/fuzz_judge.py).

Each case is drawn from its own seeded random stream (seed, format, case number), so a reported
case can be replayed alone. Per format it prints the cases, errors naming file and line,
errors naming a file as a whole, exact successes, tracebacks (must be 0) and other failures
(unclear messages, inexact results, partial folders, a clobbered earlier dataset), then lists
every traceback and failure with its corruptions. Exits 1 if there is any.

    python benchmarks/fuzz_prepare.py [--cases 1000] [--seed 0] [--formats amazon recbole]
"""
import argparse
import collections
import pathlib
import random
import sys
import tempfile
import time
import types

_TESTS = pathlib.Path(__file__).resolve().parents[1] / "tests"
COLUMNS = (("line_error", "file:line errors"), ("file_error", "file errors"), ("success", "exact successes"),
           ("traceback", "tracebacks"), ("other", "other failures"))


def _load_suite() -> types.SimpleNamespace:
    """The cases (tests/fuzz_cases.py) and the judge (tests/fuzz_judge.py) of the test suite."""
    sys.path.insert(0, str(_TESTS))
    import fuzz_cases
    import fuzz_judge

    return types.SimpleNamespace(make_case=fuzz_cases.make_case, run_case=fuzz_judge.run_case,
                                 GOOD=fuzz_cases.GOOD, FORMATS=fuzz_cases.FORMATS)


def run_format(suite, fmt: str, *, cases: int, seed: int) -> tuple:
    """(counts by outcome kind, [(case number, description, outcome)] of every failure)."""
    counts: collections.Counter[str] = collections.Counter()
    failures: list[tuple] = []
    for number in range(cases):
        case = suite.make_case(fmt, random.Random(f"{seed}:{fmt}:{number}"))
        with tempfile.TemporaryDirectory() as work:
            outcome = suite.run_case(case, pathlib.Path(work))
        kind = outcome.kind if outcome.kind in dict(COLUMNS) else "other"
        counts[kind] += 1
        if outcome.kind not in suite.GOOD:
            failures.append((number, case.describe(), outcome))
    return counts, failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000, help="cases per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", nargs="+", default=None, help="default: all three")
    args = parser.parse_args(argv)
    suite = _load_suite()
    header = f"{'format':<15}{'cases':>7}" + "".join(f"{label:>18}" for _, label in COLUMNS) + f"{'seconds':>9}"
    rows, failures = [header], []
    for fmt in args.formats or suite.FORMATS:
        start = time.perf_counter()
        counts, found = run_format(suite, fmt, cases=args.cases, seed=args.seed)
        failures += [(fmt, *failure) for failure in found]
        rows.append(f"{fmt:<15}{args.cases:>7}" + "".join(f"{counts[kind]:>18}" for kind, _ in COLUMNS)
                    + f"{time.perf_counter() - start:>9.0f}")
        print(rows[-1] if len(rows) > 2 else "\n".join(rows), flush=True)
    for fmt, number, description, outcome in failures:
        print(f"\n--- {fmt} case {number} (seed {args.seed}): {description}\n{outcome.kind}: {outcome.detail}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
