"""Rate sheets: validation, reason by reason, and the sheet in force by effective date."""

from datetime import date

import pandas as pd

from transforms.rate_sheets import in_force, sheet_defects

MAY, JUNE = date(2026, 5, 1), date(2026, 6, 1)


def sheet(carrier="northpost", level="standard", effective=MAY, changes=None) -> pd.DataFrame:
    """A valid sheet: zones 1..8 at breaks 0.5 and 1 kg, base = zone + break."""
    rows = pd.DataFrame([
        {"carrier": carrier, "service_level": level, "zone": zone, "weight_break_kg": brk,
         "base_rate": zone + brk, "per_kg_over": 1.2, "volumetric_divisor": 5000, "fuel_surcharge_pct": 9.5,
         "remote_surcharge": 14.0, "currency": "USD", "effective_from": effective, "_error": None}
        for zone in range(1, 9) for brk in (0.5, 1.0)])
    for (row, column), value in (changes or {}).items():
        rows.loc[row, column] = value
    return rows


def test_a_valid_sheet_has_no_defect():
    assert sheet_defects(sheet()) == []
    assert sheet_defects(pd.concat([sheet(), sheet(level="express")], ignore_index=True)) == []


def test_each_defect_is_named():
    bad = sheet(changes={(0, "base_rate"): 9.0,  # zone 1: 9.0 at 0.5 kg, then 2.0 at 1 kg
                         (3, "fuel_surcharge_pct"): 120.0, (5, "service_level"): "overnight",
                         (6, "effective_from"): JUNE})
    assert sheet_defects(bad) == [
        "effective_from: one date per sheet, got 2026-05-01, 2026-06-01",
        "service_level_unknown: overnight",
        "fuel_surcharge_pct_out_of_range: 1 rows",
        # Row 5 (zone 3, 1 kg) moved to a service level of its own: it misses zones, standard's zone 3 a break.
        "zones_missing: northpost/overnight: 1, 2, 4, 5, 6, 7, 8",
        "weight_breaks_differ: northpost/standard",
        "base_rate_falls_with_weight: northpost/standard zones 1",
        "card_rates_differ: northpost/standard: fuel_surcharge_pct",
    ]


def test_missing_zones_duplicates_uneven_breaks_and_unreadable_rows():
    rows = sheet()
    rows = pd.concat([rows.loc[rows["zone"] != 8], rows.iloc[[0]]], ignore_index=True)
    rows.loc[2, "weight_break_kg"] = 0.75  # zone 2: 0.75 and 1 kg
    rows.loc[len(rows)] = {**rows.iloc[1].to_dict(), "zone": None, "_error": "malformed_csv: wrong number of fields"}
    assert sheet_defects(rows) == [
        "unreadable_rows: 1",
        "duplicate_rows: 2",
        "zones_missing: northpost/standard: 8",
        "weight_breaks_differ: northpost/standard",
    ]


def test_a_sheet_of_nothing_readable_is_refused():
    rows = sheet().assign(_error="malformed_csv: wrong number of fields")
    assert sheet_defects(rows) == ["unreadable_rows: 16"]
    assert sheet_defects(sheet().iloc[:0]) == ["empty_sheet"]


def test_the_sheet_in_force_is_each_carriers_latest_effective_on_or_before_the_day():
    may, june = sheet(effective=MAY), sheet(effective=JUNE).assign(base_rate=lambda f: f["base_rate"] + 1)
    other = sheet(carrier="bluefreight", effective=MAY)
    rates = pd.concat([may, june, other], ignore_index=True)
    pd.testing.assert_frame_equal(in_force(rates, date(2026, 5, 31)), pd.concat([may, other], ignore_index=True))
    # June's sheet replaces northpost's May sheet from June 1; bluefreight's May sheet stays in force.
    pd.testing.assert_frame_equal(in_force(rates, JUNE), pd.concat([june, other], ignore_index=True))
    assert in_force(rates, date(2026, 4, 30)).empty
