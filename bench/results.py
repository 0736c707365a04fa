"""The benchmark result format of shared/DESIGN.md: one JSON file per benchmark, a list of records."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lakehouse.settings import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "bench" / "results"


@dataclass(frozen=True)
class BenchRecord:
    """One measured figure next to its same-run reference; `ratio` is value / reference_value."""

    name: str
    value: float
    unit: str
    reference_name: str
    reference_value: float
    target: str
    meets_target: bool
    details: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return round(self.value / self.reference_value, 4) if self.reference_value else float("inf")

    def as_json(self) -> dict:
        return {**asdict(self), "ratio": self.ratio,
                "details": {**self.details, "machine": machine()}}


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def write_results(benchmark: str, records: list[BenchRecord], results_dir: Path = RESULTS_DIR) -> Path:
    """Write `<results_dir>/<benchmark>.json` and return its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{benchmark}.json"
    path.write_text(json.dumps([r.as_json() for r in records], indent=2) + "\n")
    return path
