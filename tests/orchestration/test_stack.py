"""Integration: the real Kafka broker, MLflow server and PostgreSQL of the native stack."""

import socket
import uuid
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from pydantic import SecretStr

from lakehouse.kafka import kafka_producer, send
from lakehouse.postgres import PostgresUnavailable, connect
from lakehouse.settings import Settings
from orchestration.stack import Stack, StackError, kafka_cluster_id, services
from tests.support import consume, free_port

pytestmark = pytest.mark.integration


def test_stack_reports_healthy(stack):
    assert [(row["service"], row["healthy"]) for row in stack.status()] == [
        ("kafka", True), ("mlflow", True), ("postgres", True)]


def test_settings_built_during_the_session_point_at_its_broker_and_mlflow(stack):
    # Test lakes build their own Settings from the environment: it must still name the running services
    # (a second import of the conftest once moved the ports under them).
    fresh = Settings()
    assert (fresh.kafka_bootstrap_servers, fresh.mlflow_tracking_uri) == (
        stack.settings.kafka_bootstrap_servers, stack.settings.mlflow_tracking_uri)


def test_produce_and_consume_through_the_broker(stack, settings):
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    sent = [f"event-{i}".encode() for i in range(20)]
    producer = kafka_producer(settings.kafka_bootstrap_servers)
    for value in sent:
        send(producer, topic, value, value)
    assert producer.flush(30) == 0

    received = consume(settings.kafka_bootstrap_servers, [topic], len(sent), timeout_s=30)
    assert sorted((m.key(), m.value()) for m in received) == sorted((v, v) for v in sent)


def test_log_register_and_alias_a_model_on_the_tracking_server(stack, settings):
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment("smoke")
    features = np.arange(40, dtype=float).reshape(20, 2)
    target = features[:, 0] * 2.0
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 2},
                        lgb.Dataset(features, target), num_boost_round=5)
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run() as run:
        mlflow.log_param("rounds", 5)
        mlflow.log_metric("rmse", 0.5)
        mlflow.lightgbm.log_model(booster, name="model", registered_model_name=name,
                                  input_example=features[:2])

    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_registered_model_alias(name, "champion", "1")
    version = client.get_model_version_by_alias(name, "champion")
    assert (version.version, version.run_id) == ("1", run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"rmse": 0.5}

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_allclose(loaded.predict(features[:3]), booster.predict(features[:3]))


def test_up_is_idempotent_and_down_leaves_no_process_or_port(tmp_path, settings):
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir,
                   kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_controller_port=free_port())
    kafka = Stack(own, only=["kafka"])
    kafka.up()
    service = kafka.services[0]
    pid = kafka.pid(service)
    kafka.up()  # second call: nothing new starts
    assert kafka.pid(service) == pid

    kafka.down()
    assert kafka.pid(service) is None
    assert not kafka.pid_file(service).exists()
    with socket.socket() as sock:
        assert sock.connect_ex(own.kafka_host_port) != 0
    assert kafka.status() == [{"service": "kafka", "pid": None, "port": own.kafka_host_port[1], "on_demand": False,
                               "healthy": False, "log": str(kafka.log_file(service))}]


def test_a_port_taken_by_a_stranger_is_refused_with_a_clear_message(tmp_path, settings):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir,
                       kafka_bootstrap_servers=f"127.0.0.1:{port}")
        with pytest.raises(StackError, match=f"port {port} is already in use"):
            Stack(own, only=["kafka"]).up()


def test_kafka_cluster_ids_never_look_like_an_option():
    ids = [kafka_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_broker_archives_its_classes_at_its_first_exit_and_maps_them_at_the_next_start(tmp_path, settings):
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir,
                   kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_controller_port=free_port())
    (tmp_path / "kafka").mkdir()
    stale = tmp_path / "kafka" / "classes-000000000000.jsa"  # of other jars
    stale.write_bytes(b"old")

    def sharing(kafka: Stack) -> list[str]:
        return [arg.split("=")[0] for arg in kafka.services[0].command if arg.startswith("-XX:")]

    first = Stack(own, only=["kafka"])
    assert sharing(first) == ["-XX:ArchiveClassesAtExit"]
    first.up()
    first.down()  # the JVM writes the archive as it exits
    [archive] = (tmp_path / "kafka").glob("classes-*.jsa")
    assert archive != stale and archive.stat().st_size > 10_000_000

    second = Stack(own, only=["kafka"])
    assert sharing(second) == ["-XX:SharedArchiveFile"]
    second.up()
    try:
        mapped = Path(f"/proc/{second.pid(second.services[0])}/maps").read_text()
    finally:
        second.down()
    assert str(archive) in mapped  # the JVM uses it (a mismatched archive is ignored, never mapped)
    assert not stale.exists()


def _command_lines() -> list[str]:
    lines = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            lines.append((process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass  # ended meanwhile
    return lines


def test_postgres_keeps_its_data_across_a_restart_and_its_password_out_of_logs_and_command_lines(tmp_path, settings):
    password = f"pw-{uuid.uuid4().hex}"
    own = Settings(state_dir=tmp_path / "state", jars_dir=settings.jars_dir, pg_port=free_port(),
                   pg_password=password, pg_user="platform", pg_database="shop_ops")
    postgres = Stack(own, only=["postgres"])
    postgres.up()
    try:
        assert not any(password in line for line in _command_lines())
        with connect(own) as connection:
            connection.execute("CREATE TABLE kept (id int PRIMARY KEY)")
            connection.execute("INSERT INTO kept VALUES (1), (2)")
        postgres.down()
        postgres.up()  # the data folder exists: no second initialisation
        with connect(own) as connection:
            assert connection.execute("SELECT current_user, current_database(), array_agg(id ORDER BY id) FROM kept"
                                      ).fetchone() == ("platform", "shop_ops", [1, 2])
        with pytest.raises(PostgresUnavailable, match="password authentication failed"):
            connect(own.model_copy(update={"pg_password": SecretStr("wrong")}))
    finally:
        postgres.down()
    assert postgres.pid(postgres.services[0]) is None
    with socket.socket() as sock:
        assert sock.connect_ex((own.pg_host, own.pg_port)) != 0
    logged = [path for path in (tmp_path / "state").rglob("*") if path.is_file() and path.suffix in (".log", ".json")]
    assert logged and not any(password in path.read_text(errors="replace") for path in logged)


def test_the_sql_endpoint_and_jupyter_start_on_demand_and_keep_secrets_off_their_command_lines(tmp_path, settings):
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir, pg_password="s3cret-pw")
    built = {s.name: s for s in services(own)}
    assert [name for name, s in built.items() if s.on_demand] == ["sql", "pipeline-driver", "jupyter"]
    for name in ("sql", "pipeline-driver", "jupyter"):
        assert not any("s3cret-pw" in arg for arg in built[name].command)
    command = built["sql"].command
    assert command[command.index("--class") + 1] == "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
    assert "spark.plugins=org.apache.spark.sql.connect.SparkConnectPlugin" in command
    assert f"spark.connect.grpc.binding.port={own.spark_connect_port}" in command
    assert f"hive.server2.thrift.port={own.sql_thrift_port}" in command
    assert built["jupyter"].env["JUPYTER_TOKEN_FILE"] == str(tmp_path / "jupyter" / "token")
