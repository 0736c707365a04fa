"""Writes one landing file per source and ingest date in the source's format, from the landing schema.

Column order, types and format come from the source's declaration (`lakehouse.sources`); columns a
source adds mid-history are appended after the declared ones. Rows flagged `_corrupt` are damaged in the
rendered text: a JSON line is truncated, a CSV line loses its last two fields.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import BooleanType, IntegerType, LongType, StructType

from lakehouse.sources import LANDING_SOURCES


def landing_path(root: Path, source: str, ingest_date: str) -> Path:
    return root / source / f"ingest_date={ingest_date}" / f"part-00000.{LANDING_SOURCES[source].landing_format}"


def _typed(df: pd.DataFrame, schema: StructType, extras: list[str]) -> pd.DataFrame:
    """The declared columns in order, integer columns as nullable ints, then the extra columns."""
    out = df[schema.fieldNames() + extras].copy()
    for field in schema.fields:
        if isinstance(field.dataType, IntegerType | LongType):
            out[field.name] = out[field.name].astype("Int64")
    return out


def write_landing_file(rows: pd.DataFrame, source: str, root: Path, ingest_date: str,
                       rng: np.random.Generator) -> Path:
    """Write `rows` (landing columns plus flag columns) to the source's file for `ingest_date`."""
    declared = LANDING_SOURCES[source]
    schema, fmt = declared.landing, declared.landing_format
    extras = [c for c in declared.late_columns if c in rows]
    df = _typed(rows, schema, extras)
    path = landing_path(root, source, ingest_date)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pandas(df, schema=to_arrow_schema(schema), preserve_index=False), path)
        return path
    if fmt == "csv":
        for field in schema.fields:
            if isinstance(field.dataType, BooleanType):  # Spark and most tools expect lower case
                df[field.name] = df[field.name].map({True: "true", False: "false"})
        text = df.to_csv(index=False, lineterminator="\n")
        header = 1
    else:
        # One JSON array, split into lines at object boundaries: rows are flat and no value contains
        # braces, so "},{" only occurs between rows (pandas' own lines=True is 3x slower).
        text = df.to_json(orient="records", force_ascii=False)[1:-1].replace("},{", "}\n{") + "\n"
        header = 0
    corrupt = rows["_corrupt"].to_numpy() if "_corrupt" in rows else np.zeros(len(rows), dtype=bool)
    path.write_text(_corrupt_lines(text, np.flatnonzero(corrupt) + header, fmt, rng), encoding="utf-8")
    return path


def _corrupt_lines(text: str, line_numbers: np.ndarray, fmt: str, rng: np.random.Generator) -> str:
    if len(line_numbers) == 0:
        return text
    lines = text.split("\n")
    for i in line_numbers:  # a handful per file (rate ~0.05%)
        line = lines[i]
        if fmt == "csv":  # two fields short: wrong against the header and the declared schema alike
            lines[i] = line.rsplit(",", 2)[0]
        else:  # any strict prefix of a JSON object is invalid JSON
            lines[i] = line[: int(rng.integers(1, len(line) - 1))]
    return "\n".join(lines)
