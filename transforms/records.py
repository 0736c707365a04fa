"""Pure transforms from landing records to bronze rows: conform to the declared schema, or quarantine.

Every landing format is first brought to one shape, a *record*: `_fields` (map of column name to the
value as text, exactly the fields the source sent), `_raw` (the record as received) and `_raw_encoding`
(null: `_raw` is the text received; `base64`: the bytes were not UTF-8, `_raw` holds them in base64;
`base64_values`: a columnar row's fields as JSON, each value in base64),
`_parse_error` (why the record could not be parsed at all, else null) and `_source_file`. `conform` then
casts the declared columns, keeps unexpected fields in `_rescued_data` and names every defect in `_error`.

Bytes that are not UTF-8 never reach a string column: Spark stores them as they came, and every
Arrow-based reader (delta-rs, DuckDB, pandas) then fails on the whole table.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import MapType, StringType, StructType

from lakehouse.sources import INGEST_DATE_PARTITIONS

LINEAGE_COLUMNS = ("_source_file", "_batch_id", "_ingested_at", "ingest_date")
_TEXT_MAP = MapType(StringType(), StringType())


def utf8_or_base64(value: Column) -> tuple[Column, Column]:
    """(text, encoding) of a string or binary column: the text when its bytes are UTF-8 (encoding null),
    else the bytes in base64 (encoding `base64`). Null stays null."""
    text = value.cast("string")
    utf8 = F.is_valid_utf8(text)
    return (F.when(utf8, text).otherwise(F.base64(value.cast("binary"))),
            F.when(~utf8, F.lit("base64")))


def records_from_json_lines(lines: DataFrame, passthrough: tuple[str, ...] = ()) -> DataFrame:
    """JSON lines (`value`, string or binary, and `_source_file`) -> records, with the `passthrough` columns
    as they are; a line that is not a JSON object fails to parse, and so does one that is not UTF-8 or has
    no value (a Kafka tombstone). Grain: one row per line.
    """
    raw, encoding = utf8_or_base64(F.col("value"))
    fields = F.when(encoding.isNull(), F.from_json(F.col("value").cast("string"), _TEXT_MAP))
    return lines.select(
        fields.alias("_fields"),
        raw.alias("_raw"),
        encoding.alias("_raw_encoding"),
        F.when(F.col("value").isNull(), F.lit("no_value"))
        .when(encoding.isNotNull(), F.lit("not_utf8"))
        .when(fields.isNull(), F.lit("malformed_json")).alias("_parse_error"),
        "_source_file",
        *passthrough,
    )


def records_from_columns(rows: DataFrame, columns: list[str], corrupt_column: str | None = None) -> DataFrame:
    """Columnar rows (CSV read as text columns, or Parquet) -> records. Grain: one row per input row.

    `columns` are the fields the file really has (its header or Parquet schema). A CSV line whose
    number of fields differs from the header arrives with the raw line in `corrupt_column`. A row with a
    field that is not UTF-8 (a Parquet string can hold any bytes; the CSV reader decodes its input) is
    `not_utf8`, its `_raw` the fields as JSON with each value in base64 (`_raw_encoding` `base64_values`).
    """
    values = [F.col(f"`{c}`").cast("string") for c in columns]
    names = F.array(*[F.lit(c) for c in columns])
    fields = F.map_from_arrays(names, F.array(*values))
    utf8 = reduce(lambda a, b: a & b, [F.coalesce(F.is_valid_utf8(v), F.lit(True)) for v in values], F.lit(True))
    encoded = F.to_json(F.map_from_arrays(names, F.array(*[F.base64(v.cast("binary")) for v in values])))
    corrupt = F.col(corrupt_column) if corrupt_column else F.lit(None).cast("string")
    return rows.select(
        F.when(corrupt.isNull() & utf8, fields).alias("_fields"),
        F.coalesce(corrupt, F.when(utf8, F.to_json(fields)).otherwise(encoded)).alias("_raw"),
        F.when(corrupt.isNull() & ~utf8, F.lit("base64_values")).alias("_raw_encoding"),
        F.when(corrupt.isNotNull(), F.lit("malformed_csv: wrong number of fields"))
        .when(~utf8, F.lit("not_utf8")).alias("_parse_error"),
        "_source_file",
    )


def conform(records: DataFrame, schema: StructType, required: tuple[str, ...],
            passthrough: tuple[str, ...] = ()) -> DataFrame:
    """Records -> the declared columns, typed, plus `_rescued_data`, `_error`, `_raw`, `_raw_encoding`,
    `_source_file` and the `passthrough` columns as they are.

    `_rescued_data` holds the fields the schema does not declare, as a JSON object (null when none).
    `_error` is null for a good record, else the reasons joined by "; ": the parse error, the columns
    whose value does not cast to the declared type, the required columns that are missing.
    Grain: one row per record.
    """
    declared = schema.fieldNames()
    sent = {name: F.col("_fields")[name] for name in declared}
    # Text columns keep the value as sent: only the other columns are cast, so only they can mismatch.
    cast = [f for f in schema.fields if f.dataType != StringType()]
    typed = {**sent, **{f.name: sent[f.name].try_cast(f.dataType) for f in cast}}

    mistyped = [F.when(sent[f.name].isNotNull() & (F.trim(sent[f.name]) != "") & typed[f.name].isNull(),
                       F.lit(f.name)) for f in cast]
    missing = [F.when(typed[n].isNull(), F.lit(n)) for n in required]
    undeclared = F.array_except(F.map_keys("_fields"), F.array(*[F.lit(n) for n in declared]))
    # Higher-order functions (map_filter) run interpreted, with all their inputs: only records that do
    # have undeclared fields pay for it. Per-record cost matters: streaming conforms every message.
    unexpected = F.map_filter("_fields", lambda k, _: ~k.isin(declared))

    return records.select(
        *[typed[n].alias(n) for n in declared],
        F.when(F.size(undeclared) > 0, F.to_json(unexpected)).alias("_rescued_data"),
        F.when(F.col("_parse_error").isNotNull(), F.col("_parse_error"))
        .otherwise(_join_reasons(_listed("type_mismatch", mistyped), _listed("missing_required", missing)))
        .alias("_error"),
        "_raw",
        "_raw_encoding",
        "_source_file",
        *passthrough,
    )


def _listed(label: str, names: list[Column]) -> Column:
    # concat_ws skips the nulls (columns without the defect); array_compact would be a higher-order
    # function, evaluated interpreted with the casts inside it a second time (twice the cost of conform).
    joined = F.concat_ws(", ", *names)
    return F.when(joined != "", F.concat(F.lit(f"{label}: "), joined))


def _join_reasons(*reasons: Column) -> Column:
    joined = F.concat_ws("; ", *reasons)
    return F.when(joined != "", joined)


def with_lineage(frame: DataFrame, ingest_date: Column | date, batch_id: str, ingested_at: datetime) -> DataFrame:
    """Add the lineage columns and the ingestion-date partition columns (year, month, day)."""
    day = ingest_date if isinstance(ingest_date, Column) else F.lit(ingest_date)
    return frame.withColumns({
        "_batch_id": F.lit(batch_id),
        "_ingested_at": F.lit(ingested_at).cast("timestamp"),
        "ingest_date": day.cast("date"),
    }).withColumns({
        "ingest_year": F.year("ingest_date"),
        "ingest_month": F.month("ingest_date"),
        "ingest_day": F.dayofmonth("ingest_date"),
    })


def bronze_rows(conformed: DataFrame, schema: StructType, passthrough: tuple[str, ...] = ()) -> DataFrame:
    """The good records: declared columns, `_rescued_data`, lineage and the `passthrough` columns. Grain: one
    row per good record."""
    return conformed.where(F.col("_error").isNull()).select(
        *schema.fieldNames(), "_rescued_data", *LINEAGE_COLUMNS, *INGEST_DATE_PARTITIONS, *passthrough
    )


def quarantine_rows(conformed: DataFrame, source: str, passthrough: tuple[str, ...] = ()) -> DataFrame:
    """The bad records, raw as received (`raw_encoding` `base64` when the bytes were not UTF-8), with the
    reason, lineage and the `passthrough` columns. Grain: one row per bad record."""
    return conformed.where(F.col("_error").isNotNull()).select(
        F.lit(source).alias("source"),
        F.col("_raw").alias("raw"),
        F.col("_raw_encoding").alias("raw_encoding"),
        F.col("_error").alias("reason"),
        *LINEAGE_COLUMNS,
        *INGEST_DATE_PARTITIONS,
        *passthrough,
    )
