"""Injects realistic defects into a day's clean rows and schedules the rows to landing files.

Per row, at most one of: a null in one non-key column, an out-of-range value, or a corrupt line
(rendered by the writer). Independently, event rows may arrive late (1..max_delay days) and any
non-corrupt row may be sent twice: the copy lands in the same file or, for events, re-sent in a
later file. Copies are exact and are counted only as duplicates; keys are never nulled. The flag
columns (`_land_day`, `_dup`, ...) drive the writers and the exact counts of the dirt manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulator.config import DirtRates

MANIFEST_KEYS = {"_dup": "duplicates", "_late": "late_arrivals", "_null": "nulls",
                 "_oor": "out_of_range", "_corrupt": "corrupt_lines"}


@dataclass(frozen=True)
class DirtSpec:
    """Which defects a source can carry and where."""

    key: tuple[str, ...]
    null_columns: tuple[str, ...]  # never null in clean data
    out_of_range: tuple[tuple[str, str], ...]  # (column, "negative" | "zero")
    corrupt: bool  # text formats only: Parquet files are written whole or not at all
    events: bool  # late arrivals and duplicates re-sent in a later file


DIRT_SPECS: dict[str, DirtSpec] = {
    "products": DirtSpec(("sku",), ("product_name", "brand", "weight", "length", "list_price"),
                         (("weight", "zero"), ("list_price", "negative")), corrupt=True, events=False),
    "suppliers": DirtSpec(("supplier_id", "sku", "valid_from"), ("supplier_name", "lead_time_days"),
                          (("unit_cost", "negative"),), corrupt=True, events=False),
    "market_prices": DirtSpec(("sku", "competitor", "observed_at"), ("price",),
                              (("price", "negative"),), corrupt=False, events=False),
    "customers": DirtSpec(("customer_id",), ("city", "region", "segment"), (), corrupt=True, events=False),
    "transactions": DirtSpec(("order_id", "line_number"),
                             ("unit_price_paid", "postal_code", "carrier", "shipping_charged"),
                             (("quantity", "negative"), ("unit_price_paid", "negative")),
                             corrupt=True, events=True),
    "clickstream": DirtSpec(("event_id",), ("price_shown", "device", "referrer"),
                            (("price_shown", "negative"),), corrupt=True, events=True),
}


def apply_dirt(df: pd.DataFrame, spec: DirtSpec, rates: DirtRates, rng: np.random.Generator,
               day: int, last_day: int) -> pd.DataFrame:
    """The day's rows with defects applied, duplicate copies appended, and flag columns added.

    Grain: one row per line to write; `_land_day` is the ingest date index of the file it goes to.
    """
    n = len(df)
    df = df.copy()
    p_kind = [rates.null, rates.out_of_range if spec.out_of_range else 0.0, rates.corrupt if spec.corrupt else 0.0]
    kind = rng.choice(4, n, p=[1 - sum(p_kind), *p_kind])
    df["_null"], df["_oor"], df["_corrupt"] = kind == 1, kind == 2, kind == 3
    df["_null_col"] = _set_nulls(df, spec.null_columns, df["_null"].to_numpy(), rng)
    df["_oor_col"] = _set_out_of_range(df, spec.out_of_range, df["_oor"].to_numpy(), rng)

    ok = ~df["_corrupt"].to_numpy()
    delay = rng.integers(1, rates.max_delay_days + 1, n)
    land = np.minimum(day + delay, last_day) if spec.events else np.full(n, day)
    late = spec.events & ok & (rng.random(n) < rates.late) & (land > day)
    df["_land_day"] = np.where(late, land, day)
    df["_late"] = late
    df["_dup"] = False

    dup = ok & (rng.random(n) < rates.duplicate)
    copies = df[dup].copy()
    resend = spec.events & (rng.random(len(copies)) < rates.duplicate_later_share)
    copy_delay = rng.integers(1, rates.max_delay_days + 1, len(copies))
    copies["_land_day"] = np.where(resend, np.minimum(copies["_land_day"] + copy_delay, last_day),
                                   copies["_land_day"])
    copies[["_null", "_oor", "_late"]] = False
    copies["_dup"] = True
    copies[["_null_col", "_oor_col"]] = None
    return pd.concat([df, copies], ignore_index=True)


def _set_nulls(df: pd.DataFrame, columns: tuple[str, ...], mask: np.ndarray, rng) -> np.ndarray:
    which = rng.integers(0, len(columns), len(df))
    for j, column in enumerate(columns):
        rows = mask & (which == j)
        if rows.any():
            if pd.api.types.is_integer_dtype(df[column]):
                df[column] = df[column].astype("Int64")
            df.loc[rows, column] = None
    return np.where(mask, np.asarray(columns)[which], None)


def _set_out_of_range(df: pd.DataFrame, rules: tuple[tuple[str, str], ...], mask: np.ndarray,
                      rng) -> np.ndarray:
    if not rules:
        return np.full(len(df), None)
    which = rng.integers(0, len(rules), len(df))
    for j, (column, how) in enumerate(rules):
        rows = mask & (which == j)
        value = df.loc[rows, column]
        df.loc[rows, column] = 0 if how == "zero" else -value.abs().where(value != 0, 1)
    return np.where(mask, np.asarray([c for c, _ in rules])[which], None)


def manifest_counts(rows: pd.DataFrame) -> dict:
    """Exact defect counts of one landing file, from the flags of the rows written to it."""
    counts = {"rows": len(rows)}
    for flag, name in MANIFEST_KEYS.items():
        counts[name] = int(rows[flag].sum()) if flag in rows else 0
    for col_flag, name in (("_null_col", "nulls_by_column"), ("_oor_col", "out_of_range_by_column")):
        if col_flag in rows:
            counts[name] = {str(k): int(v) for k, v in rows[col_flag].dropna().value_counts().sort_index().items()}
    return counts
