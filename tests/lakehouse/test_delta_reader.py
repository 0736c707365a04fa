"""The delta-rs reader in its child process: versions, descriptions, reads and errors, against Spark-written tables."""

import time

import pytest

from lakehouse.delta_reader import DeltaReader, DeltaReadError


def test_reader_reads_versions_describes_tables_and_names_errors(spark, tmp_path):
    location = str(tmp_path / "zones")
    spark.createDataFrame([("100", 3), ("200", 8)], "postal_prefix string, zone int").write.format("delta").save(
        location)
    spark.createDataFrame([("300", 5)], "postal_prefix string, zone int").write.format("delta").mode(
        "append").save(location)
    reader = DeltaReader()
    try:
        assert reader.versions({"zones": location, "nothing": location + "-missing"}) == {"zones": 1, "nothing": None}
        described = reader.describe({"zones": location, "nothing": location + "-missing"})
        assert described["nothing"] is None
        assert described["zones"]["version"] == 1 and len(described["zones"]["table_id"]) == 36
        assert abs(described["zones"]["committed_at_ms"] / 1000 - time.time()) < 600
        first = reader.read(location, 0, ("zone",))
        assert first.column_names == ["zone"] and sorted(first.column("zone").to_pylist()) == [3, 8]
        assert sorted(reader.read(location, 1).to_pylist(), key=lambda r: r["postal_prefix"]) == [
            {"postal_prefix": "100", "zone": 3}, {"postal_prefix": "200", "zone": 8},
            {"postal_prefix": "300", "zone": 5}]
        with pytest.raises(DeltaReadError, match="version"):
            reader.read(location, 7)
        child = reader._process
    finally:
        reader.close()
    assert child.returncode == 0
    again = DeltaReader()
    try:
        assert again.versions({"zones": location}) == {"zones": 1}
        # A table written again from scratch is another Delta table: another id.
        spark.createDataFrame([("400", 1)], "postal_prefix string, zone int").write.format("delta").mode(
            "overwrite").option("overwriteSchema", "true").save(str(tmp_path / "other"))
        assert again.describe({"other": str(tmp_path / "other")})["other"]["table_id"] != described["zones"]["table_id"]
    finally:
        again.close()
