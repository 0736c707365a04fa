"""Carrier rate cards, the zone chart and the true shipping cost function (vectorised).

A rate card version is an array `base[carrier, service, zone-1, break]` plus per-carrier per-kg,
fuel and remote surcharges; version 0 is effective from day 0, version 1 from the mid-history
rate change. The landing files `shipping_rates` / `shipping_zones` are renderings of these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lakehouse.reference import CARRIERS, ZONE_COUNT
from simulator.config import VOLUMETRIC_DIVISOR, WEIGHT_BREAKS_KG, ModelParams

# Warehouse location (postal prefix) that zones are measured from, and the width of a zone band.
ORIGIN_PREFIX = 76
ZONE_BAND = 115
# Alaska, Hawaii and Puerto Rico prefixes: zone 8 and a remote-area surcharge.
REMOTE_PREFIXES = (*range(6, 10), 967, 968, *range(995, 1000))
VALID_PREFIXES = np.arange(5, 1000)


@dataclass(frozen=True)
class RateCard:
    """One version of every carrier's rates; all money in USD."""

    effective_day: int
    base: np.ndarray  # [carrier, service, zone-1, break]
    per_kg_over: np.ndarray  # [carrier, service]
    fuel_pct: np.ndarray  # [carrier]
    remote_surcharge: np.ndarray  # [carrier]


def zone_chart() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prefix, zone, is_remote) for every valid 3-digit postal prefix."""
    zones = 1 + np.minimum(ZONE_COUNT - 1, np.abs(VALID_PREFIXES - ORIGIN_PREFIX) // ZONE_BAND)
    remote = np.isin(VALID_PREFIXES, REMOTE_PREFIXES)
    return VALID_PREFIXES, np.where(remote, ZONE_COUNT, zones), remote


def build_rate_cards(rng: np.random.Generator, params: ModelParams, change_day: int) -> list[RateCard]:
    """The initial rate card and the one after the general rate increase on `change_day`."""
    n_carriers, breaks = len(CARRIERS), np.asarray(WEIGHT_BREAKS_KG)
    fixed = rng.uniform(4.0, 6.5, n_carriers)
    per_zone = rng.uniform(0.45, 0.9, n_carriers)
    per_kg = rng.uniform(0.9, 1.5, n_carriers)
    express = np.array([1.0, 1.85])
    zones = np.arange(1, ZONE_COUNT + 1)
    # Concave in weight (volume discount), linear in zone distance.
    base = (fixed[:, None, None, None] + per_zone[:, None, None, None] * zones[None, None, :, None]
            + per_kg[:, None, None, None] * breaks[None, None, None, :] ** 0.85
            * (1 + 0.08 * zones[None, None, :, None])) * express[None, :, None, None]
    per_kg_over = per_kg[:, None] * express[None, :] * 1.1
    fuel = rng.uniform(8.0, 12.0, n_carriers).round(1)
    remote = rng.uniform(12.0, 18.0, n_carriers).round(2)
    first = RateCard(0, base.round(2), per_kg_over.round(2), fuel, remote)
    up = 1 + params.rate_increase
    second = RateCard(change_day, (base * up).round(2), (per_kg_over * up).round(2),
                      (fuel + params.fuel_increase_pct).round(1), remote)
    return [first, second]


def billable_weight_kg(weight_kg: np.ndarray, volume_cm3: np.ndarray, carrier: np.ndarray) -> np.ndarray:
    """max(actual kg, volumetric kg) where volumetric kg = volume cm3 / the carrier's divisor."""
    return np.maximum(weight_kg, volume_cm3 / np.asarray(VOLUMETRIC_DIVISOR)[carrier])


def rate_card_cost(cards: list[RateCard], day: np.ndarray, carrier: np.ndarray, service: np.ndarray,
                   zone: np.ndarray, billable_kg: np.ndarray, remote: np.ndarray) -> np.ndarray:
    """Rate-card price in USD of each shipment (arrays broadcast together; integer indexes)."""
    day, carrier, service, zone, billable_kg, remote = np.broadcast_arrays(
        day, carrier, service, zone, billable_kg, remote)
    effective = np.array([c.effective_day for c in cards])
    version = np.searchsorted(effective, day, side="right") - 1
    breaks = np.asarray(WEIGHT_BREAKS_KG)
    brk = np.minimum(np.searchsorted(breaks, billable_kg, side="left"), len(breaks) - 1)
    over = np.maximum(0.0, billable_kg - breaks[-1])
    cost = np.empty(day.shape)
    for v, card in enumerate(cards):  # a handful of versions, each vectorised
        m = version == v
        base = card.base[carrier[m], service[m], zone[m] - 1, brk[m]]
        cost[m] = ((base + card.per_kg_over[carrier[m], service[m]] * over[m])
                   * (1 + card.fuel_pct[carrier[m]] / 100)
                   + np.where(remote[m], card.remote_surcharge[carrier[m]], 0.0))
    return cost
