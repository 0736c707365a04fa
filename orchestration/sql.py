"""`lakehouse sql`: a statement on the SQL endpoint through Spark Connect, its result as a table, JSON or CSV."""

from __future__ import annotations

import logging

import pandas as pd

from lakehouse.settings import Settings


class SqlError(ValueError):
    """The endpoint refused the statement (syntax, a missing table, ...): its error class and message."""


def run_sql(settings: Settings, statement: str) -> pd.DataFrame:
    """The statement's result from the running SQL endpoint (every row: the caller limits what it asks for)."""
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    # The client logs each refused statement with the server's stack trace; the caller reports it in one line.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    session = SparkSession.builder.remote(settings.spark_connect_url).getOrCreate()
    try:
        return session.sql(statement).toPandas()
    except PySparkException as error:
        # The first line names the error class and what is wrong; the rest is the server's stack trace.
        raise SqlError(str(error).strip().splitlines()[0]) from None


def render(frame: pd.DataFrame, form: str) -> str:
    """`table`: aligned columns for a person; `json`: a list of row objects (ISO dates); `csv`: with a header."""
    if form == "json":
        return frame.to_json(orient="records", date_format="iso", date_unit="s", indent=2)
    if form == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    return frame.to_string(index=False) if len(frame.columns) else "(no result)"
