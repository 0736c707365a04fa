"""History backfill: every source's landing files for every day, plus the ground truth.

Day by day: render the batch sources and simulate the day's events, add dirt, write the rows that
land today (today's plus earlier days' late or re-sent rows), and count the defects of each file.
Output: `<landing>/<source>/ingest_date=YYYY-MM-DD/part-00000.<ext>` and `<truth>/` (model.json,
dirt_manifest.json, skus.parquet, sku_days.parquet, shipments.parquet).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

from simulator.config import SimConfig, rng_for
from simulator.dirt import DIRT_SPECS, apply_dirt, manifest_counts
from simulator.events import simulate_day
from simulator.sources import BATCH_SOURCES
from simulator.truth import MODEL_FILE, model_description, sku_day_table, sku_table
from simulator.world import World
from simulator.writers import write_landing_file

log = logging.getLogger("simulator")

MANIFEST_FILE = "dirt_manifest.json"
SOURCES = (*BATCH_SOURCES, "transactions", "clickstream")


def generate(config: SimConfig, landing: Path, truth: Path) -> dict[str, int]:
    """Write the whole history; returns the number of rows written per source."""
    started = time.perf_counter()
    world = World(config)
    last_day = config.days - 1
    pending: dict[tuple[str, int], list[pd.DataFrame]] = defaultdict(list)
    manifest: dict[str, dict[str, dict]] = defaultdict(dict)
    rows_written: dict[str, int] = dict.fromkeys(SOURCES, 0)
    sku_days, shipments = [], []
    for day in range(config.days):
        ingest_date = config.day_date(day).isoformat()
        events = simulate_day(world, day, with_coupons=day >= config.dirt.coupon_code_from_day)
        deliveries = {name: make(world, day) for name, make in BATCH_SOURCES.items()}
        deliveries.update(transactions=events.transactions, clickstream=events.clickstream)
        for source, clean in deliveries.items():
            if clean is None:
                continue
            rows = clean
            if source in DIRT_SPECS:
                dirty = apply_dirt(clean, DIRT_SPECS[source], config.dirt, rng_for(config.seed, f"dirt:{source}", day),
                                   day, last_day)
                for land_day, later in dirty[dirty["_land_day"] > day].groupby("_land_day", sort=True):
                    pending[(source, int(land_day))].append(later)
                rows = pd.concat([dirty[dirty["_land_day"] == day], *pending.pop((source, day), [])],
                                 ignore_index=True)
            write_landing_file(rows, source, landing, ingest_date, rng_for(config.seed, f"write:{source}", day))
            manifest[source][ingest_date] = manifest_counts(rows)
            rows_written[source] += len(rows)
        sku_days.append(sku_day_table(world, day))
        shipments.append(events.shipments)
        log.info("day written", extra={"day": day, "ingest_date": ingest_date,
                                       "clickstream": len(events.clickstream),
                                       "transactions": len(events.transactions),
                                       "elapsed_s": round(time.perf_counter() - started, 2)})
    assert not pending, "late rows are capped at the last day"

    truth.mkdir(parents=True, exist_ok=True)
    (truth / MODEL_FILE).write_text(json.dumps(model_description(world), indent=2, sort_keys=True) + "\n")
    (truth / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    sku_table(world).to_parquet(truth / "skus.parquet", index=False)
    pd.concat(sku_days, ignore_index=True).to_parquet(truth / "sku_days.parquet", index=False)
    pd.concat(shipments, ignore_index=True).to_parquet(truth / "shipments.parquet", index=False)
    log.info("generation done", extra={"rows": rows_written, "landing": str(landing), "truth": str(truth),
                                       "elapsed_s": round(time.perf_counter() - started, 2)})
    return rows_written


def extend(landing: Path, truth: Path, days: int = 1) -> list[str]:
    """Add the next `days` days of the simulation recorded in `truth` to the landing zone, as if they had
    just arrived: the same world and seed simulated `days` days longer; only the new days' files are
    copied, and the truth is rewritten for the longer run. Returns the new ingest dates.

    Rows the shorter run capped at its last day land again on a new day: re-sent rows, as the dirt has."""
    config = SimConfig.from_json(json.loads((truth / MODEL_FILE).read_text())["config"])
    longer = dataclasses.replace(config, days=config.days + days)
    new_dates = [longer.day_date(day).isoformat() for day in range(config.days, longer.days)]
    with tempfile.TemporaryDirectory(prefix="simulated-") as scratch:
        generate(longer, Path(scratch) / "landing", truth)
        for folder in sorted((Path(scratch) / "landing").glob("*/ingest_date=*")):
            if folder.name.removeprefix("ingest_date=") in new_dates:
                shutil.copytree(folder, landing / folder.parent.name / folder.name)
    return new_dates
