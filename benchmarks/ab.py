"""Compare a benchmark between two checkouts, runs interleaved: before/after a change, same machine, same load.

Runs `python -m MODULE ARGS` alternately in the old and the new checkout (old, new, new, old, ...: a drift
in the machine's load falls on both), with this interpreter and each checkout first on the import path,
collects the markdown table rows both print (`| label | ... | number | number |`), and reports the median
of every numeric column per row for each side and new / old.

Run: .venv/bin/python -m benchmarks.ab --old /tmp/old-checkout [--new .] [--rounds 2] -- \
         benchmarks.bench_search --latency-only
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

Row = tuple[str, ...]


def table_rows(output: str) -> dict[Row, list[float]]:
    """Markdown rows whose trailing cells are numbers, keyed by their leading text cells."""
    rows: dict[Row, list[float]] = {}
    for line in output.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        numbers: list[float] = []
        while cells:
            try:
                numbers.insert(0, float(cells[-1].replace(",", "")))
            except ValueError:
                break
            cells.pop()
        if numbers and cells:
            rows[tuple(cells)] = numbers
    return rows


def run(tree: Path, module: str, args: list[str]) -> dict[Row, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=tree, env=env, capture_output=True, text=True, check=True
    )
    print(done.stdout, file=sys.stderr, flush=True)  # each run's own table, should a later run fail
    return table_rows(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )  # the benchmark's own options (`--n`) must not read as abbreviations of these
    parser.add_argument("--old", type=Path, required=True, help="the checkout before the change")
    parser.add_argument("--new", type=Path, default=Path("."), help="the checkout after it (default: here)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side")
    parser.add_argument("module", help="benchmark module, e.g. benchmarks.bench_search")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    results: dict[str, dict[Row, list[list[float]]]] = {"old": defaultdict(list), "new": defaultdict(list)}
    order = [("old", "new") if r % 2 == 0 else ("new", "old") for r in range(ns.rounds)]
    for r, pair in enumerate(order):
        for side in pair:
            tree = (ns.old if side == "old" else ns.new).resolve()
            for row, numbers in run(tree, ns.module, args).items():
                results[side][row].append(numbers)
            print(f"round {r + 1}/{ns.rounds}: {side} done", file=sys.stderr, flush=True)
    print(f"`{ns.module} {' '.join(args)}`, {ns.rounds} runs per side, interleaved; medians, new / old\n")
    print("| row | old | new | new / old |\n|---|---|---|---|")
    for row, old_runs in results["old"].items():
        new_runs = results["new"].get(row)
        if not new_runs:
            continue
        old_med = [statistics.median(col) for col in zip(*old_runs, strict=True)]
        new_med = [statistics.median(col) for col in zip(*new_runs, strict=True)]
        ratios = [f"{n / o:.3f}" if o else "-" for o, n in zip(old_med, new_med, strict=True)]
        fmt = " / ".join
        print(
            f"| {' · '.join(row)} | {fmt(f'{v:g}' for v in old_med)} | {fmt(f'{v:g}' for v in new_med)} "
            f"| {fmt(ratios)} |"
        )


if __name__ == "__main__":
    main()
