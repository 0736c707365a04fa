"""`lakehouse`: the project's command line. Each sub-command has its own --help."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time

import httpx

from lakehouse.log import configure_logging
from lakehouse.quality import QualityGateError
from lakehouse.settings import get_settings
from lakehouse.spark import get_spark
from lakehouse.tables import registry_as_json
from orchestration.runner import PipelineError, bootstrap, run_pipeline, select_steps
from orchestration.stack import Stack, StackError
from orchestration.steps import RETRIES, STEP_ORDER, STEPS, step
from serving.gateway import KeyStore, KeyStoreError, initial_key_file, keys_file


def _stack(args: argparse.Namespace) -> int:
    stack = Stack(get_settings(), only=args.services or None)
    try:
        if args.action == "up":
            stack.up()
        elif args.action == "down":
            stack.down()
        elif args.action == "logs":
            stack.tail_logs(follow=args.follow)
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.action == "status":
        rows = stack.status()
        for row in rows:
            state = "healthy" if row["healthy"] else ("running, not healthy" if row["pid"] else "stopped")
            print(f"{row['service']:<10} {state:<22} pid={row['pid'] or '-':<8} port={row['port'] or '-'}  "
                  f"log={row['log']}")
        return 0 if all(row["healthy"] for row in rows) else 3
    return 0


def _api_ready(args: argparse.Namespace) -> int:
    """Wait for the API's /readyz, then print its address, the key file and a request to paste."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise here
    settings = get_settings()
    url = f"http://{settings.api_host}:{settings.api_port}"
    deadline, answer = time.monotonic() + args.wait, None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/readyz", timeout=2)
            if answer.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(2)
    if answer is None or answer.status_code != 200:
        missing = answer.json().get("missing") if answer is not None else "no answer"
        print(f"error: the API at {url} is not ready after {args.wait:g} s ({missing}); see `make logs`",
              file=sys.stderr)
        return 1
    key_file = initial_key_file(settings)
    print(f"  API              {url}/docs (ready: models and features loaded)")
    print(f"  API key          {key_file}" if key_file.exists() else
          "  API key          create one with: .venv/bin/lakehouse api-key create --name me")
    print(f"""  try              curl -s -X POST {url}/v1/prices -H "X-API-Key: $(cat {key_file})" \\
                        -H 'content-type: application/json' -d '{{"sku": "SKU-001362"}}'""")
    return 0


def _tables(args: argparse.Namespace) -> int:
    print(json.dumps(registry_as_json(get_settings(), layer=args.layer), indent=2))
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.command == "bootstrap":
        bootstrap(settings, lambda: get_spark("bootstrap", settings))
        return 0
    try:
        steps = select_steps(args.step, args.start)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        summary = run_pipeline(get_spark("pipeline", settings), settings, steps, retries=args.retries)
    except PipelineError as failure:
        for name, outcome in failure.run.steps.items():
            print(f"{name:<10} {outcome['status']}: {outcome.get('result') or outcome.get('error')}")
        print(f"error: {failure}", file=sys.stderr)
        return 2 if isinstance(failure.error, QualityGateError) else 1
    for name, result in summary.items():
        print(f"{name:<10} {result}")
    return 0


def _step(args: argparse.Namespace) -> int:
    """Run one step of the registry once (no retries), with its options from the command line."""
    declared = step(args.command)
    options = {argument.dest: getattr(args, argument.dest) for argument in declared.arguments}
    settings = get_settings()
    try:
        print(declared.load()(get_spark(declared.name, settings), settings, **options))
    except QualityGateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _api_key(args: argparse.Namespace) -> int:
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
    # The readout and the demo import MLflow, the simulator and plotting (seconds): only when they run, so
    # that `lakehouse --help` and the light commands answer at once.
    return importlib.import_module(f"spark_jobs.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="start, stop and inspect the native stack",
                                description="Manage the native stack (Kafka broker, MLflow server, streaming "
                                            "driver, API).")
    stack.add_argument("action", choices=["up", "down", "status", "logs"])
    stack.add_argument("services", nargs="*", help="limit to these services (default: all)")
    stack.add_argument("-f", "--follow", action="store_true", help="logs: keep following")
    stack.set_defaults(run=_stack)

    api = commands.add_parser("api-ready", help="wait until the API is ready and print how to call it",
                              description="Poll the API's /readyz until the models and features are loaded, then "
                                          "print its address, the key file and a curl example.")
    api.add_argument("--wait", type=float, default=180.0, help="seconds to wait (default 180)")
    api.set_defaults(run=_api_ready)

    tables = commands.add_parser("tables", help="list the table registry as JSON",
                                 description="Print every table: name, layer, location, partitions, owner.")
    tables.add_argument("--layer", choices=["bronze", "silver", "gold", "ops"], help="only this layer")
    tables.set_defaults(run=_tables)

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
                    "<state>/pipeline_runs/). Exits 2 when a quality gate stopped it, 1 on another failure.")
    pipeline.add_argument("--step", action="append", choices=STEP_ORDER, help="only this step (repeatable)")
    pipeline.add_argument("--from", dest="start", choices=STEP_ORDER, help="this step and the ones after it")
    pipeline.add_argument("--retries", type=int, help=f"retries per step (default: each step's own, {RETRIES})")
    pipeline.set_defaults(run=_pipeline)
    commands.add_parser("bootstrap", help="first run: simulate the default data set and run the pipeline",
                        description="Simulate the default data set if the landing zone is empty, then run the "
                                    "pipeline; does nothing once done (marker: <state>/bootstrap.json)."
                        ).set_defaults(run=_pipeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
