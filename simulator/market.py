"""The live market: competitors re-observe their prices and a sender produces the observations to Kafka.

Each competitor re-observes its quotes continually: observations arrive as a Poisson process of
`per_second` in all, each of a (SKU, competitor) pair drawn uniformly among the pairs on sale; and a
competitor shock makes every pair it hits observed at once, at its start and again at its end. The
price observed is the world's quote of the live day in the competitor's currency, times the shocks
active at that instant (`simulator.shocks`), as the batch history's `market_prices` renders it; SKUs
are canonical. Messages are the landing schema's JSON objects (`observed_at` an ISO-8601 UTC string)
on `<prefix>.market_prices`, keyed by SKU. Every message sent is recorded, with its produce time and
Kafka coordinates, in `<truth>/market_messages.parquet`; the shocks and the oracle's path through
them go to `<truth>/shocks.parquet` and `<truth>/oracle_path.parquet` (`simulator.truth`).

    python -m simulator.market --duration 600 --shocks scripted --shock-minutes 3
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from confluent_kafka import KafkaError

from lakehouse.kafka import ensure_topics, kafka_producer, send
from lakehouse.log import configure_logging
from lakehouse.schemas.landing import MARKET_PRICES
from lakehouse.settings import Settings, get_settings
from lakehouse.streams import MARKET_STREAM
from simulator import truth as sim_truth
from simulator.config import COMPETITORS, rng_for
from simulator.shocks import (
    COMPETITOR_KINDS,
    SCRIPT,
    Shock,
    competitor_multiplier,
    instants_ns,
    live_day,
    random_shocks,
    scripted_shocks,
    shocked_quote,
)
from simulator.sources import CURRENCY_NAMES
from simulator.world import World
from streaming.producer import ProduceError

log = logging.getLogger(__name__)

MESSAGE_FIELDS = tuple(MARKET_PRICES.fieldNames())
ROUTINE_PER_S = 2.0  # routine observations per second, all competitors together
PROGRESS_EVERY_S = 5.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MESSAGE_TRUTH_COLUMNS = ("run_id", "message_id", "topic", "key", "partition", "offset", *MESSAGE_FIELDS,
                         "produced_at", "reason", "shock_id")


def observations(world: World, start: datetime, end: datetime, shocks: Sequence[Shock] = (),
                 per_second: float = ROUTINE_PER_S, seed: int = 0, day: int | None = None) -> pd.DataFrame:
    """Competitors' observations in [start, end) on the world's state of `day` (default `live_day`).

    Grain: one row per observation, sorted by `observed_at` (UTC, microseconds): the landing columns
    (`sku` canonical, `price` in `currency`, the competitor's) plus `reason` (`routine`,
    `shock_start`, `shock_end`) and `shock_id` (the shock that triggered it, else None). The same
    arguments give the same rows."""
    if per_second < 0 or end <= start:
        raise ValueError(f"need per_second >= 0 and end > start, got {per_second}, {start}..{end}")
    day = live_day(world) if day is None else day
    rng = rng_for(seed, "live_market")
    start_ns, end_ns = int(instants_ns(start)), int(instants_ns(end))
    on_sale = world.covered & world.is_active(day)[:, None]
    pair_sku, pair_comp = np.nonzero(on_sale)
    n = int(rng.poisson(per_second * (end_ns - start_ns) / 1e9)) if len(pair_sku) else 0
    pick = rng.integers(0, max(1, len(pair_sku)), n)
    span_us = max(1, (end_ns - start_ns) // 1000)
    parts = [(pair_sku[pick], pair_comp[pick], start_ns + 1000 * np.sort(rng.integers(0, span_us, n)), "routine", None)]
    for shock in shocks:
        if shock.kind not in COMPETITOR_KINDS:
            continue
        hit = np.zeros_like(on_sale)
        comps = slice(None) if shock.competitor is None else COMPETITORS.index(shock.competitor)
        hit[world.sku_index(shock.skus), comps] = True
        sku, comp = np.nonzero(hit & on_sale)
        for instant, reason in ((shock.start, "shock_start"), (shock.end, "shock_end")):
            t_ns = int(instants_ns(instant))
            if start_ns <= t_ns < end_ns:
                parts.append((sku, comp, np.full(len(sku), t_ns), reason, shock.shock_id))
    sku = np.concatenate([p[0] for p in parts]).astype(np.int64)
    comp = np.concatenate([p[1] for p in parts]).astype(np.int64)
    t_ns = np.concatenate([p[2] for p in parts]).astype(np.int64)
    # Shock observations first, so that one at the same instant as a routine one is the one kept.
    frame = pd.DataFrame({
        "i": sku, "c": comp, "t": t_ns,
        "reason": np.repeat([p[3] for p in parts], [len(p[0]) for p in parts]),
        "shock_id": np.concatenate([np.full(len(p[0]), p[4], dtype=object) for p in parts]),
        "priority": np.repeat([0 if p[4] is None else 1 for p in parts], [len(p[0]) for p in parts]),
    }).sort_values(["t", "priority", "c", "i"], ascending=[True, False, True, True], kind="stable")
    frame = frame.drop_duplicates(["i", "c", "t"]).reset_index(drop=True)
    i, c, t = frame["i"].to_numpy(), frame["c"].to_numpy(), frame["t"].to_numpy()
    quote = world.competitor_quote[world.state_day(day), i, c]
    return pd.DataFrame({
        "sku": world.sku_id[i],
        "competitor": np.asarray(COMPETITORS)[c],
        "price": shocked_quote(quote, competitor_multiplier(world, shocks, i, c, t)),
        "currency": CURRENCY_NAMES[world.competitor_currency[c]],
        "observed_at": pd.to_datetime(t, utc=True).as_unit("us"),
        "reason": frame["reason"].to_numpy(),
        "shock_id": frame["shock_id"].to_numpy(),
    }, columns=[*MESSAGE_FIELDS, "reason", "shock_id"])


def message(row) -> dict:
    """An observation row as its Kafka message: the landing columns, `observed_at` as ISO-8601 UTC."""
    return {"sku": str(row.sku), "competitor": str(row.competitor), "price": float(row.price),
            "currency": str(row.currency), "observed_at": row.observed_at.isoformat(timespec="microseconds")}


@dataclass(frozen=True)
class MarketRun:
    """What a run sent and where its truth is."""

    run_id: str
    start: datetime
    end: datetime
    messages: int
    shocks: int
    messages_path: Path
    shocks_path: Path
    oracle_path: Path


def run(settings: Settings, duration_s: float, shocks: Sequence[Shock] = (), start: datetime | None = None,
        per_second: float = ROUTINE_PER_S, seed: int = 0, day: int | None = None, topic: str | None = None,
        producer=None) -> MarketRun:
    """The live market for `duration_s` seconds from `start` (default now) on the world of
    `<truth>/model.json`: each observation is produced at its `observed_at`, keyed by SKU, to `topic`
    (default `<prefix>.market_prices`, created if missing), its Kafka timestamp the produce time.
    Truth files are written before the first message (shocks, oracle path) and at the end (messages
    sent, also when stopped early). With a `producer` given (a confluent-kafka `Producer`), the caller owns
    it and the topic. Returns once Kafka acknowledged every message; raises
    `streaming.producer.ProduceError` otherwise."""
    if duration_s <= 0:
        raise ValueError("the duration must be positive: the market always stops by itself")
    world = sim_truth.load(settings.truth_dir).world
    day = live_day(world) if day is None else day
    start = datetime.now(UTC) if start is None else start
    end = start + timedelta(seconds=duration_s)
    schedule = observations(world, start, end, shocks, per_second, seed, day)
    topic = topic or MARKET_STREAM.topic(settings)
    own_producer = producer is None
    if own_producer:
        ensure_topics(settings, [MARKET_STREAM])
        producer = kafka_producer(settings.kafka_bootstrap_servers)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    shocks_path, oracle_path = sim_truth.write_shock_truth(settings.truth_dir, world, shocks, start, end, run_id, day)
    messages_path = settings.truth_dir / sim_truth.MARKET_MESSAGES_FILE
    failures: list[KafkaError] = []
    coordinates: dict[int, tuple[int, int]] = {}
    produced_at: list[datetime] = []
    last_log, previous = time.monotonic(), None
    log.info("market starting", extra={"run_id": run_id, "topic": topic, "scheduled": len(schedule),
                                       "shocks": len(shocks), "duration_s": duration_s})
    try:
        for n, row in enumerate(schedule.itertuples(index=False)):
            wait = (row.observed_at - datetime.now(UTC)).total_seconds()
            if wait > 0:
                time.sleep(wait)
            value = json.dumps(message(row)).encode()
            now = datetime.now(UTC)
            send(producer, topic, value, row.sku.encode(), timestamp_ms=(now - EPOCH) // timedelta(milliseconds=1),
                    on_delivery=lambda error, sent, n=n: failures.append(error) if error is not None
                    else coordinates.__setitem__(n, (sent.partition(), sent.offset())))
            produced_at.append(now)
            if row.reason != "routine" and (row.shock_id, row.reason) != previous:
                log.info("shock observed", extra={"shock_id": row.shock_id, "reason": row.reason})
            previous = (row.shock_id, row.reason)
            if time.monotonic() - last_log >= PROGRESS_EVERY_S:
                last_log = time.monotonic()
                log.info("market", extra={"sent": len(produced_at), "scheduled": len(schedule),
                                          "seconds": round((now - start).total_seconds())})
        producer.flush()
    finally:
        if own_producer:
            producer.close()
        sent = schedule.iloc[:len(produced_at)]
        position = [coordinates.get(n, (None, None)) for n in range(len(sent))]
        pd.DataFrame({
            "run_id": run_id, "message_id": np.arange(len(sent)), "topic": topic, "key": sent["sku"],
            **{f: sent[f] for f in MESSAGE_FIELDS},
            "partition": pd.array([p for p, _ in position], dtype="Int32"),
            "offset": pd.array([o for _, o in position], dtype="Int64"),
            "produced_at": pd.to_datetime(produced_at, utc=True).as_unit("us"),
            "reason": sent["reason"], "shock_id": sent["shock_id"],
        }, columns=list(MESSAGE_TRUTH_COLUMNS)).to_parquet(messages_path, index=False)
    if failures:
        raise ProduceError(f"{len(failures)} market messages not acknowledged: {failures[0]!r}")
    log.info("market done", extra={"run_id": run_id, "sent": len(produced_at), "truth": str(messages_path)})
    return MarketRun(run_id, start, end, len(produced_at), len(shocks), messages_path, shocks_path, oracle_path)


class MarketThread(threading.Thread):
    """`run` in a background thread, for a caller that does something else meanwhile (the demo's shoppers,
    the live bench); `join_result()` waits for the market and returns its `MarketRun` or raises its error."""

    def __init__(self, settings: Settings, duration_s: float, shocks: Sequence[Shock] = (),
                 start: datetime | None = None):
        super().__init__(name="live-market", daemon=True)
        self.settings, self.duration_s, self.shocks, self.start_at = settings, duration_s, shocks, start
        self.result: MarketRun | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = run(self.settings, self.duration_s, self.shocks, start=self.start_at)
        except Exception as error:  # noqa: BLE001 - handed to the caller's thread by join_result
            self.error = error

    def join_result(self, grace_s: float = 120.0) -> MarketRun:
        self.join(timeout=self.duration_s + grace_s)
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError(f"the live market did not finish within {self.duration_s + grace_s:.0f} s")
        return self.result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.market", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="The live market: competitor price observations to Kafka (<prefix>.market_prices), with "
                    "scripted or random shocks; the truth (shocks, oracle path, messages sent) to <truth>/.")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to run")
    parser.add_argument("--shocks", choices=("scripted", "random", "none"), default="scripted",
                        help="scripted: simulator.shocks.SCRIPT (or --script); random: a Poisson process")
    parser.add_argument("--script", type=Path, default=None, help="a JSON list of script entries instead of SCRIPT")
    parser.add_argument("--shock-minutes", type=float, default=None,
                        help="minutes every scripted shock lasts (None: each entry's minutes, else 60)")
    parser.add_argument("--rate-per-hour", type=float, default=2.0, help="random shocks started per hour")
    parser.add_argument("--per-second", type=float, default=ROUTINE_PER_S, help="routine observations per second")
    parser.add_argument("--seed", type=int, default=0, help="seed of the observations and random shocks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    settings = get_settings()
    world = sim_truth.load(settings.truth_dir).world
    start = datetime.now(UTC)
    if args.shocks == "scripted":
        script = json.loads(args.script.read_text()) if args.script else SCRIPT
        minutes = timedelta(minutes=args.shock_minutes) if args.shock_minutes else None
        shocks = scripted_shocks(world, start, script, duration=minutes)
    elif args.shocks == "random":
        shocks = random_shocks(world, start, start + timedelta(seconds=args.duration), args.rate_per_hour, args.seed)
    else:
        shocks = []
    result = run(settings, args.duration, shocks, start=start, per_second=args.per_second, seed=args.seed)
    print(json.dumps({"run_id": result.run_id, "messages": result.messages, "shocks": result.shocks,
                      "truth": [str(result.messages_path), str(result.shocks_path), str(result.oracle_path)]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
