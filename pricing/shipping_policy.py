"""The shipping policy (`pricing/shipping_policy.yaml`): what the shopper pays for shipping, one versioned file.

The carrier estimate (the API's expected cost of a parcel) becomes the shopper's charge by one rule,
`shipping_charge`, used by the API and by the simulator's truth alike:

    charge = 0                                                   if the level ships free and subtotal >= threshold
    charge = ceil_to(estimate * (1 + markup[level] / 100) + zone_surcharge[zone], round_up_to_usd)  otherwise

`read_shipping_policy(path)` parses and checks the file (a `ShippingPolicyError` names the file and the key);
`SHIPPING_POLICY` is the repository's, read when first imported. An experiment variant may move the
free-shipping threshold (`ShippingPolicy.with_free_shipping_from`): the policy's version then names it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lakehouse.reference import SERVICE_LEVELS, ZONE_COUNT
from pricing.policy import yaml_document

SHIPPING_POLICY_FILE = Path(__file__).with_name("shipping_policy.yaml")
KEYS = ("version", "markup_pct", "free_shipping", "zone_surcharge_usd", "round_up_to_usd")
FREE_SHIPPING_KEYS = ("threshold_usd", "service_levels")
# ceil(x / step) on a quotient a float error put a hair above a whole number (7.5 / 0.5 = 15.000000000000002).
_CEIL_TOLERANCE = 1e-9


class ShippingPolicyError(ValueError):
    """The shipping policy file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class ShippingPolicy:
    """One version of the shipping policy; `free_shipping_threshold_usd` None: nothing ships free."""

    version: str
    markup_pct: dict[str, float]  # service level -> percent over the carrier estimate
    free_shipping_threshold_usd: float | None
    free_shipping_levels: tuple[str, ...]
    zone_surcharge_usd: dict[int, float]  # delivery zone -> USD added; absent zones add nothing
    round_up_to_usd: float

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version.strip():
            raise ValueError(f"version must be a non-empty text, got {self.version!r}")
        if set(self.markup_pct) != set(SERVICE_LEVELS):
            raise ValueError(f"markup_pct must name exactly the service levels {list(SERVICE_LEVELS)}, "
                             f"got {sorted(self.markup_pct)}")
        for level, pct in self.markup_pct.items():
            if not _number(pct) or not -100 < pct < 1000:
                raise ValueError(f"markup_pct.{level} must be a number in (-100, 1000), got {pct!r}")
        threshold = self.free_shipping_threshold_usd
        if threshold is not None and (not _number(threshold) or threshold < 0):
            raise ValueError(f"free_shipping.threshold_usd must be a number >= 0 or null, got {threshold!r}")
        unknown = sorted(set(self.free_shipping_levels) - set(SERVICE_LEVELS))
        if unknown:
            raise ValueError(f"free_shipping.service_levels has unknown levels {unknown}; known {list(SERVICE_LEVELS)}")
        for zone, usd in self.zone_surcharge_usd.items():
            if isinstance(zone, bool) or not isinstance(zone, int) or not 1 <= zone <= ZONE_COUNT:
                raise ValueError(f"zone_surcharge_usd: zone {zone!r} is not a delivery zone 1..{ZONE_COUNT}")
            if not _number(usd) or usd < 0:
                raise ValueError(f"zone_surcharge_usd.{zone} must be a number >= 0, got {usd!r}")
        if not _number(self.round_up_to_usd) or not 0.01 <= self.round_up_to_usd <= 100:
            raise ValueError(f"round_up_to_usd must be a number in [0.01, 100], got {self.round_up_to_usd!r}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> ShippingPolicy:
        """The policy of a parsed file: every key of `KEYS` required, none other."""
        if not isinstance(data, dict):
            raise ShippingPolicyError(f"{source}: expected the keys {list(KEYS)}, got {type(data).__name__}")
        missing, unknown = [k for k in KEYS if k not in data], sorted(set(data) - set(KEYS))
        if missing or unknown:
            raise ShippingPolicyError(f"{source}: keys missing {missing}, unknown {unknown}; expected {list(KEYS)}")
        free = data["free_shipping"]
        if not isinstance(free, dict) or set(free) != set(FREE_SHIPPING_KEYS):
            raise ShippingPolicyError(f"{source}: free_shipping: expected the keys {list(FREE_SHIPPING_KEYS)}, "
                                      f"got {sorted(free) if isinstance(free, dict) else type(free).__name__}")
        for key in ("markup_pct", "zone_surcharge_usd"):
            if not isinstance(data[key], dict):
                raise ShippingPolicyError(f"{source}: {key}: expected a mapping, got {type(data[key]).__name__}")
        if not isinstance(free["service_levels"], list):
            raise ShippingPolicyError(f"{source}: free_shipping.service_levels: expected a list")
        try:
            return cls(version=data["version"], markup_pct=dict(data["markup_pct"]),
                       free_shipping_threshold_usd=free["threshold_usd"],
                       free_shipping_levels=tuple(free["service_levels"]),
                       zone_surcharge_usd=dict(data["zone_surcharge_usd"]), round_up_to_usd=data["round_up_to_usd"])
        except ValueError as err:
            raise ShippingPolicyError(f"{source}: {err}") from err

    def with_free_shipping_from(self, threshold_usd: float | None) -> ShippingPolicy:
        """This policy with another free-shipping threshold (an experiment variant's); the version says so."""
        if threshold_usd == self.free_shipping_threshold_usd:
            return self
        tag = "never" if threshold_usd is None else f"{threshold_usd:g}"
        return dataclasses.replace(self, version=f"{self.version}+free_from_{tag}",
                                   free_shipping_threshold_usd=threshold_usd)


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def shipping_charge(policy: ShippingPolicy, estimate_usd, service_level, zone, subtotal_usd) -> np.ndarray:
    """The shopper's charge in USD (module docstring), broadcasting its arguments: carrier estimates (USD),
    service levels (names), delivery zones (1..8) and basket subtotals (USD; NaN: unknown, never free)."""
    estimate, level, zone, subtotal = np.broadcast_arrays(
        np.asarray(estimate_usd, dtype=float), np.asarray(service_level, dtype=object),
        np.asarray(zone, dtype=np.int64), np.asarray(subtotal_usd, dtype=float))
    markup = np.array([policy.markup_pct[str(v)] for v in level.ravel()], dtype=float).reshape(level.shape)
    surcharge = np.array([policy.zone_surcharge_usd.get(int(z), 0.0) for z in zone.ravel()],
                         dtype=float).reshape(zone.shape)
    step = policy.round_up_to_usd
    raw = estimate * (1 + markup / 100) + surcharge
    charged = np.round(np.ceil(raw / step - _CEIL_TOLERANCE) * step, 2)
    threshold = policy.free_shipping_threshold_usd
    if threshold is None:
        return charged
    ships_free = np.isin(level.astype(str), policy.free_shipping_levels)
    with np.errstate(invalid="ignore"):
        free = ships_free & (subtotal >= threshold)
    return np.where(free, 0.0, charged)


@functools.cache
def read_shipping_policy(path: Path = SHIPPING_POLICY_FILE) -> ShippingPolicy:
    """The policy of the file at `path`; a ShippingPolicyError names the file and the bad key."""
    return ShippingPolicy.from_dict(yaml_document(path, ShippingPolicyError, "shipping policy"), str(path))


SHIPPING_POLICY = read_shipping_policy()
