"""Business rules, each stated once: its parameters and formula, for the Spark path and the in-memory API path.

A rule whose arithmetic both engines share is one function over operators that Spark Columns and numpy
arrays both have (`volumetric_weight_kg`, `rate_card_price`). Otherwise the rule's plain Python/numpy
form is here and its Spark `Column` form sits with the Spark code that uses it, built from the constants
here: `transforms.standardize.zip5`, `features.shipping.billable_weight_kg`, `weight_break` and
`rate_card_cost_usd`. tests/transforms/test_rules.py checks that the two forms agree.

No pyspark here: the API's Delta reader process imports this module (through serving.online_features)
and must stay free of Spark.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np

# --- ZIP normalisation --------------------------------------------------------------------------------
# A US ZIP as customers type it (`02139`, `2139` with the leading zero lost, ` 02139-1234`): its 1-5
# digits (group 1), left-padded with ZIP_PAD to ZIP_LENGTH; anything else is not a ZIP (null / None).
# Java's regex engine (Spark) and Python's (with re.ASCII) read this pattern alike. `$` would differ:
# Java's also matches before one final U+0085, U+2028 or U+2029, which silver has always accepted, so that
# character is allowed explicitly and the end of the text is a lookahead.
ZIP_PATTERN = r"^\s*(\d{1,5})(?:-\d{4})?\s*[\u0085\u2028\u2029]?(?![\s\S])"
ZIP_LENGTH = 5
ZIP_PAD = "0"
# Java's \s and \d are ASCII-only; without re.ASCII Python's would take a no-break space or Arabic digits.
_ZIP = re.compile(ZIP_PATTERN, re.ASCII)


def zip5(postal_code: str | None) -> str | None:
    """The 5-digit ZIP of a postal code as typed, or None if it is not one."""
    match = _ZIP.match(postal_code) if postal_code is not None else None
    return match.group(1).rjust(ZIP_LENGTH, ZIP_PAD) if match else None


# --- Billable weight ----------------------------------------------------------------------------------
# A carrier bills the heavier of the parcel's actual weight and its volumetric (dimensional) weight,
# volume in cm3 / the carrier's volumetric divisor in cm3 per kg. Unknown in, unknown out: Spark's null,
# numpy's NaN.


def volumetric_weight_kg(volume_cm3, divisor):
    """Volume in cm3 / the volumetric divisor (cm3 per kg): Columns, numpy arrays or numbers alike."""
    return volume_cm3 / divisor


def billable_weight_kg(actual_kg, volumetric_kg):
    """The heavier of actual and volumetric weight; NaN if either is NaN. numpy arrays or numbers."""
    return np.maximum(actual_kg, volumetric_kg)


# --- Rate-card cost -----------------------------------------------------------------------------------
# A rate card (carrier, service level, zone) has weight breaks ascending, each with a base rate; a parcel
# is priced at the smallest break >= its billable weight, else at the largest. Its cost is
#   (base rate of the break + per-kg rate x kg above the largest break) x (1 + fuel surcharge % / 100)
#   + the remote surcharge if the address is remote.


def rate_card_price(base_rate_usd, over_kg, per_kg_over_usd, fuel_surcharge_pct, remote_usd):
    """The cost formula's arithmetic, given the kg above the largest break and the remote surcharge due:
    Columns, numpy arrays or numbers alike."""
    return (base_rate_usd + per_kg_over_usd * over_kg) * (1 + fuel_surcharge_pct / 100) + remote_usd


def weight_break_index(breaks_kg: np.ndarray, billable_kg) -> np.ndarray:
    """Position in `breaks_kg` (ascending) of the break a billable weight is priced at; the largest for NaN."""
    return np.minimum(np.searchsorted(breaks_kg, billable_kg, side="left"), len(breaks_kg) - 1)


def rate_card_cost_usd(base_rate_usd, largest_break_kg, billable_kg, per_kg_over_usd, fuel_surcharge_pct,
                       remote_surcharge_usd, is_remote):
    """The rate-card cost at the break's base rate (`weight_break_index`); is_remote boolean. numpy arrays or
    numbers; NaN if a number is NaN."""
    over_kg = np.maximum(0.0, billable_kg - largest_break_kg)
    return rate_card_price(base_rate_usd, over_kg, per_kg_over_usd, fuel_surcharge_pct,
                           np.where(is_remote, remote_surcharge_usd, 0.0))


# --- Holdout ------------------------------------------------------------------------------------------
# Models are fitted on every date before the holdout and scored on it; training reads the holdout and
# monitoring the window before it. Two whole weeks, so that every weekday (demand is weekly) weighs alike.
HOLDOUT_DAYS = 14


def holdout_start(newest: date, days: int = HOLDOUT_DAYS) -> date:
    """The holdout's first date: the holdout is the last `days` dates up to `newest`, both included.
    Works for dates and pandas Timestamps."""
    return newest - timedelta(days=days - 1)
