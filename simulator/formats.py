"""Vectorised rendering of identifiers, timestamps and messy source formats (numpy string ufuncs).

Every function maps arrays to arrays of Python-compatible strings; none loops per row in Python.
"""

from __future__ import annotations

from datetime import date

import numpy as np

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DASHES = (8, 13, 18, 23)


def zfill(values: np.ndarray, width: int) -> np.ndarray:
    digits = np.asarray(values).astype(np.int64).astype(str)
    return np.strings.zfill(digits, width) if digits.size else digits  # zfill fails on empty arrays


def concat(*parts) -> np.ndarray:
    out = parts[0]
    for part in parts[1:]:
        out = np.strings.add(out, part)
    return np.asarray(out)


def uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random version-4 UUID strings, reproducible from the generator's state."""
    nibbles = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    nibbles[:, 12] = 4  # version 4
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)  # RFC 4122 variant
    chars = np.empty((n, 36), dtype=np.uint8)
    body = np.ones(36, dtype=bool)
    body[list(_UUID_DASHES)] = False
    chars[:, body] = _HEX[nibbles]
    chars[:, ~body] = ord("-")
    return chars.view("S36").ravel().astype(str)


def sku_canonical(numbers: np.ndarray) -> np.ndarray:
    return concat("SKU-", zfill(numbers, 6))


def sku_messy(numbers: np.ndarray, rng: np.random.Generator, dirty_share: float) -> np.ndarray:
    """SKUs as a sloppy source writes them: canonical `SKU-000123` or one of four dirty spellings."""
    digits = zfill(numbers, 6)
    forms = [
        concat("SKU-", digits),
        concat("sku", digits),
        concat("SKU_", np.asarray(numbers).astype(np.int64).astype(str)),
        concat(" ", digits, " "),
        concat("Sku-", digits),
    ]
    dirty = rng.random(len(digits)) < dirty_share
    which = np.where(dirty, rng.integers(1, len(forms), len(digits)), 0)
    return np.choose(which, forms)


def postal_messy(zip5: np.ndarray, plus4: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """US ZIP codes as typed: `02139`, leading zero lost `2139`, ZIP+4 with stray spaces."""
    zip5 = np.asarray(zip5)
    full = concat(zip5, "-", zfill(plus4, 4))
    forms = [zip5, np.strings.lstrip(zip5, "0"), concat(" ", full), full]
    which = rng.choice(len(forms), size=len(zip5), p=[0.7, 0.1, 0.1, 0.1])
    return np.choose(which, forms)


def iso_with_offset(day: date, seconds: np.ndarray, offset_minutes: np.ndarray) -> np.ndarray:
    """ISO-8601 local times with a `+HH:MM` offset for UTC instants `day + seconds` (ms precision)."""
    utc = np.datetime64(day, "ms") + np.round(np.asarray(seconds) * 1000).astype("timedelta64[ms]")
    offset_minutes = np.asarray(offset_minutes, dtype=np.int64)
    local = utc + offset_minutes.astype("timedelta64[m]")
    sign = np.where(offset_minutes < 0, "-", "+")
    hours, minutes = np.divmod(np.abs(offset_minutes), 60)
    return concat(np.datetime_as_string(local, unit="ms"), sign, zfill(hours, 2), ":", zfill(minutes, 2))


def money(values: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(values, dtype=float), 2)
