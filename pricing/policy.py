"""The pricing policy file (`pricing/policy.yaml`): every guardrail and live-repricing threshold, in one place.

`read_policy(path)` parses the file and checks its sections; `policy_section(cls, name, path)` builds a
frozen dataclass from one section, every key required and none unknown: an error is a `PolicyError`
naming the file, the section and the key. `pricing.guardrails.DEFAULT_GUARDRAILS` is the `guardrails`
section and `LIVE_POLICY` the `live` one, both read when first imported: a process (batch scoring, the
API) applies an edit when it next starts.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

POLICY_FILE = Path(__file__).with_name("policy.yaml")
SECTIONS = ("guardrails", "live")

T = TypeVar("T")


class PolicyError(ValueError):
    """The pricing policy file is invalid; the message names the file, the section and the key."""


def yaml_document(path: Path, error: type[ValueError], what: str) -> Any:
    """The YAML document in the file at `path`; `error` names the file (and `what` it holds) when it cannot be
    read or parsed."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise error(f"{path}: cannot read the {what}: {err}") from err
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from err


@functools.cache
def read_policy(path: Path = POLICY_FILE) -> dict[str, dict[str, Any]]:
    """The file's sections (each a mapping of key -> value), checked to be exactly `SECTIONS`."""
    data = yaml_document(path, PolicyError, "pricing policy")
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: expected the sections {list(SECTIONS)}, got {type(data).__name__}")
    missing, unknown = [s for s in SECTIONS if s not in data], sorted(set(data) - set(SECTIONS))
    if missing or unknown:
        raise PolicyError(f"{path}: sections missing {missing}, unknown {unknown}; expected {list(SECTIONS)}")
    for name in SECTIONS:
        if not isinstance(data[name], dict):
            raise PolicyError(f"{path}: {name}: expected a mapping of settings, got {type(data[name]).__name__}")
    return data


def policy_section(cls: type[T], name: str, path: Path = POLICY_FILE) -> T:
    """The dataclass `cls` from section `name` of the policy file: every field required, no other key."""
    section = read_policy(path)[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    missing, unknown = [f for f in fields if f not in section], sorted(set(section) - set(fields))
    if missing or unknown:
        raise PolicyError(f"{path}: {name}: keys missing {missing}, unknown {unknown}; expected {fields}")
    try:
        return cls(**section)
    except (TypeError, ValueError) as err:
        raise PolicyError(f"{path}: {name}: {err}") from err


@dataclass(frozen=True)
class LivePolicy:
    """When live repricing moves a price (the reason thresholds) and how far (the live guardrails)."""

    competitor_move_pct: float  # COMPETITOR_MOVE: |live competitor min / daily competitor min - 1| > this / 100
    demand_surge_index: float  # DEMAND_SURGE: the current 60-minute demand index is above this
    demand_slump_index: float  # DEMAND_SLUMP: ... below this
    max_changes_per_hour: int  # live price changes per SKU in any rolling hour
    max_daily_move_pct: float  # |live price / the SKU's first price of the UTC day - 1| <= this / 100

    def __post_init__(self) -> None:
        for name in ("competitor_move_pct", "demand_surge_index", "demand_slump_index", "max_daily_move_pct"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0 <= self.competitor_move_pct < 100:
            raise ValueError(f"competitor_move_pct must be in [0, 100), got {self.competitor_move_pct:g}")
        if not 0 <= self.demand_slump_index <= 1 <= self.demand_surge_index < float("inf"):
            raise ValueError(f"demand indices must satisfy 0 <= demand_slump_index ({self.demand_slump_index:g}) "
                             f"<= 1 <= demand_surge_index ({self.demand_surge_index:g})")
        if isinstance(self.max_changes_per_hour, bool) or not isinstance(self.max_changes_per_hour, int) \
                or self.max_changes_per_hour < 1:
            raise ValueError(f"max_changes_per_hour must be a whole number >= 1, got {self.max_changes_per_hour!r}")
        # Below 100% so that the lowest price the bound allows stays positive.
        if not 0 < self.max_daily_move_pct < 100:
            raise ValueError(f"max_daily_move_pct must be in (0, 100), got {self.max_daily_move_pct:g}")

    @property
    def competitor_move(self) -> float:
        return self.competitor_move_pct / 100

    @property
    def max_daily_move(self) -> float:
        return self.max_daily_move_pct / 100


LIVE_POLICY = policy_section(LivePolicy, "live")
