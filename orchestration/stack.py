"""The native stack: real processes on loopback, tracked by pid files under the state folder.

`up` starts what is not running and waits for health; `down` stops everything it started;
`status` reports each service; `logs` tails their log files. The same service names, ports and
environment variables as docker-compose.yml.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.health import heartbeat_file, heartbeat_fresh, http_ok, kafka_answers, port_open, postgres_answers
from lakehouse.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0


class StackError(RuntimeError):
    """A service could not be started or stopped; the message names the log file to read."""


@dataclass(frozen=True)
class Service:
    """One long-running process of the stack."""

    name: str
    command: list[str]
    port: int | None  # None: the service listens on no port
    healthy: Callable[[], bool]
    prepare: Callable[[], None] = lambda: None
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: signal.Signals = signal.SIGTERM
    # Started when a command needs it (`lakehouse sql`, `make notebook`), not by `make up`.
    on_demand: bool = False


def _kafka_service(settings: Settings) -> Service:
    host, port = settings.kafka_host_port
    home = settings.state_dir / "kafka"
    properties = home / "server.properties"
    archive = _class_archive(settings, home)

    def prepare() -> None:
        home.mkdir(parents=True, exist_ok=True)
        for stale in home.glob("classes-*.jsa"):
            if stale != archive:
                stale.unlink()  # of other jars
        properties.write_text(_kafka_properties(settings, home / "data"))
        if not (home / "data" / "meta.properties").exists():
            # KRaft refuses to start on unformatted storage; format once with a fresh cluster id.
            cluster_id = kafka_cluster_id()
            log.info("formatting kafka storage", extra={"cluster_id": cluster_id})
            formatted = subprocess.run(
                [*_java_command(settings), "kafka.tools.StorageTool", "format", "--standalone",
                 "-t", cluster_id, "-c", str(properties)],
                capture_output=True, text=True,
            )
            if formatted.returncode != 0:
                raise StackError(f"kafka: formatting {home / 'data'} failed: {formatted.stderr.strip()}")

    # Class data sharing: the JVM maps the classes an earlier broker archived at its exit instead of loading and
    # verifying them again, about half the broker's start-up CPU, which the other services start on meanwhile.
    sharing = f"-XX:SharedArchiveFile={archive}" if archive.exists() else f"-XX:ArchiveClassesAtExit={archive}"
    return Service(
        name="kafka",
        command=[*_java_command(settings), sharing, "-Xms256m", "-Xmx768m",
                 f"-Dlog4j2.configurationFile={REPO_ROOT / 'infra' / 'kafka' / 'log4j2.properties'}",
                 "kafka.Kafka", str(properties)],
        port=port,
        healthy=lambda: kafka_answers(settings.kafka_bootstrap_servers),
        prepare=prepare,
    )


def kafka_cluster_id() -> str:
    """A random cluster id as Kafka writes them (base64url of 16 bytes), never starting with '-',
    which the storage tool would read as an option (Kafka's own Uuid.randomUuid skips those too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _class_archive(settings: Settings, home: Path) -> Path:
    """The broker's class data sharing archive, named after its jars: other jars write another one."""
    jars = sorted(f"{jar.name}:{jar.stat().st_size}" for jar in (settings.jars_dir / "kafka").glob("*.jar"))
    return home / f"classes-{hashlib.sha256(' '.join(jars).encode()).hexdigest()[:12]}.jsa"


def _java_command(settings: Settings) -> list[str]:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else "java"
    return [java, "-cp", str(settings.jars_dir / "kafka" / "*")]


def _kafka_properties(settings: Settings, data_dir: Path) -> str:
    """A single-node KRaft broker+controller; replication factors of 1 because there is one node."""
    host, port = settings.kafka_host_port
    controller = f"{host}:{settings.kafka_controller_port}"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers={controller}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=3",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "",
    ])


def _mlflow_service(settings: Settings) -> Service:
    host, port = settings.mlflow_host_port
    home = settings.state_dir / "mlflow"
    return Service(
        name="mlflow",
        command=[
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--host", host, "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            # The server stores and serves artifacts, so clients need no access to the folder or bucket.
            "--serve-artifacts", "--artifacts-destination",
            settings.mlflow_artifacts_destination or str(home / "artifacts"),
        ],
        port=port,
        healthy=lambda: http_ok(f"http://{host}:{port}/health"),
        prepare=lambda: home.mkdir(parents=True, exist_ok=True),
        # The job runner (huey workers for MLflow's GenAI jobs) is unused here and costs a core at start.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
             **({"MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint} if settings.s3_endpoint else {})},
    )


# PostgreSQL refuses to run as root: as root, the stack runs its programs as the `postgres` user that Debian's
# package creates.
POSTGRES_OS_USER = "postgres"


def _postgres_service(settings: Settings) -> Service:
    """The operational database: Debian's PostgreSQL server on its own data folder under the state folder,
    initialised on the first start with the settings' user, password and database; TCP on loopback only."""
    home = settings.state_dir / "postgres"
    data = home / "data"
    server = settings.postgres_bin_dir / "postgres"
    options = {
        "listen_addresses": settings.pg_host, "port": str(settings.pg_port),
        # No Unix socket: its path length is limited, and every client here connects over TCP.
        "unix_socket_directories": "",
        # Its log is the service's log file (stderr); one line per statement that fails or runs over 1 s.
        "logging_collector": "off", "log_min_duration_statement": "1000",
        "shared_buffers": "128MB", "max_connections": "50",
    }

    def prepare() -> None:
        if not server.exists():
            raise StackError(f"postgres: no server program at {server}; install it with `make postgres` (Debian's "
                             f"postgresql-15), or set LAKEHOUSE_POSTGRES_BIN_DIR")
        home.mkdir(parents=True, exist_ok=True)
        if not (data / "PG_VERSION").exists():
            _initialise_postgres(settings, home, data)

    return Service(
        name="postgres",
        command=[*_as_postgres_user(), str(server), "-D", str(data),
                 *(arg for name, value in options.items() for arg in ("-c", f"{name}={value}"))],
        port=settings.pg_port,
        healthy=lambda: postgres_answers(settings),
        prepare=prepare,
        # SIGTERM is PostgreSQL's smart shutdown, which waits for every client to leave; SIGINT is its fast one.
        stop_signal=signal.SIGINT,
    )


def _as_postgres_user() -> list[str]:
    """The command prefix that runs a PostgreSQL program as the `postgres` user when we are root (nothing else)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={POSTGRES_OS_USER}", f"--regid={POSTGRES_OS_USER}", "--init-groups"]


def _initialise_postgres(settings: Settings, home: Path, data: Path) -> None:
    """initdb with the settings' superuser and password (from a private file, never a command line), then the
    settings' database, created in single-user mode before the server first starts."""
    log.info("initialising postgres", extra={"data": str(data), "user": settings.pg_user})
    if os.geteuid() == 0:
        account = pwd.getpwnam(POSTGRES_OS_USER)
        _let_others_traverse(home)
        os.chown(home, account.pw_uid, account.pw_gid)
    bin_dir = settings.postgres_bin_dir
    with tempfile.NamedTemporaryFile("w", dir=home, prefix=".pw-", delete=True) as password_file:
        password_file.write(settings.pg_password.get_secret_value() + "\n")
        password_file.flush()
        if os.geteuid() == 0:
            os.chown(password_file.name, account.pw_uid, account.pw_gid)
        _run_postgres_program(
            [str(bin_dir / "initdb"), "-D", str(data), "--username", settings.pg_user, "--pwfile", password_file.name,
             "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"],
            "initdb")
    database = settings.pg_database.replace('"', '""')
    try:
        _run_postgres_program([str(bin_dir / "postgres"), "--single", "-D", str(data), "-c",
                               "unix_socket_directories=", "postgres"], "creating the database",
                              stdin=f'CREATE DATABASE "{database}";\n')
    except StackError:
        shutil.rmtree(data)  # half initialised: the next start initialises again
        raise


def _run_postgres_program(command: list[str], what: str, stdin: str | None = None) -> None:
    done = subprocess.run([*_as_postgres_user(), *command], input=stdin, capture_output=True, text=True)
    if done.returncode != 0 or "ERROR:" in done.stderr:
        raise StackError(f"postgres: {what} failed: {done.stderr.strip()[-2000:]}")


def _let_others_traverse(folder: Path) -> None:
    """Add the search (x) permission for others on every ancestor of `folder` that lacks it: the `postgres` user
    must reach its data folder. Nothing becomes readable or listable."""
    for ancestor in reversed(folder.resolve().parents):
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(mode | stat.S_IXOTH)
            log.info("let the postgres user traverse a folder", extra={"folder": str(ancestor)})


def _child_env(settings: Settings) -> dict[str, str]:
    """Where a Python service finds the stack: it reads its settings from the environment, so pass
    this stack's, not the caller's."""
    return {"LAKEHOUSE_STATE_DIR": str(settings.state_dir), "LAKEHOUSE_JARS_DIR": str(settings.jars_dir),
            # A service's stderr is its log file: JSON lines, not the view for a person.
            "LAKEHOUSE_LOG_FORMAT": "json",
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "LAKEHOUSE_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "PGHOST": settings.pg_host, "PGPORT": str(settings.pg_port), "PGUSER": settings.pg_user,
            "PGPASSWORD": settings.pg_password.get_secret_value(), "PGDATABASE": settings.pg_database,
            "LAKEHOUSE_CATALOG_ENABLED": str(settings.catalog_enabled).lower(),
            **({"LAKEHOUSE_STORAGE_ROOT": settings.storage_root} if settings.storage_root else {}),
            **({"LAKEHOUSE_S3_ENDPOINT": settings.s3_endpoint} if settings.s3_endpoint else {})}


def _streaming_service(settings: Settings) -> Service:
    """One Spark driver running the Kafka -> bronze queries of every streamed topic (streaming.bronze) and the
    streaming features beside them (streaming.features)."""
    env = {**_child_env(settings),
           "LAKEHOUSE_STREAMING_TRIGGER_INTERVAL": settings.streaming_trigger_interval,
           "LAKEHOUSE_STREAMING_MAX_OFFSETS_PER_TRIGGER": str(settings.streaming_max_offsets_per_trigger),
           "SPARK_MASTER_URL": settings.spark_master_url}
    return Service(
        name="streaming",
        command=[sys.executable, "-m", "streaming.bronze", "--trigger", "processing"],
        port=None,
        healthy=lambda: heartbeat_fresh(settings),
        # A heartbeat left by an earlier run must not pass for this one's.
        prepare=lambda: heartbeat_file(settings).unlink(missing_ok=True),
        env=env,
    )


def _serving_service(settings: Settings) -> Service:
    """The API: one uvicorn worker serving `serving.app:app`, logging JSON lines like every job
    (uvicorn's own log config off, its loggers propagate; no access log: /metrics counts requests)."""
    host, port = settings.api_host, settings.api_port
    run = ("from lakehouse.log import configure_logging; configure_logging(); import uvicorn; "
           f"uvicorn.run('serving.app:app', host={host!r}, port={port}, log_config=None, access_log=False)")
    return Service(
        name="serving",
        command=[sys.executable, "-c", run],
        port=port,
        healthy=lambda: http_ok(f"http://{host}:{port}/healthz"),
        env=_child_env(settings),
    )


def _sql_service(settings: Settings) -> Service:
    """The SQL endpoint: one Spark driver serving the catalog's tables by name over JDBC/ODBC (the Spark Thrift
    server) and Spark Connect (its plugin in the same JVM, so that both cost one driver's memory)."""
    from lakehouse.catalog import ensure_metastore_database, write_hive_site
    from lakehouse.spark import spark_options

    # The stack's services log JSON lines (their log file is their stderr).
    options = {**spark_options(settings.model_copy(update={"log_format": "json"}), None),
               "spark.driver.memory": settings.sql_endpoint_memory,
               "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
               "spark.connect.grpc.binding.address": settings.sql_host,
               "spark.connect.grpc.binding.port": str(settings.spark_connect_port)}

    def prepare() -> None:
        write_hive_site(settings)
        ensure_metastore_database(settings)

    hive = {"hive.server2.thrift.bind.host": settings.sql_host,
            "hive.server2.thrift.port": str(settings.sql_thrift_port)}
    return Service(
        name="sql",
        command=[str(spark_home() / "bin" / "spark-submit"),
                 "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2", "--name", "lakehouse-sql",
                 *(arg for key, value in options.items() for arg in ("--conf", f"{key}={value}")),
                 *(arg for key, value in hive.items() for arg in ("--hiveconf", f"{key}={value}"))],
        port=settings.sql_thrift_port,
        healthy=lambda: (port_open(settings.sql_host, settings.sql_thrift_port)
                         and port_open(settings.sql_host, settings.spark_connect_port)),
        prepare=prepare,
        env={"SPARK_HOME": str(spark_home())},
        on_demand=True,
    )


def _pipeline_service(settings: Settings) -> Service:
    """The pipeline driver (orchestration.driver): a warm Spark driver running the daily DAG's steps sent to it, one
    at a time; started on demand (`lakehouse pipeline --driver start`, the Airflow DAG's tasks), gone when idle."""
    from orchestration.driver import driver_serves

    return Service(
        name="pipeline-driver",
        command=[sys.executable, "-m", "orchestration.driver"],
        port=settings.pipeline_driver_port,
        healthy=lambda: driver_serves(settings),
        env={**_child_env(settings), "SPARK_MASTER_URL": settings.spark_master_url,
             "LAKEHOUSE_PIPELINE_DRIVER_HOST": settings.pipeline_driver_host,
             "LAKEHOUSE_PIPELINE_DRIVER_PORT": str(settings.pipeline_driver_port),
             "LAKEHOUSE_PIPELINE_DRIVER_IDLE_S": str(settings.pipeline_driver_idle_s)},
        on_demand=True,
    )


def _jupyter_service(settings: Settings) -> Service:
    """JupyterLab on loopback, serving notebooks/ (sessions on the SQL endpoint through Spark Connect); its token is
    a private file under the state folder, read by the server from JUPYTER_TOKEN_FILE, never a command line."""
    home = settings.state_dir / "jupyter"
    url = f"http://{settings.jupyter_host}:{settings.jupyter_port}"

    def prepare() -> None:
        home.mkdir(parents=True, exist_ok=True)
        if not jupyter_token_file(settings).exists():
            descriptor = os.open(jupyter_token_file(settings), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(secrets.token_urlsafe(24))

    return Service(
        name="jupyter",
        command=[sys.executable, "-m", "jupyterlab", "--no-browser", f"--ip={settings.jupyter_host}",
                 f"--port={settings.jupyter_port}", f"--ServerApp.root_dir={REPO_ROOT / 'notebooks'}",
                 # Jupyter refuses root unless told: the machines here run everything as root.
                 *(["--allow-root"] if os.geteuid() == 0 else [])],
        port=settings.jupyter_port,
        healthy=lambda: http_ok(f"{url}/api"),
        prepare=prepare,
        env={**_child_env(settings), "JUPYTER_TOKEN_FILE": str(jupyter_token_file(settings)),
             "JUPYTER_RUNTIME_DIR": str(home / "runtime")},
        on_demand=True,
    )


def jupyter_token_file(settings: Settings) -> Path:
    return settings.state_dir / "jupyter" / "token"


def spark_home() -> Path:
    """The Spark distribution inside the pyspark wheel (bin/spark-submit, bin/beeline, the jars)."""
    import pyspark

    return Path(pyspark.__file__).parent


SERVICES: dict[str, Callable[[Settings], Service]] = {
    "kafka": _kafka_service, "mlflow": _mlflow_service, "postgres": _postgres_service,
    "streaming": _streaming_service, "serving": _serving_service, "sql": _sql_service,
    "pipeline-driver": _pipeline_service, "jupyter": _jupyter_service,
}


def services(settings: Settings, only: list[str] | None = None) -> list[Service]:
    """The native stack's services in start order (only those named, when `only` is given)."""
    return [build(settings) for name, build in SERVICES.items() if only is None or name in only]


class Stack:
    """Starts, stops and inspects the services of one state folder."""

    def __init__(self, settings: Settings, only: list[str] | None = None):
        self.settings = settings
        self.services = services(settings, only)
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        settings.logs_dir.mkdir(parents=True, exist_ok=True)

    def pid_file(self, service: Service) -> Path:
        return self.settings.run_dir / f"{service.name}.pid"

    def log_file(self, service: Service) -> Path:
        return self.settings.logs_dir / f"{service.name}.log"

    def pid(self, service: Service) -> int | None:
        """The pid of the service's process if it is alive, else None (a stale pid file is removed)."""
        path = self.pid_file(service)
        if not path.exists():
            return None
        pid = int(path.read_text().strip())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink()
            return None
        return pid

    def up(self) -> None:
        """Start what is not running, then wait until every service is healthy."""
        self.start()
        self.wait_healthy()

    def start(self) -> None:
        """Launch the services that are not running, without waiting for them."""
        started = [s.name for s in self.services if self._start(s)]
        log.info("stack starting", extra={"started": started})

    def wait_healthy(self) -> None:
        for service in self.services:
            self._wait_healthy(service)
        log.info("stack up", extra={"running": [s.name for s in self.services]})

    def _start(self, service: Service) -> bool:
        if self.pid(service) is not None:
            return False
        host = "127.0.0.1"
        if service.port is not None and port_open(host, service.port):
            raise StackError(
                f"{service.name}: port {service.port} is already in use by a process this stack did not "
                f"start (see `ss -ltnp 'sport = :{service.port}'`); stop it or change the port setting"
            )
        service.prepare()
        log_file = self.log_file(service)
        with log_file.open("ab") as out:
            process = subprocess.Popen(
                service.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT, env={**os.environ, **service.env}, start_new_session=True,
            )
        self.pid_file(service).write_text(str(process.pid))
        log.info("started", extra={"service": service.name, "pid": process.pid, "log": str(log_file)})
        return True

    def _wait_healthy(self, service: Service) -> None:
        deadline = time.monotonic() + self.settings.health_timeout_s
        while time.monotonic() < deadline:
            if service.healthy():
                return
            if self.pid(service) is None:
                raise StackError(f"{service.name} exited during start-up; read {self.log_file(service)}")
            time.sleep(0.25)
        raise StackError(
            f"{service.name} not healthy after {self.settings.health_timeout_s:.0f} s; "
            f"read {self.log_file(service)}"
        )

    def down(self) -> list[str]:
        """Stop the running services, last started first; returns their names."""
        stopped = []
        for service in reversed(self.services):
            pid = self.pid(service)
            if pid is None:
                continue
            _stop_group(pid, service.stop_signal)
            self.pid_file(service).unlink(missing_ok=True)
            log.info("stopped", extra={"service": service.name, "pid": pid})
            stopped.append(service.name)
        return stopped

    def status(self) -> list[dict]:
        return [
            {"service": s.name, "pid": self.pid(s), "port": s.port, "on_demand": s.on_demand,
             "healthy": self.pid(s) is not None and s.healthy(), "log": str(self.log_file(s))}
            for s in self.services
        ]

    def run(self) -> None:
        """Run the one selected service in the foreground, in place of this process (a container's command)."""
        if len(self.services) != 1:
            raise StackError(f"run takes one service, not {len(self.services)}")
        [service] = self.services
        service.prepare()
        os.execvpe(service.command[0], service.command, {**os.environ, **service.env})

    def tail_logs(self, follow: bool) -> None:
        files = [str(self.log_file(s)) for s in self.services if self.log_file(s).exists()]
        if not files:
            print("no logs yet: run `make up` first", file=sys.stderr)
            return
        os.execvp("tail", ["tail", "-n", "50", *(["-F"] if follow else []), *files])


def _stop_group(pid: int, stop_signal: signal.Signals = signal.SIGTERM) -> None:
    """Send `stop_signal` to the process group, then SIGKILL what is left after the grace period."""
    try:
        os.killpg(pid, stop_signal)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.2)
    log.warning("killing after grace period", extra={"pid": pid})
    os.killpg(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (tests start the stack in-process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
