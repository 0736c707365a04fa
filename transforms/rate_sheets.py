"""Carriers' rate sheets: what makes one valid, and which sheet is in force on a day.

A rate sheet is one landing file of the `shipping_rates` source (its format: docs/ingestion.md, "Rate
sheets"): one row per carrier, service level, zone and weight break, with the sheet's effective date. A sheet
is taken or refused whole: a sheet with any defect is quarantined, every row of it with its reasons
(`sheet_defects`), so that the sheet in force stays in force rather than half of a new one mixing with it.

A carrier's sheet takes effect on its `effective_from`, per carrier and service level (`in_force`): the API's
rate cards (`serving.online_features.rate_cards`) and batch scoring (`spark_jobs.score`) both choose by it.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from lakehouse import reference

SHEET_KEY = ("carrier", "service_level", "zone", "weight_break_kg")
# The rates of a whole card: one value per carrier and service level on every row of the sheet.
CARD_CONSTANTS = ("per_kg_over", "volumetric_divisor", "fuel_surcharge_pct", "remote_surcharge", "currency")


def _names(values) -> str:
    return ", ".join(sorted(str(v) for v in values))


def sheet_defects(sheet: pd.DataFrame) -> list[str]:
    """Every defect of one rate sheet, each a named reason; empty: valid.

    `sheet`: the sheet's records as ingestion conformed them, the `shipping_rates` landing columns plus `_error`
    (null for a row that parsed). A sheet must parse whole, have one effective date, known carriers,
    service levels and currencies, price every zone 1..ZONE_COUNT of each carrier and service level at the same
    weight breaks, once each, with non-negative money, a fuel surcharge in 0..100 %, a positive divisor,
    base rates that never fall as weight rises, and one value of each card-wide rate per carrier and service.
    """
    defects = []
    unreadable = int(sheet["_error"].notna().sum())
    if unreadable:
        defects.append(f"unreadable_rows: {unreadable}")
    rows = sheet.loc[sheet["_error"].isna()]
    if rows.empty:
        return defects or ["empty_sheet"]
    dates = set(rows["effective_from"].dropna())
    if len(dates) != 1 or rows["effective_from"].isna().any():
        defects.append(f"effective_from: one date per sheet, got {_names(dates) or 'none'}"
                       + (" and blanks" if rows["effective_from"].isna().any() and dates else ""))
    for column, known in (("carrier", reference.CARRIERS), ("service_level", reference.SERVICE_LEVELS),
                          ("currency", reference.CURRENCIES)):
        unknown = set(rows[column].dropna()) - set(known)
        if unknown or rows[column].isna().any():
            defects.append(f"{column}_unknown: {_names(unknown | ({'blank'} if rows[column].isna().any() else set()))}")
    for column, low, high, strict in (("weight_break_kg", 0, None, True), ("base_rate", 0, None, False),
                                      ("per_kg_over", 0, None, False), ("remote_surcharge", 0, None, False),
                                      ("fuel_surcharge_pct", 0, 100, False), ("volumetric_divisor", 0, None, True),
                                      ("zone", 1, reference.ZONE_COUNT, False)):
        values = rows[column]
        bad = values.isna() | ((values <= low) if strict else (values < low))
        if high is not None:
            bad |= values > high
        if bad.any():
            defects.append(f"{column}_out_of_range: {int(bad.sum())} rows")
    duplicated = rows.duplicated(list(SHEET_KEY), keep=False)
    if duplicated.any():
        defects.append(f"duplicate_rows: {int(duplicated.sum())}")
    zones = set(range(1, reference.ZONE_COUNT + 1))
    for (carrier, level), card in rows.groupby(["carrier", "service_level"], sort=True):
        name = f"{carrier}/{level}"
        missing = zones - set(card["zone"].dropna().astype(int))
        if missing:
            defects.append(f"zones_missing: {name}: {_names(missing)}")
        breaks = {z: tuple(sorted(g["weight_break_kg"])) for z, g in card.groupby("zone")}
        if len(set(breaks.values())) > 1:
            defects.append(f"weight_breaks_differ: {name}")
        falling = [int(z) for z, g in card.groupby("zone")
                   if (g.sort_values("weight_break_kg")["base_rate"].diff() < 0).any()]
        if falling:
            defects.append(f"base_rate_falls_with_weight: {name} zones {_names(falling)}")
        varying = [c for c in CARD_CONSTANTS if card[c].nunique(dropna=False) > 1]
        if varying:
            defects.append(f"card_rates_differ: {name}: {', '.join(varying)}")
    return defects


def in_force(rates: pd.DataFrame, day: date) -> pd.DataFrame:
    """The rows of the sheet in force on `day` for each carrier and service level: those of its latest
    `effective_from` on or before `day` (a later sheet replaces an earlier one whole). Grain: as `rates`."""
    current = rates.loc[rates["effective_from"].notna() & (rates["effective_from"] <= day)]
    latest = current.groupby(["carrier", "service_level"])["effective_from"].transform("max")
    return current.loc[current["effective_from"] == latest].reset_index(drop=True)


# Landing sources whose files are documents taken or refused whole (spark_jobs.ingest): the check per source.
FILE_CHECKS = {"shipping_rates": sheet_defects}
