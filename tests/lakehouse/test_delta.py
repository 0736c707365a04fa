"""The write layer on small tables: a first write's files, and each write mode with the registry's layout."""

from pyspark.testing import assertDataFrameEqual

from lakehouse import delta
from lakehouse.delta import read_delta
from lakehouse.settings import Settings
from lakehouse.tables import Table


def test_a_first_write_gives_each_partition_value_one_file(spark, tmp_path):
    lake = Settings(state_dir=tmp_path, storage_root=str(tmp_path))
    # Eight rows over four input partitions: a plain partitioned write would leave a file per task and value.
    rows = spark.createDataFrame([(i, "a" if i % 2 else "b") for i in range(8)], "n int, day string").repartition(4)
    delta.create(rows, Table("t.partitioned", ("day",), "test", "partitioned by day"), lake)
    files = sorted(p.relative_to(tmp_path / "t" / "partitioned").parts[0]
                   for p in (tmp_path / "t" / "partitioned").rglob("*.parquet"))
    assert files == ["day=a", "day=b"]
    delta.create(rows, Table("t.unpartitioned", (), "test", "not partitioned"), lake)
    assertDataFrameEqual(read_delta(spark, str(tmp_path / "t" / "unpartitioned")), rows)
    assertDataFrameEqual(read_delta(spark, str(tmp_path / "t" / "partitioned")), rows)


def test_replace_where_swaps_only_matching_rows_and_merge_updates_only_newer_matches(spark, tmp_path):
    lake = Settings(state_dir=tmp_path, storage_root=str(tmp_path))
    target = Table("t.days", ("day",), "test", "one row per key")
    location = target.location(lake)
    delta.create(spark.createDataFrame([("k1", "a", 1), ("k2", "b", 1)], "key string, day string, v int"), target, lake)

    delta.replace(spark.createDataFrame([("k3", "a", 2)], "key string, day string, v int"), target, lake, "day = 'a'")
    assertDataFrameEqual(read_delta(spark, location), [("k2", "b", 1), ("k3", "a", 2)])

    batch = spark.createDataFrame([("k2", "b", 0), ("k3", "a", 5), ("k4", "c", 1)], "key string, day string, v int")
    delta.merge(batch, target, lake, ("key",), newer="s.v > t.v")
    assertDataFrameEqual(read_delta(spark, location), [("k2", "b", 1), ("k3", "a", 5), ("k4", "c", 1)])

    delta.append_rows(spark, [], "key string, day string, v int", target, lake)  # nothing: no commit
    assert delta.table_version(spark, location) == 2
