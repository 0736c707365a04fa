"""The carriers' quote services, played by the simulator: one HTTP service per carrier, answering from the
simulation's true rate cards, with latency and faults that can be set while it runs.

No real carrier API can be reached from here, so these stand in for them (docs/simulator.md):

- `POST /quote` `{"postal_code", "service_level", "weight_kg", "volume_cm3"}` -> `{"carrier", "service_level",
  "zone", "is_remote", "billable_weight_kg", "price_usd", "currency", "effective_from"}`: the carrier's own
  zone chart and billable weight (its volumetric divisor), the rate card in force on the service's day.
  An unknown postal code or service level is a 422 with a message.
- `GET /faults`, `PUT /faults` `{"latency_ms", "fault"}`: added latency per quote, and the fault:
  `none`; `error` (HTTP 503); `malformed` (a 200 whose body is not a quote); `hang` (no answer for
  `HANG_S`, which outlasts any client's timeout).
- `GET /healthz`.

`CarrierServices` runs one per carrier in this process (uvicorn on free loopback ports, one thread each),
for tests and benchmarks; `python -m simulator.carriers` serves them from a process of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.reference import CARRIERS, SERVICE_LEVELS
from simulator.config import SimConfig, rng_for
from simulator.shipping import RateCard, billable_weight_kg, build_rate_cards, rate_card_cost, zone_chart
from transforms.rules import zip5

HOST = "127.0.0.1"
HANG_S = 60.0
Fault = Literal["none", "error", "malformed", "hang"]
MALFORMED_BODY = '{"carrier": "quote interrupted", "price_usd": '


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(0.0, ge=0, le=60_000, description="added to every quote")
    fault: Fault = "none"


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    postal_code: str = Field(max_length=16)
    service_level: str
    weight_kg: float = Field(gt=0, le=1000)
    volume_cm3: float = Field(ge=0, le=1e8)


class Quote(BaseModel):
    carrier: str
    service_level: str
    zone: int
    is_remote: bool
    billable_weight_kg: float
    price_usd: float
    currency: Literal["USD"] = "USD"
    effective_from: date


def true_rate_cards(config: SimConfig) -> list[RateCard]:
    """The simulation's rate cards (`simulator.world.World` builds the same ones)."""
    return build_rate_cards(rng_for(config.seed, "rates"), config.model, config.days // 2)


def simulation_config(truth_dir: Path) -> SimConfig:
    """The configuration of the simulation whose truth is in `truth_dir` (`simulator.truth`), or the default."""
    from simulator.truth import MODEL_FILE

    path = Path(truth_dir) / MODEL_FILE
    return SimConfig.from_json(json.loads(path.read_text())["config"]) if path.exists() else SimConfig()


def quote(config: SimConfig, cards: list[RateCard], carrier: str, request: QuoteRequest, today: date) -> Quote:
    """The carrier's price of one parcel on `today` (ValueError for a postal code or service level it does not
    serve)."""
    zip_code = zip5(request.postal_code)
    prefixes, zones, remote = zone_chart()
    row = np.flatnonzero(prefixes == int(zip_code[:3])) if zip_code else []
    if len(row) == 0:
        raise ValueError(f"postal code {request.postal_code!r} is not served")
    if request.service_level not in SERVICE_LEVELS:
        raise ValueError(f"unknown service level {request.service_level!r}; known: {', '.join(SERVICE_LEVELS)}")
    c, s, z, r = CARRIERS.index(carrier), SERVICE_LEVELS.index(request.service_level), int(zones[row[0]]), \
        bool(remote[row[0]])
    day = max(0, config.day_of(today))
    billable = float(billable_weight_kg(np.array([request.weight_kg]), np.array([request.volume_cm3]),
                                        np.array([c]))[0])
    price = float(rate_card_cost(cards, np.array([day]), np.array([c]), np.array([s]), np.array([z]),
                                 np.array([billable]), np.array([r]))[0])
    in_force = max(card.effective_day for card in cards if card.effective_day <= day)
    return Quote(carrier=carrier, service_level=request.service_level, zone=z, is_remote=r,
                 billable_weight_kg=round(billable, 4), price_usd=round(price, 2),
                 effective_from=config.day_date(in_force))


def carrier_app(carrier: str, config: SimConfig, faults: Faults | None = None, today: date | None = None) -> FastAPI:
    """One carrier's quote service; `today` fixes the day it prices on (default: the real UTC day)."""
    if carrier not in CARRIERS:
        raise ValueError(f"unknown carrier {carrier!r}; known: {', '.join(CARRIERS)}")
    cards = true_rate_cards(config)
    app = FastAPI(title=f"{carrier} quotes (simulated)")
    app.state.faults = faults or Faults()
    app.state.asked = 0  # quote requests received, for tests and benchmarks

    @app.post("/quote")
    async def post_quote(body: QuoteRequest) -> Response:
        app.state.asked += 1
        current: Faults = app.state.faults
        if current.latency_ms:
            await asyncio.sleep(current.latency_ms / 1000)
        if current.fault == "hang":
            await asyncio.sleep(HANG_S)
        if current.fault == "error":
            raise HTTPException(503, f"{carrier}: quote service unavailable (simulated fault)")
        if current.fault == "malformed":
            return Response(MALFORMED_BODY, media_type="application/json")
        try:
            answer = quote(config, cards, carrier, body, today or date.today())
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.get("/faults")
    async def get_faults() -> Faults:
        return app.state.faults

    @app.put("/faults")
    async def put_faults(body: Faults) -> Faults:
        app.state.faults = body
        return body

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "carrier": carrier}

    return app


class CarrierServices:
    """Every carrier's quote service in this process, each on its own loopback port and thread.

    `with CarrierServices(config) as services:` then `services.urls` (carrier -> base URL) and
    `services.set_faults(carrier, Faults(...))`.
    """

    def __init__(self, config: SimConfig, today: date | None = None, ports: dict[str, int] | None = None,
                 carriers: tuple[str, ...] = CARRIERS) -> None:
        self.apps = {c: carrier_app(c, config, today=today) for c in carriers}
        self.ports = ports or {}
        self.servers: dict[str, uvicorn.Server] = {}
        self.threads: list[threading.Thread] = []
        self.urls: dict[str, str] = {}

    def set_faults(self, carrier: str, faults: Faults) -> None:
        self.apps[carrier].state.faults = faults

    def __enter__(self) -> CarrierServices:
        for carrier, app in self.apps.items():
            server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=self.ports.get(carrier, 0),
                                                   log_level="warning", access_log=False))
            thread = threading.Thread(target=server.run, name=f"carrier-{carrier}", daemon=True)
            thread.start()
            self.servers[carrier] = server
            self.threads.append(thread)
        deadline = time.monotonic() + 30
        for carrier, server in self.servers.items():
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            if not server.started:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the {carrier} quote service did not start within 30 s")
            self.urls[carrier] = f"http://{HOST}:{server.servers[0].sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc) -> None:
        for server in self.servers.values():
            server.should_exit = True
        for thread in self.threads:
            thread.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.carriers",
        description="Serve every carrier's simulated quote service (true rate cards, settable faults) until "
                    "interrupted; prints one JSON line: carrier -> URL.")
    parser.add_argument("--truth", type=Path, default=None,
                        help="the simulation's ground-truth folder (its rate cards) [settings.truth_dir]")
    parser.add_argument("--carrier", action="append", choices=CARRIERS, default=None,
                        help="serve only this carrier (repeatable; default: every carrier)")
    parser.add_argument("--port", type=int, action="append", default=None, metavar="PORT",
                        help="one per carrier served, in the order given or "
                             f"{', '.join(CARRIERS)} (default: free ports)")
    args = parser.parse_args(argv)
    carriers = tuple(args.carrier or CARRIERS)
    if args.port is not None and len(args.port) != len(carriers):
        parser.error(f"give no --port or {len(carriers)} of them")
    from lakehouse.settings import get_settings

    config = simulation_config(args.truth or get_settings().truth_dir)
    ports = dict(zip(carriers, args.port, strict=True)) if args.port else None
    with CarrierServices(config, ports=ports, carriers=carriers) as services:
        print(json.dumps(services.urls), flush=True)
        try:
            while all(t.is_alive() for t in services.threads):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
