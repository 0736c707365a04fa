"""The batch pipeline on a standalone Spark cluster (master + one worker on loopback, tests/conftest.py)."""

import sys

import pytest

from lakehouse.settings import Settings
from tests.lakehouse.lake_runs import assert_same_lake, lake_contents, run_batch

pytestmark = pytest.mark.integration


# A pipeline run on one executor core, after the local reference run if no other test made it yet.
@pytest.mark.timeout(2400)
def test_batch_pipeline_on_a_standalone_cluster_equals_local_mode(batch_reference, spark_cluster):
    cluster_lake = batch_reference.state_dir / "cluster_lake"
    run_batch(batch_reference.state_dir, {
        "SPARK_MASTER_URL": spark_cluster.master_url, "LAKEHOUSE_STORAGE_ROOT": str(cluster_lake),
        # The driver binds to loopback like the cluster. The executors, on the same host, read the landing
        # files and write the lake at the driver's paths; any Python they start is this interpreter.
        "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOCAL_HOSTNAME": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
    })

    finished = spark_cluster.state()["completedapps"]
    assert [(app["name"], app["state"]) for app in finished] == [("pipeline", "FINISHED")]
    assert_same_lake(lake_contents(Settings(state_dir=batch_reference.state_dir, storage_root=str(cluster_lake))),
                     lake_contents(batch_reference))
