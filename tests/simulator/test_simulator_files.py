"""The simulator's landing files: determinism, declared schemas, dirt manifest, CLI."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import BooleanType, DateType, DoubleType, IntegerType, StringType

from lakehouse.sources import LANDING_SOURCES
from simulator import truth
from simulator.config import DirtRates, SimConfig
from simulator.dirt import DIRT_SPECS
from simulator.generate import MANIFEST_FILE, generate
from simulator.truth import MODEL_FILE

REPO = Path(__file__).resolve().parents[2]
# Small, with dirt rates raised so that every defect occurs a countable number of times.
CONFIG = SimConfig(seed=3, skus=150, days=8, scale=0.5, dirt=DirtRates(
    duplicate=0.03, late=0.05, null=0.02, out_of_range=0.01, corrupt=0.005,
    color_from_day=4, coupon_code_from_day=5))
EVENT_KEYS = {"transactions": ("order_id", "line_number"), "clickstream": ("event_id",)}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sim")
    generate(CONFIG, root / "landing", root / "truth")
    return root


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _files(landing: Path, source: str) -> list[tuple[date, Path]]:
    """(ingest date, path) of a source's files, oldest first."""
    return [(date.fromisoformat(p.parent.name.split("=")[1]), p)
            for p in sorted((landing / source).glob("ingest_date=*/part-00000.*"))]


def _records(path: Path, fmt: str) -> list[dict | None]:
    """One entry per data line: the parsed record, or None for a line that does not parse."""
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    lines = path.read_text(encoding="utf-8").splitlines()
    if fmt == "csv":
        header = next(csv.reader([lines[0]]))
        rows = (next(csv.reader([line])) for line in lines[1:])
        return [dict(zip(header, r, strict=True)) if len(r) == len(header) else None for r in rows]
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append(None)
    return out


def _is_null(value) -> bool:
    return value is None or value == ""


def _has_type(value, dtype, fmt: str) -> bool:
    """CSV text must parse as the declared type; JSON values must have the matching JSON type."""
    if _is_null(value):
        return True
    if isinstance(dtype, DateType | StringType) or fmt == "csv":
        if not isinstance(value, str):
            return False
        parse = {IntegerType: int, DoubleType: float, DateType: date.fromisoformat, StringType: str,
                 BooleanType: {"true": True, "false": False}.__getitem__}[type(dtype)]
        try:
            parse(value)
        except (ValueError, KeyError):
            return False
        return True
    expected = {IntegerType: int, DoubleType: (int, float)}[type(dtype)]
    return isinstance(value, expected) and not isinstance(value, bool)


def test_same_seed_gives_identical_files_and_another_seed_different_data(generated, tmp_path):
    generate(CONFIG, tmp_path / "again" / "landing", tmp_path / "again" / "truth")
    assert _hashes(tmp_path / "again") == _hashes(generated)

    other = SimConfig(**{**CONFIG.__dict__, "seed": CONFIG.seed + 1})
    generate(other, tmp_path / "other" / "landing", tmp_path / "other" / "truth")
    first, second = _hashes(generated), _hashes(tmp_path / "other")
    assert first.keys() == second.keys()
    changed = {k.split("/")[1] for k in first if first[k] != second[k] and k.startswith("landing/")}
    # The zone chart is a fixed geography; every other source depends on the seed.
    assert changed == set(LANDING_SOURCES) - {"shipping_zones"}


def test_layout_has_one_file_per_source_and_ingest_date(generated):
    landing = generated / "landing"
    for source, fmt in ((n, s.landing_format) for n, s in LANDING_SOURCES.items()):
        files = _files(landing, source)
        expected_days = {"shipping_zones": [0], "shipping_rates": [0, CONFIG.days // 2]}.get(
            source, range(CONFIG.days))
        assert [d for d, _ in files] == [CONFIG.day_date(i) for i in expected_days], source
        assert all(p.suffix == f".{fmt}" for _, p in files)


def test_every_file_has_the_declared_columns_and_types(generated):
    landing = generated / "landing"
    drift_from = {"products": CONFIG.dirt.color_from_day, "transactions": CONFIG.dirt.coupon_code_from_day}
    for source, schema in ((n, s.landing) for n, s in LANDING_SOURCES.items()):
        fmt = LANDING_SOURCES[source].landing_format
        for ingest, path in _files(landing, source):
            day = CONFIG.day_of(ingest)
            late = list(LANDING_SOURCES[source].late_columns) if 0 < day and day >= drift_from.get(
                source, CONFIG.days) else []
            if fmt == "parquet":
                assert pq.read_schema(path).equals(to_arrow_schema(schema), check_metadata=False)
                continue
            if fmt == "csv":
                header = path.read_text().splitlines()[0].split(",")
                assert header == schema.fieldNames() + late, (source, ingest)
            records = [r for r in _records(path, fmt) if r is not None]
            assert records, (source, ingest)
            for record in records:
                assert list(record) == schema.fieldNames() + late, (source, ingest, record)
                for field in schema.fields:
                    assert _has_type(record[field.name], field.dataType, fmt), (source, field.name, record)


def _recount(landing: Path, source: str) -> dict[str, dict[str, int]]:
    """Defects counted from the files alone: parse failures, repeats, late, nulls, bad values."""
    spec, fmt = DIRT_SPECS.get(source), LANDING_SOURCES[source].landing_format
    seen: set = set()
    counts = {}
    for ingest, path in _files(landing, source):
        c = dict.fromkeys(("corrupt_lines", "duplicates", "late_arrivals", "nulls", "out_of_range"), 0)
        records = _records(path, fmt)
        c["rows"] = len(records)
        for record in records:
            if record is None:
                c["corrupt_lines"] += 1
                continue
            key = tuple(record[k] for k in EVENT_KEYS[source]) if source in EVENT_KEYS else tuple(
                sorted(map(str, record.items())))
            if key in seen:
                c["duplicates"] += 1
                continue
            seen.add(key)
            if spec is None:
                continue
            if "event_time" in record:
                event_day = datetime.fromisoformat(record["event_time"]).astimezone(UTC).date()
                c["late_arrivals"] += event_day < ingest
            c["nulls"] += any(_is_null(record[col]) for col in spec.null_columns)
            c["out_of_range"] += any(
                not _is_null(record[col]) and (float(record[col]) < 0 if how == "negative" else float(
                    record[col]) == 0) for col, how in spec.out_of_range)
        counts[ingest.isoformat()] = c
    return counts


def test_dirt_manifest_counts_equal_what_is_in_the_files(generated):
    manifest = json.loads((generated / "truth" / MANIFEST_FILE).read_text())
    assert set(manifest) == set(LANDING_SOURCES)
    totals: dict[str, int] = {}
    for source in LANDING_SOURCES:
        recounted = _recount(generated / "landing", source)
        written = {d: {k: v for k, v in c.items() if isinstance(v, int)} for d, c in manifest[source].items()}
        assert written == recounted, source
        for c in recounted.values():
            for k, v in c.items():
                totals[k] = totals.get(k, 0) + v
    # Every kind of defect is really exercised by this data set.
    assert all(totals[k] > 0 for k in ("corrupt_lines", "duplicates", "late_arrivals", "nulls", "out_of_range"))


def test_resent_duplicates_and_late_rows_land_in_later_files(generated):
    landing = generated / "landing"
    first_seen: dict[str, date] = {}
    resent = 0
    for ingest, path in _files(landing, "clickstream"):
        for record in filter(None, _records(path, "json")):
            resent += record["event_id"] in first_seen and first_seen[record["event_id"]] < ingest
            first_seen.setdefault(record["event_id"], ingest)
    assert resent > 0


def test_truth_reloads_the_same_world(generated):
    days = pd.read_parquet(generated / "truth" / "sku_days.parquet")
    reloaded = truth.load(generated / "truth")
    np.testing.assert_array_equal(reloaded.our_price(days["sku"], days["date"]), days["our_price_usd"])
    np.testing.assert_allclose(reloaded.expected_demand(days["sku"], days["our_price_usd"],
                                                        days["competitor_min_usd"], days["date"]),
                               days["expected_units"], rtol=1e-12)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="need skus >= 100"):
        SimConfig(skus=5)


def test_cli_help_exits_zero():
    for args in ([], ["generate"]):
        done = subprocess.run([sys.executable, "-m", "simulator", *args, "--help"], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "usage: python -m simulator" in done.stdout


def test_next_day_adds_the_day_a_longer_run_would_have_written_and_changes_no_earlier_file(generated, tmp_path):
    landing, truth = tmp_path / "landing", tmp_path / "truth"
    shutil.copytree(generated / "landing", landing)
    shutil.copytree(generated / "truth", truth)
    before = _hashes(landing)
    longer = tmp_path / "longer"
    generate(dataclasses.replace(CONFIG, days=CONFIG.days + 1), longer / "landing", longer / "truth")

    done = subprocess.run([sys.executable, "-m", "simulator", "next-day", "--landing", str(landing),
                           "--truth", str(truth)], cwd=REPO, capture_output=True, text=True, check=True)

    new_date = CONFIG.day_date(CONFIG.days).isoformat()
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"new_ingest_dates": [new_date]}
    after = _hashes(landing)
    assert {k: v for k, v in after.items() if k in before} == before
    added = {k: v for k, v in after.items() if k not in before}
    assert added and all(f"ingest_date={new_date}/" in k for k in added)
    assert added == {k: v for k, v in _hashes(longer / "landing").items() if f"ingest_date={new_date}/" in k}
    assert json.loads((truth / MODEL_FILE).read_text())["config"]["days"] == CONFIG.days + 1
    missing = subprocess.run([sys.executable, "-m", "simulator", "next-day", "--truth", str(tmp_path / "none")],
                             cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and "no simulation in" in missing.stderr
