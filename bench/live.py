"""Live repricing benchmark (issue 23): how fast a competitor's move reaches the live arm's price, what the
live arm earns during competitor shocks against the daily book and the oracle, and the price route with
live features on.

Self-contained like `bench.api`: a temporary state folder, free ports, Kafka and MLflow from
`orchestration.stack`, the bench lake (`bench.api.build_lake`), then the stack's streaming driver (bronze
queries and streaming features, default trigger) and the API (`bench.api.serve_api`, default live-feature
poll). The live market (`simulator.market.run`) runs in a thread: routine observations throughout, and
after a warm-up `SHOCKS` scripted competitor shocks `SHOCK_EVERY_S` apart, each on its own SKU by every
competitor at once, alternately a cut (x`CUT`) and a raise (x`RAISE`), lasting the simulator's hour.

- Reaction: per shock, from the produce time of its first message to the first answer of the live arm (a
  customer the experiment assigns `live`) for that SKU decided on live features as of the shock or later
  (`live_features_as_of`), polled every `POLL_S`. Reference: the same messages' bronze landing (commit
  time of the Delta batch holding the last of them minus the first's produce time).
- Profit: per shocked SKU over the shock's hour, the true expected profit (`simulator.truth`) of the live
  arm's price path (its answers sampled from the shock's start to the end of the run, the last one held
  for the rest of the hour) against the daily book (the model arm's price, held all hour) and the oracle.
- API: after the shocks, `POST /v1/prices` for customers of the live arm against the no-op route of the
  same server, as `bench.api` measures it, and the model arm's (the daily book's) as a second reference in
  the details: first beside the running market and streaming driver (details), then with the driver
  stopped and the live book full (the records: the machine is the API's, as in `bench.api`). As in
  `bench.api` and `make up`, the API's decision log sends every answer to the real broker.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.api import (
    CUSTOMERS,
    DURATION_S,
    HOST,
    NOOP_PATH,
    SIMULATION,
    Target,
    _judged,
    _measure,
    _wait_ready,
    bench_services_and_lake,
    customers_on_variant,
    decision_log_delivery,
    http_request,
    noop_records,
    start_api,
    summarize,
)
from bench.results import BenchRecord
from lakehouse.settings import Settings
from lakehouse.tables import table
from orchestration.stack import Stack
from pricing.live import LIVE
from simulator import market
from simulator import truth as sim_truth
from simulator.shocks import Shock, live_day, scripted_shocks
from simulator.world import World

log = logging.getLogger(__name__)

SHOCKS = 60
SHOCK_EVERY_S = 4.0
CUT, RAISE = 0.8, 1.2
WARMUP_S = 60.0  # routine market before the first shock: the queries and the API's live book are warm
SETTLE_S = 60.0  # after the last shock, so that it too is reacted to and priced for a while
POLL_S = 0.25  # between asks for a SKU not yet reacted to
SAMPLE_S = 2.0  # between asks for a SKU already reacted to (its price path)
TARGET_REACTION_P95_S = 30.0
TARGET_VS_DAILY, TARGET_VS_ORACLE = 1.05, 0.95


def shocked_skus(world: World, pool: list[dict], count: int) -> list[str]:
    """The first `count` SKUs (sorted) that the API prices from features and some competitor sells on the
    live day: one per shock, so that no shock meets another's change limit."""
    day = live_day(world)
    sold = world.covered.any(axis=1) & world.is_active(day)
    candidates = sorted(sku for sku in {row["sku"] for row in pool} if sold[world.sku_index([sku])[0]])
    if len(candidates) < count:
        raise RuntimeError(f"only {len(candidates)} SKUs are both priced and sold by a competitor; need {count}")
    return candidates[:count]


def bench_shocks(world: World, skus: list[str], start: datetime) -> list[Shock]:
    """One scripted competitor shock per SKU, `SHOCK_EVERY_S` apart after `WARMUP_S`, cuts and raises in turn."""
    script = [{"kind": "competitor_cut" if n % 2 == 0 else "competitor_raise", "skus": [sku],
               "multiplier": CUT if n % 2 == 0 else RAISE, "at_s": WARMUP_S + n * SHOCK_EVERY_S}
              for n, sku in enumerate(skus)]
    return scripted_shocks(world, start, script)


@dataclass(frozen=True)
class Answer:
    """One answer of the live arm for a shocked SKU."""

    sku: str
    at: datetime  # when the answer was read (UTC)
    price_usd: float
    reason_code: str | None
    live_features_as_of: datetime | None


def watch(port: int, api_key: str, customer: str, shocks: list[Shock], until: datetime) -> list[Answer]:
    """Ask the live arm for each shocked SKU from its shock's start until `until`: every `POLL_S` until an
    answer is decided on features as of the shock, then every `SAMPLE_S`. Grain: one row per answer."""
    import httpx

    answers: list[Answer] = []
    reacted: set[str] = set()
    next_ask = {shock.skus[0]: shock.start for shock in shocks}
    with httpx.Client(base_url=f"http://{HOST}:{port}", headers={"X-API-Key": api_key}, timeout=10) as client:
        while (now := datetime.now(UTC)) < until:
            for shock in shocks:
                sku = shock.skus[0]
                if next_ask[sku] > now:
                    continue
                response = client.post("/v1/prices", json={"sku": sku, "customer": {"customer_id": customer}})
                body = response.json()
                if response.status_code != 200 or body["variant"] != LIVE:
                    raise RuntimeError(f"{sku}: expected a live-arm price, got {response.status_code} {body}")
                as_of = body["live_features_as_of"]
                answer = Answer(sku, datetime.now(UTC), body["price_usd"], body["reason_code"],
                                datetime.fromisoformat(as_of) if as_of else None)
                answers.append(answer)
                if answer.live_features_as_of is not None and answer.live_features_as_of >= shock.start:
                    reacted.add(sku)
                next_ask[sku] = answer.at + timedelta(seconds=SAMPLE_S if sku in reacted else POLL_S)
            time.sleep(max(0.0, (min(next_ask.values()) - datetime.now(UTC)).total_seconds()))
    return answers


def reactions(shocks: list[Shock], answers: pd.DataFrame, messages: pd.DataFrame) -> pd.DataFrame:
    """Per shock: the produce time of its first message, the first answer decided on features as of the
    shock, the reaction (s) between them, and that answer's price and reason code. Grain: one row per
    shock; a shock never reacted to has NaN reaction."""
    rows = []
    for shock in shocks:
        sku = shock.skus[0]
        produced = messages.loc[(messages["shock_id"] == shock.shock_id) & (messages["reason"] == "shock_start"),
                                "produced_at"].min()
        mine = answers[(answers["sku"] == sku) & (answers["live_features_as_of"] >= shock.start)]
        first = mine.sort_values("at").head(1)
        answered = first["at"].iloc[0] if len(first) else pd.NaT
        rows.append({"shock_id": shock.shock_id, "sku": sku, "kind": shock.kind, "produced_at": produced,
                     "answered_at": answered, "reaction_s": (answered - produced).total_seconds(),
                     "price_usd": first["price_usd"].iloc[0] if len(first) else np.nan,
                     "reason_code": first["reason_code"].iloc[0] if len(first) else None})
    return pd.DataFrame(rows)


def bronze_landings(settings: Settings, shocks: list[Shock], messages: pd.DataFrame) -> pd.Series:
    """Per shock id: seconds from the produce time of its first message to the bronze commit of its last
    (Delta commit timestamps of `bronze.market_prices_stream`, read with delta-rs)."""
    from deltalake import DeltaTable

    location = table("bronze.market_prices_stream").location(settings)
    bronze = DeltaTable(location)
    commits = {}
    for commit in bronze.history():
        metadata = commit.get("userMetadata") or ""
        if metadata.startswith('{"query_id"'):
            written = json.loads(metadata)
            at = pd.Timestamp(commit["timestamp"], unit="ms", tz="UTC")
            commits[f"{written['query_id']}/{written['batch']}"] = at
    rows = bronze.to_pandas(columns=["_kafka_partition", "_kafka_offset", "_batch_id"])
    landed = rows.assign(committed_at=rows["_batch_id"].map(commits)).rename(
        columns={"_kafka_partition": "partition", "_kafka_offset": "offset"})
    ids = {shock.shock_id for shock in shocks}
    sent = messages[messages["shock_id"].isin(ids) & (messages["reason"] == "shock_start")]
    joined = sent.astype({"partition": "int64", "offset": "int64"}).merge(
        landed.astype({"partition": "int64", "offset": "int64"}), on=["partition", "offset"], how="left")
    per_shock = joined.groupby("shock_id").agg(produced=("produced_at", "min"), committed=("committed_at", "max"))
    return (per_shock["committed"] - per_shock["produced"]).dt.total_seconds()


def _per_hour(world: World, sku: str, prices, at: datetime, shocks: list[Shock]) -> np.ndarray:
    """True expected profit per hour of `sku` at each of `prices`, in the market of instant `at`."""
    prices = np.atleast_1d(np.asarray(prices, dtype=float))
    return sim_truth.true_expected_profit(world, [sku] * len(prices), prices, at, shocks)


def shock_profits(world: World, shocks: list[Shock], answers: pd.DataFrame,
                  daily_price: dict[str, float]) -> pd.DataFrame:
    """Per shock, the true expected profit (USD) over its whole duration of the live arm's price path, of
    the daily book's price, of the oracle's and of the oracle's price before the shock. The live path: each
    answer's price holds until the next answer, the first from the shock's start, the last to the shock's
    end. Grain: one row per shock."""
    rows = []
    for shock in shocks:
        sku = shock.skus[0]
        at = shock.start + timedelta(seconds=1)  # inside the shock: its market state

        path = answers[(answers["sku"] == sku) & (answers["at"] >= shock.start)].sort_values("at")
        ends = [*path["at"].iloc[1:], shock.end]
        starts = [shock.start, *path["at"].iloc[1:]]
        hours = np.array([(end - begin).total_seconds() / 3600 for begin, end in zip(starts, ends, strict=True)])
        oracle = float(sim_truth.oracle_price(world, [sku], at, shocks)[0])
        # The oracle's price of the instant before the shock, kept through it: what knowing the shock is worth.
        unreacted = float(sim_truth.oracle_price(world, [sku], shock.start - timedelta(seconds=1), shocks)[0])
        duration_h = shock.duration.total_seconds() / 3600
        rows.append({"shock_id": shock.shock_id, "sku": sku, "kind": shock.kind,
                     "live_profit": float((_per_hour(world, sku, path["price_usd"], at, shocks) * hours).sum()),
                     "daily_profit": float(_per_hour(world, sku, daily_price[sku], at, shocks)[0] * duration_h),
                     "oracle_profit": float(_per_hour(world, sku, oracle, at, shocks)[0] * duration_h),
                     "oracle_unreacted_profit": float(_per_hour(world, sku, unreacted, at, shocks)[0] * duration_h),
                     "daily_price": daily_price[sku], "oracle_price": oracle,
                     "last_live_price": float(path["price_usd"].iloc[-1]) if len(path) else np.nan})
    return pd.DataFrame(rows)


def _percentiles(seconds: pd.Series) -> dict:
    p50, p95 = np.percentile(seconds.to_numpy(dtype=float), [50, 95])
    return {"p50_s": round(float(p50), 2), "p95_s": round(float(p95), 2), "max_s": round(float(seconds.max()), 2),
            "n": int(seconds.size)}


def records(reaction: dict, landing: dict, profits: pd.DataFrame, details: dict) -> list[BenchRecord]:
    """`live_reaction_p95` / `_p50` (reference: bronze landing of the same messages) and `live_profit_vs_daily`
    / `_vs_oracle` (USD during the shocks; the reference is the daily book's, the oracle's profit)."""
    reacted_all = reaction["n"] == reaction["shocks"]
    live, daily, oracle = (round(float(profits[c].sum()), 2) for c in ("live_profit", "daily_profit", "oracle_profit"))
    p95 = BenchRecord("live_reaction_p95", reaction["p95_s"], "s p95", "bronze landing p95, same messages",
                      landing["p95_s"], f"p95 <= {TARGET_REACTION_P95_S:g} s, every shock reacted to",
                      reacted_all and reaction["p95_s"] <= TARGET_REACTION_P95_S, details)
    p50 = BenchRecord("live_reaction_p50", reaction["p50_s"], "s p50", "bronze landing p50, same messages",
                      landing["p50_s"], "informational (p95 carries the target)", True, details)
    by_daily = BenchRecord("live_profit_vs_daily", live, "USD true expected profit during the shocks",
                           "daily book (model arm), same shocks", daily, f"ratio >= {TARGET_VS_DAILY}", False, details)
    by_oracle = BenchRecord("live_profit_vs_oracle", live, "USD true expected profit during the shocks",
                            "oracle's path, same shocks", oracle, f"ratio >= {TARGET_VS_ORACLE}", False, details)
    return [p95, p50, _judged(by_daily, by_daily.ratio >= TARGET_VS_DAILY),
            _judged(by_oracle, by_oracle.ratio >= TARGET_VS_ORACLE)]


def _prices(port: int, api_key: str, customer: str, skus: list[str]) -> dict[str, float]:
    """The price per SKU the API answers `customer` (one ask each)."""
    import httpx

    with httpx.Client(base_url=f"http://{HOST}:{port}", headers={"X-API-Key": api_key}) as client:
        answers = {sku: client.post("/v1/prices", json={"sku": sku, "customer": {"customer_id": customer}})
                   for sku in skus}
    refused = {sku: a.text[:200] for sku, a in answers.items() if a.status_code != 200}
    if refused:
        raise RuntimeError(f"the API refused to price {refused}")
    return {sku: a.json()["price_usd"] for sku, a in answers.items()}


def run(scale: float) -> list[BenchRecord]:
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    loadavg_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp, ExitStack() as running:
        settings, env, pool, lake_s = bench_services_and_lake(Path(tmp), running)
        # After the lake: the driver's market checks read the catalogue and the demand profile from gold.
        streaming = Stack(settings, only=["streaming"])
        running.callback(streaming.down)
        streaming.up()
        api = running.enter_context(start_api(settings, env))
        _wait_ready("api", api, f"http://{HOST}:{settings.api_port}/readyz", settings.logs_dir / "api.log")
        api_key = (settings.state_dir / "api_key.txt").read_text().strip()

        world = sim_truth.load(settings.truth_dir).world
        skus = shocked_skus(world, pool, SHOCKS)
        experiments = settings.api_experiments_file
        live_customers = customers_on_variant(experiments, CUSTOMERS, LIVE)
        daily_price = _prices(settings.api_port, api_key, customers_on_variant(experiments, 1)[0], skus)
        start = datetime.now(UTC) + timedelta(seconds=2)
        shocks = bench_shocks(world, skus, start)
        until = start + timedelta(seconds=WARMUP_S + SHOCKS * SHOCK_EVERY_S + SETTLE_S)
        log.info("live market with shocks", extra={"shocks": SHOCKS, "every_s": SHOCK_EVERY_S,
                                                   "seconds": (until - start).total_seconds()})
        shocked = market.MarketThread(settings, (until - start).total_seconds(), shocks, start)
        shocked.start()
        answers = pd.DataFrame(watch(settings.api_port, api_key, live_customers[0], shocks, until))
        sent = pd.read_parquet(shocked.join_result().messages_path)
        landing = bronze_landings(settings, shocks, sent)

        # The price route with live features on: the live book is full and the market keeps streaming.
        model_customers = customers_on_variant(experiments, CUSTOMERS)
        key = {"X-API-Key": api_key}

        def requests(path: str, customers: list[str]) -> list[bytes]:
            return [http_request(path, {"sku": row["sku"], "customer": {"customer_id": customers[i % len(customers)]}},
                                 key) for i, row in enumerate(pool)]

        targets = [Target("noop", settings.api_port, api.pid, requests(NOOP_PATH, live_customers)),
                   Target("price", settings.api_port, api.pid, requests("/v1/prices", live_customers)),
                   Target("model", settings.api_port, api.pid, requests("/v1/prices", model_customers))]
        # First beside the running market and streaming driver (what a laptop running make up sees), then with
        # the driver stopped: the live book stays full, and the API has the machine as in bench.api.
        routine = market.MarketThread(settings, 3 * DURATION_S * scale + 30, [], datetime.now(UTC))
        routine.start()
        beside_streaming = _measure(targets, DURATION_S * scale)
        routine.join_result()
        streaming.down()
        samples = _measure(targets, DURATION_S * scale)
        live_book = httpx.get(f"http://{HOST}:{settings.api_port}/readyz").json()
        api_server, decision_log = decision_log_delivery(settings)

    reacted = reactions(shocks, answers, sent)
    profits = shock_profits(world, shocks, answers, daily_price)
    reaction = {**_percentiles(reacted["reaction_s"].dropna()), "shocks": len(shocks)}
    details = {
        "shocks": SHOCKS, "shock_every_s": SHOCK_EVERY_S, "multipliers": {"cut": CUT, "raise": RAISE},
        "warmup_s": WARMUP_S, "settle_s": SETTLE_S, "poll_s": POLL_S, "sample_s": SAMPLE_S,
        "streaming_trigger": settings.streaming_trigger_interval, "live_features_poll_s": settings.live_features_poll_s,
        "reaction": reaction, "bronze_landing": _percentiles(landing.dropna()),
        "reason_codes": reacted["reason_code"].fillna("none").value_counts().to_dict(),
        "price_moved": int((reacted["price_usd"].round(2) != reacted["sku"].map(daily_price).round(2)).sum()),
        "profit_by_kind": profits.groupby("kind")[["live_profit", "daily_profit", "oracle_profit"]].sum()
        .round(2).to_dict(orient="index"),
        "oracle_vs_daily": round(float(profits["oracle_profit"].sum() / profits["daily_profit"].sum()), 4),
        # What reacting can earn at best in this market: the oracle against its own pre-shock price.
        "oracle_vs_oracle_unreacted": round(float(profits["oracle_profit"].sum()
                                                  / profits["oracle_unreacted_profit"].sum()), 4),
        "per_shock": profits.round(4).to_dict(orient="records"),
        "answers": len(answers), "lake_build_s": lake_s, "simulation": SIMULATION,
        "api_with_live_features": {"price": summarize(samples["price"]), "noop": summarize(samples["noop"]),
                                   "model_arm": summarize(samples["model"]), "readyz": live_book,
                                   "decision_log": decision_log, "api_server": api_server},
        "api_beside_streaming": {name: summarize(sample) for name, sample in beside_streaming.items()},
        "loadavg_before": [round(x, 2) for x in loadavg_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    result = [*records(reaction, details["bronze_landing"], profits, details),
              *noop_records(summarize(samples["price"]), summarize(samples["noop"]), details, decision_log,
                            name="api_price_single_live_features")]
    log.info("live bench", extra={"details": json.dumps(details, default=str)})
    return result
