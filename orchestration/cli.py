"""`lakehouse`: the project's command line. Each sub-command has its own --help."""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Only light modules here: a command imports what only it runs (Spark, the jobs, the API's modules) inside its
# function, because `make up` on a built lake must answer in seconds and those imports take seconds on 2 cores.
from lakehouse.log import configure_logging, shown, stage
from lakehouse.settings import Settings, get_settings
from orchestration.stack import Stack, StackError
from orchestration.steps import RETRIES, STEP_ORDER, STEPS, select_steps, step

log = logging.getLogger(__name__)


def _stack(args: argparse.Namespace) -> int:
    stack = Stack(get_settings(), only=args.services or None)
    try:
        if args.action == "up":
            with stage(log, "start") as done:
                stack.up()
                done["summary"] = f"{', '.join(s.name for s in stack.services)} healthy"
        elif args.action == "down":
            with stage(log, "stop") as done:
                stopped = stack.down()
                done["summary"] = f"stopped {', '.join(stopped)}" if stopped else "nothing was running"
        elif args.action == "logs":
            stack.tail_logs(follow=args.follow)
        elif args.action == "run":
            stack.run()
    except StackError:
        return 1  # the stage's line said why
    if args.action == "status":
        rows = stack.status()
        for row in rows:
            state = "healthy" if row["healthy"] else ("running, not healthy" if row["pid"] else
                                                      "stopped (on demand)" if row["on_demand"] else "stopped")
            print(f"{row['service']:<15} {state:<22} pid={row['pid'] or '-':<8} port={row['port'] or '-'}  "
                  f"log={row['log']}")
        # A service started on demand and not running is as it should be.
        return 0 if all(row["healthy"] or (row["on_demand"] and not row["pid"]) for row in rows) else 3
    return 0


def _up(args: argparse.Namespace) -> int:
    """`make up`: the services, the lake (simulated and built on the first run), the API ready, then the
    streaming driver started in the background; prints where everything is and a request to paste."""
    settings = get_settings()
    bootstrapped = settings.bootstrap_marker.exists()

    def stack(*names: str) -> Stack:
        return Stack(settings, only=list(names))

    # The order is measured on 2 cores. On a built lake the API's readiness waits for MLflow (it loads its models
    # from there), whose start is the longest: both start first, and Kafka, whose JVM would slow them, once MLflow
    # answers. On the first run the pipeline needs Kafka and MLflow; the API starts once it registered the models.
    # The streaming driver's JVM comes last, not waited for.
    try:
        with stage(log, "services") as done:
            if bootstrapped:
                stack("mlflow", "serving", "postgres").start()
                stack("mlflow").wait_healthy()
                stack("kafka").up()
                stack("serving", "postgres").wait_healthy()
                done["summary"] = "mlflow, serving, kafka, postgres healthy"
            else:
                stack("kafka", "mlflow", "postgres").up()
                done["summary"] = "kafka, mlflow, postgres healthy"
        if not bootstrapped and not _bootstrap(settings):
            return 1
        with stage(log, "api") as done:
            stack("serving").up()
            _wait_api_ready(settings, args.wait)
            done["summary"] = "ready: models and features loaded"
        stack("streaming").start()
    except StackError:
        return 1  # the failed stage's line said what, and where to read more
    _print_where(settings)
    return 0


def _bootstrap(settings: Settings) -> bool:
    """The first run's simulation and pipeline; False when a step failed (its line said why)."""
    from lakehouse.spark import get_spark
    from orchestration.runner import PipelineError, bootstrap

    try:
        bootstrap(settings, lambda: get_spark("bootstrap", settings))
    except PipelineError:
        return False
    return True


def _wait_api_ready(settings: Settings, timeout_s: float) -> None:
    """Poll the API's /readyz until its models and features are loaded; StackError says what is missing."""
    url, missing = f"{_api_url(settings)}/readyz", "no answer"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as answer:
            missing = json.loads(answer.read() or b"{}").get("missing", answer.code)
        except OSError:
            pass
        time.sleep(0.25)
    raise StackError(f"the API at {url} is not ready after {timeout_s:g} s ({missing}); "
                     f"read {settings.logs_dir / 'serving.log'}")


def _api_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def _print_where(settings: Settings) -> None:
    from serving.gateway import initial_key_file

    url, key_file = _api_url(settings), initial_key_file(settings)
    # Never the password itself: it may be the user's own (PGPASSWORD).
    psql = (f"psql -h {settings.pg_host} -p {settings.pg_port} -U {settings.pg_user} {settings.pg_database}"
            "  (password: $PGPASSWORD, by default lakehouse)")
    cli = shown(Path(sys.argv[0]))
    print(f"""
  API              {url}/docs
  API key          {key_file if key_file.exists() else f"create one with: {cli} api-key create --name me"}
  try              curl -s -X POST {url}/v1/prices -H "X-API-Key: $(cat {key_file})" \\
                        -H 'content-type: application/json' -d '{{"sku": "SKU-001362"}}'
  MLflow UI        {settings.mlflow_tracking_uri}
  Kafka broker     {settings.kafka_bootstrap_servers}
  PostgreSQL       {psql}
  streaming        starting (a Spark driver, about half a minute): `make status` shows when it is healthy
  tables           {cli} tables
  SQL              {cli} sql "SELECT * FROM gold.prices LIMIT 5"  (make sql: a shell; the endpoint starts on demand)
  status, stop     make status, make down""")


def _tables(args: argparse.Namespace) -> int:
    from lakehouse.delta_reader import DeltaReader, storage_options
    from lakehouse.postgres import PostgresUnavailable, sync_states
    from lakehouse.tables import registry_as_json

    settings = get_settings()
    tables = registry_as_json(settings, layer=args.layer)
    if any("postgres_key" in t for t in tables):
        reader = DeltaReader(storage_options(settings))
        try:
            states = sync_states(settings, reader)
        except PostgresUnavailable as error:
            states = {t["name"]: {"error": str(error)} for t in tables if "postgres_key" in t}
        finally:
            reader.close()
        for entry in tables:
            if entry["name"] in states:
                entry["postgres"] = states[entry["name"]]
    print(json.dumps(tables, indent=2))
    return 0


def _sql(args: argparse.Namespace) -> int:
    """A statement on the SQL endpoint (started if it is not running), or beeline's shell without one."""
    from orchestration.sql import SqlError, render, run_sql

    settings = get_settings()
    endpoint = Stack(settings, only=["postgres", "sql"])
    if not all(row["healthy"] for row in endpoint.status()):
        try:
            with stage(log, "sql endpoint") as done:
                endpoint.up()
                done["summary"] = f"JDBC {settings.sql_jdbc_url}, Spark Connect {settings.spark_connect_url}"
        except StackError:
            return 1
    if args.statement is None:
        from orchestration.stack import spark_home

        beeline = str(spark_home() / "bin" / "beeline")
        os.environ["SPARK_HOME"] = str(spark_home())
        os.execv(beeline, [beeline, "-u", settings.sql_jdbc_url, "-n", getpass.getuser()])
    try:
        print(render(run_sql(settings, args.statement), args.format))
    except SqlError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from lakehouse.delta import register_existing
    from lakehouse.spark import get_spark

    settings = get_settings()
    with stage(log, "catalog") as done:
        names = register_existing(get_spark("catalog", settings), settings)
        done["summary"] = f"{len(names)} tables registered"
    print("\n".join(names))
    return 0


def _notebook(args: argparse.Namespace) -> int:
    """`make notebook`: JupyterLab and the SQL endpoint its notebooks use, started if they are not running."""
    from orchestration.stack import jupyter_token_file

    settings = get_settings()
    try:
        with stage(log, "notebooks") as done:
            Stack(settings, only=["postgres", "sql", "jupyter"]).up()
            done["summary"] = "JupyterLab and the SQL endpoint healthy"
    except StackError:
        return 1
    token = jupyter_token_file(settings).read_text().strip()
    print(f"  JupyterLab       http://{settings.jupyter_host}:{settings.jupyter_port}/lab?token={token}\n"
          f"  stop             {shown(Path(sys.argv[0]))} stack down jupyter sql")
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.command == "bootstrap":
        from lakehouse.spark import get_spark
        from orchestration.runner import bootstrap

        bootstrap(settings, lambda: get_spark("bootstrap", settings))
        return 0
    try:
        steps = select_steps(args.step, args.start)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.driver != "off" and any(step(name).uses_spark for name in steps):
        code = _on_driver(settings, steps, args)
        if code is not None:
            return code
    from lakehouse.spark import get_spark
    from orchestration.runner import PipelineError, exit_code, run_pipeline

    spark = get_spark("pipeline", settings) if any(step(name).uses_spark for name in steps) else None
    try:
        run_pipeline(spark, settings, steps, retries=args.retries)
    except PipelineError as failure:  # each step's line, and the failed one's error, are on the console
        return exit_code(failure)
    return 0


def _on_driver(settings: Settings, steps: list[str], args: argparse.Namespace) -> int | None:
    """The run's exit code on the pipeline driver (started first with --driver start), or None when there is no
    driver for this lake: the caller runs the steps itself."""
    from orchestration.driver import DriverUnavailable, driver_serves, submit

    if args.driver == "start" and not driver_serves(settings):
        try:
            with stage(log, "driver") as done:
                Stack(settings, only=["pipeline-driver"]).up()
                done["summary"] = f"pipeline driver on {settings.pipeline_driver_url}"
        except StackError:
            pass  # its line said why; this process runs the steps
    try:
        return submit(settings, steps, args.retries)
    except DriverUnavailable as why:
        if args.driver == "start":
            log.warning("running the steps in this process", extra={"reason": str(why)})
        return None


def _step(args: argparse.Namespace) -> int:
    """Run one step of the registry once (no retries), with its options from the command line."""
    from lakehouse.postgres import PostgresUnavailable
    from lakehouse.quality import QualityGateError

    declared = step(args.command)
    options = {argument.dest: getattr(args, argument.dest) for argument in declared.arguments}
    settings = get_settings()
    try:
        if declared.uses_spark:
            from lakehouse.spark import get_spark

            print(declared.load()(get_spark(declared.name, settings), settings, **options))
        else:
            print(declared.load()(settings, **options))
    except QualityGateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, PostgresUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _api_key(args: argparse.Namespace) -> int:
    from serving.gateway import KeyStore, KeyStoreError, keys_file

    store = KeyStore(keys_file(get_settings()))
    try:
        if args.action == "create":
            record, key = store.create(args.name)
            print(key)
            print(f"key {record.key_id} ({record.name}) created; this is the only time it is shown. "
                  f"Send it as the X-API-Key header.", file=sys.stderr)
        elif args.action == "revoke":
            record = store.revoke(args.key)
            print(f"key {record.key_id} ({record.name}) revoked", file=sys.stderr)
        else:
            print(json.dumps([{"key_id": k.key_id, "name": k.name, "created_at": k.created_at,
                               "revoked_at": k.revoked_at} for k in store.list()], indent=2))
    except KeyStoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _job(name: str):
    return importlib.import_module(f"spark_jobs.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="start, stop and inspect the native stack",
                                description="Manage the native stack (Kafka broker, MLflow server, PostgreSQL, "
                                            "streaming driver, API, SQL endpoint, JupyterLab).")
    stack.add_argument("action", choices=["up", "down", "status", "logs", "run"],
                       help="run: one service in the foreground (the Compose stack's containers)")
    stack.add_argument("services", nargs="*", help="limit to these services (default: all)")
    stack.add_argument("-f", "--follow", action="store_true", help="logs: keep following")
    stack.set_defaults(run=_stack)

    up = commands.add_parser(
        "up", help="start the stack, build the lake on the first run, wait for the API, print how to call it",
        description="What `make up` runs: start Kafka, MLflow, PostgreSQL and the API (the first run simulates the "
                    "default market and runs the pipeline before the API starts), wait until the API's models and "
                    "features are loaded, start the streaming driver in the background (`lakehouse stack "
                    "status` shows when it is healthy), then print the addresses, the API key file and a "
                    "request to paste. Does only what is missing: a second run returns in seconds.")
    up.add_argument("--wait", type=float, default=180.0,
                    help="seconds to wait for the API's models and features (default 180)")
    up.set_defaults(run=_up)

    tables = commands.add_parser("tables", help="list the table registry as JSON, with the synced tables' state",
                                 description="Print every table: name, layer, location, partitions, owner; for a "
                                             "table synced to PostgreSQL, its primary key there and the sync's "
                                             "state (`postgres`: version synced, gold's version, versions and "
                                             "seconds behind, rows, when).")
    tables.add_argument("--layer", choices=["bronze", "silver", "gold", "ops"], help="only this layer")
    tables.set_defaults(run=_tables)

    sql = commands.add_parser(
        "sql", help="run a SQL statement on the tables by name (gold.prices), or open a SQL shell",
        description="Run one statement on the SQL endpoint (Spark Connect; the endpoint and PostgreSQL are started if "
                    "they are not running) and print its result. Without a statement, open beeline's interactive "
                    "shell on the endpoint's JDBC port. Exits 1 with the error's class and message when the endpoint "
                    "refuses the statement.")
    sql.add_argument("statement", nargs="?", help='e.g. "SELECT * FROM gold.prices LIMIT 5"; none: a shell')
    sql.add_argument("--format", choices=["table", "json", "csv"], default="table",
                     help="how to print the rows (default: table)")
    sql.set_defaults(run=_sql)

    commands.add_parser(
        "catalog", help="register every table of the lake in the catalog by name (<layer>.<table>)",
        description="Register each table of the registry that exists in the lake in the metastore (each job keeps its "
                    "own tables registered as it writes them: this is for a lake built before the catalog, or one "
                    "whose names another lake took); prints their names.").set_defaults(run=_catalog)
    commands.add_parser(
        "notebook", help="serve JupyterLab on notebooks/ (and the SQL endpoint its notebooks read), print its URL",
        description="Start PostgreSQL, the SQL endpoint and JupyterLab on loopback if they are not running, then print "
                    "JupyterLab's URL with its token (kept in <state>/jupyter/token). The notebooks read the tables "
                    "by name through Spark Connect.").set_defaults(run=_notebook)

    api_key = commands.add_parser(
        "api-key", help="create, list and revoke the API's keys",
        description="Manage the API keys (stored hashed in <state>/api_keys.json). `create` prints the new key "
                    "once; `list` prints id, name and dates as JSON; `revoke` takes an id or a name. A running "
                    "server applies changes within a second.")
    key_actions = api_key.add_subparsers(dest="action", required=True)
    key_actions.add_parser("create", help="create a key and print it once").add_argument(
        "--name", required=True, help="who or what uses the key (unique among active keys)")
    key_actions.add_parser("list", help="list the keys (never the keys themselves) as JSON")
    key_actions.add_parser("revoke", help="revoke a key").add_argument("key", help="the key's id or name")
    api_key.set_defaults(run=_api_key)

    for declared in STEPS:
        step_parser = commands.add_parser(declared.name, help=declared.help, description=declared.description)
        for argument in declared.arguments:
            argument.add_to(step_parser)
        step_parser.set_defaults(run=_step)

    readout_parser = commands.add_parser(
        "readout", help="A/B readout of an experiment -> gold.experiment_readout, plots in MLflow",
        description="Join the experiment's pricing decisions (silver.decisions) with the behaviour events that name "
                    "them, order lines and unit costs; per variant: add-to-cart, conversion and cart abandonment "
                    "rates, revenue and margin per visitor, lift against the rule-based control with 95% "
                    "delta-method intervals, z / Welch tests, sample-ratio check (docs/experiments.md).")
    readout_parser.add_argument("--experiment", required=True, help="experiment name in serving/experiments.yaml")
    readout_parser.add_argument("--no-mlflow", action="store_true", help="do not log the plots and figures to MLflow")
    readout_parser.set_defaults(run=lambda args: _job("readout").main(args))
    ope_parser = commands.add_parser(
        "ope", help="off-policy estimates of the pricing challenger and champion from the decision log -> MLflow",
        description="Join the experiment's pricing decisions that logged a propensity (silver.decisions) with their "
                    "outcomes (the readout's rule: the profit of each decision's view) and the SKU's features of "
                    "the day; estimate what the static optimizer of the pricing challenger and of the champion "
                    "would have earned per decision (inverse propensity and doubly robust), log them with the Delta "
                    "versions read to the MLflow experiment `pricing-ope`, and record the promotion gate on the "
                    "challenger's version, which `lakehouse promote --require-ope` reads (docs/models.md).")
    ope_parser.add_argument("--experiment", required=True, help="experiment name in serving/experiments.yaml")
    ope_parser.set_defaults(run=lambda args: _job("ope").main(args))
    demo_parser = commands.add_parser(
        "demo", help="after make up: live shoppers and market shocks on the API, readout vs true lift",
        description="Run simulated shoppers priced by the running API for a few minutes (A/B: model-driven pricing, "
                    "live repricing and rule-based) while the live market streams competitor prices with scripted "
                    "shocks, wait until the streaming layer landed their events, promote silver, run "
                    "the readout and print each metric's measured lift [95% CI] next to the simulator's true lift, "
                    "the sample-ratio verdict, the MLflow run and the status page.")
    demo_parser.add_argument("--minutes", type=float, default=3.0, help="how long the shoppers shop (default 3)")
    demo_parser.add_argument("--sessions-per-s", type=float, default=5.0, help="sessions per second (default 5)")
    demo_parser.add_argument("--experiment", help="pricing experiment to read out (default: the repository's "
                                                  "model-against-rules experiment)")
    demo_parser.set_defaults(run=lambda args: _job("demo").main(args))

    pipeline = commands.add_parser(
        "pipeline", help="run the daily DAG (or some of its steps) with retries, progress and a summary",
        description=f"Run the daily DAG's steps in order ({' -> '.join(STEP_ORDER)}), each retried {RETRIES} "
                    "times on failure except a failed quality gate, with progress and a run summary (also in "
                    "<state>/pipeline_runs/). Spark steps run on the pipeline driver (a warm Spark driver, the "
                    "stack's `pipeline-driver` service) when it serves this lake, else in this process (--driver). "
                    "Exits 2 when a quality gate stopped it, 1 on another failure.")
    pipeline.add_argument("--step", action="append", choices=STEP_ORDER, help="only this step (repeatable)")
    pipeline.add_argument("--from", dest="start", choices=STEP_ORDER, help="this step and the ones after it")
    pipeline.add_argument("--retries", type=int, help=f"retries per step (default: each step's own, {RETRIES})")
    pipeline.add_argument(
        "--driver", choices=["auto", "start", "off"], default="auto",
        help="where Spark steps run: auto (default) on the pipeline driver when it is up for this lake, else in "
             "this process; start: start the driver first if needed (the Airflow DAG's tasks); off: in this process")
    pipeline.set_defaults(run=_pipeline)
    commands.add_parser("bootstrap", help="first run: simulate the default data set and run the pipeline",
                        description="Simulate the default data set if the landing zone is empty, then run the "
                                    "pipeline; does nothing once done (marker: <state>/bootstrap.json)."
                        ).set_defaults(run=_pipeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(f"{args.command}.log", get_settings())
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130  # Ctrl-C: the running stage's line said so; no traceback for a person


if __name__ == "__main__":
    sys.exit(main())
