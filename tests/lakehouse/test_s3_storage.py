"""Tables and model artifacts on S3-compatible storage: a real s3proxy on loopback (tests/conftest.py)."""

import pytest

from lakehouse.settings import Settings
from orchestration.stack import Stack
from tests.lakehouse.lake_runs import assert_same_lake, lake_contents, run_batch
from tests.support import free_port

pytestmark = pytest.mark.integration


# Two pipeline runs of a few minutes each (the local reference and this one), many more on a busy machine.
@pytest.mark.timeout(2400)
def test_batch_pipeline_on_s3_writes_the_tables_of_the_local_run(batch_reference, s3_server, monkeypatch):
    bucket = s3_server.create_bucket("lake")
    storage = {"LAKEHOUSE_STORAGE_ROOT": f"s3a://{bucket}/warehouse", "LAKEHOUSE_S3_ENDPOINT": s3_server.endpoint}
    run_batch(batch_reference.state_dir, {**storage, **s3_server.credentials_env})

    keys = {o["Key"] for o in s3_server.client().list_objects_v2(
        Bucket=bucket, Prefix="warehouse/gold/pricing_daily/_delta_log/")["Contents"]}
    assert "warehouse/gold/pricing_daily/_delta_log/00000000000000000000.json" in keys
    for name, value in {**storage, **s3_server.credentials_env}.items():
        monkeypatch.setenv(name, value)
    on_s3, local = lake_contents(Settings(state_dir=batch_reference.state_dir)), lake_contents(batch_reference)
    # The seed's lake, so that equality is not that of two empty lakes.
    assert {name: len(local[name]) for name in ("silver.products", "gold.pricing_daily")} == {
        "silver.products": 100, "gold.pricing_daily": 389}
    assert_same_lake(on_s3, local)


def test_mlflow_server_keeps_artifacts_on_s3(s3_server, tmp_path, monkeypatch):
    import mlflow

    bucket = s3_server.create_bucket("mlflow")
    for name, value in {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
                        "LAKEHOUSE_S3_ENDPOINT": s3_server.endpoint,
                        "LAKEHOUSE_MLFLOW_ARTIFACTS_DESTINATION": f"s3://{bucket}/artifacts",
                        **s3_server.credentials_env}.items():
        monkeypatch.setenv(name, value)
    own = Settings(state_dir=tmp_path)
    stack = Stack(own, only=["mlflow"])
    try:
        stack.up()
        client = mlflow.MlflowClient(tracking_uri=own.mlflow_tracking_uri)
        run = client.create_run(client.create_experiment("s3-artifacts"))
        sent = tmp_path / "model.bin"
        sent.write_bytes(bytes(range(256)) * 64)
        client.log_artifact(run.info.run_id, str(sent), artifact_path="model")
        received = client.download_artifacts(run.info.run_id, "model/model.bin", str(tmp_path / "received"))
    finally:
        stack.down()

    assert open(received, "rb").read() == sent.read_bytes()
    stored = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="artifacts/")["Contents"]
    assert [o["Key"].rsplit("/", 2)[1:] for o in stored] == [["model", "model.bin"]]
    assert s3_server.client().get_object(Bucket=bucket, Key=stored[0]["Key"])["Body"].read() == sent.read_bytes()
