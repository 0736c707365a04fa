"""`python -m bench`: run the benchmarks and write bench/results/<name>.json (see bench/results.py)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bench.results import write_results
from lakehouse.log import configure_logging

log = logging.getLogger("bench")

# Benchmark modules, each with `run(scale: float) -> list[BenchRecord]`.
BENCHMARKS: dict[str, str] = {
    "streaming": "bench.streaming",
    "api": "bench.api",
    "silver_gold": "bench.silver_gold",
    "live": "bench.live",
    "operational": "bench.operational",
    "regret": "bench.regret",
    "daily": "bench.daily",
    "airflow": "bench.airflow",
    "carrier": "bench.carrier",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only this benchmark")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="data size relative to the bench size each benchmark documents (default 1.0)")
    args = parser.parse_args(argv)
    configure_logging()
    missed = []
    for name in args.only or list(BENCHMARKS):
        records = importlib.import_module(BENCHMARKS[name]).run(args.scale)
        path = write_results(name, records)
        for record in records:
            log.info("result", extra={"benchmark": name, "result": record.as_json(), "file": str(path)})
            if not record.meets_target:
                missed.append(record.name)
    if missed:
        log.warning("targets missed", extra={"records": missed})
    return 0


if __name__ == "__main__":
    sys.exit(main())
