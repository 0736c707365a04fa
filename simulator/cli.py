"""Command line: `python -m simulator generate [--seed ...]` writes the landing zone and the truth."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from lakehouse.log import configure_logging
from lakehouse.settings import get_settings
from simulator.config import SimConfig
from simulator.generate import extend, generate
from simulator.truth import MODEL_FILE

# Traffic multiplier giving the bench size (>= 1M transaction lines, >= 10M clickstream events).
BENCH_SCALE = 12.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="E-commerce simulator with known ground truth: writes the landing zone of every "
                    "source (with documented dirt) and the truth used to evaluate the pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write the history backfill and its ground truth",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = SimConfig()
    gen.add_argument("--seed", type=int, default=defaults.seed, help="random seed (same seed, same bytes)")
    gen.add_argument("--skus", type=int, default=defaults.skus, help="catalogue size")
    gen.add_argument("--days", type=int, default=defaults.days, help="days of history")
    gen.add_argument("--start-date", type=date.fromisoformat, default=defaults.start_date,
                     help="first ingest date (YYYY-MM-DD)")
    gen.add_argument("--scale", type=float, default=defaults.scale,
                     help=f"traffic multiplier; {BENCH_SCALE:g} gives the bench size")
    gen.add_argument("--landing", type=Path, default=None, help="landing folder [settings.landing_dir]")
    gen.add_argument("--truth", type=Path, default=None, help="ground-truth folder [settings.truth_dir]")
    more = commands.add_parser("next-day", help="add the next day(s) of the recorded simulation to the landing zone",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    more.add_argument("--days", type=int, default=1, help="days to add")
    more.add_argument("--landing", type=Path, default=None, help="landing folder [settings.landing_dir]")
    more.add_argument("--truth", type=Path, default=None, help="ground-truth folder [settings.truth_dir]")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported here so that `--help` answers without loading pandas, pyarrow and pyspark.

    configure_logging()
    settings = get_settings()
    if args.command == "next-day":
        if args.days < 1:
            print("error: --days must be at least 1", file=sys.stderr)
            return 2
        truth = args.truth or settings.truth_dir
        if not (truth / MODEL_FILE).exists():
            print(f"error: no simulation in {truth}: run `python -m simulator generate` first", file=sys.stderr)
            return 2
        dates = extend(args.landing or settings.landing_dir, truth, args.days)
        print(json.dumps({"new_ingest_dates": dates}))
        return 0
    try:
        config = SimConfig(seed=args.seed, skus=args.skus, days=args.days, start_date=args.start_date,
                           scale=args.scale)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = generate(config, args.landing or settings.landing_dir, args.truth or settings.truth_dir)
    print(json.dumps({"rows": rows}, sort_keys=True))
    return 0
