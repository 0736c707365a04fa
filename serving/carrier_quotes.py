"""Carrier quotes for shipping estimates: one adapter per carrier, all asked in parallel under one deadline.

Each option of an estimate is priced by its carrier, from the first of these that answers (`source`):

1. `quote`: the carrier's quote service (`POST {url}/quote`; the simulator plays the carriers, see
   `simulator.carriers`). Each attempt has a timeout, a failed attempt (timeout, connection error, 5xx) is
   retried after a backoff while the deadline allows; a malformed answer is not retried.
2. `cache`: the last good quote for the same parcel (service level, zone, remoteness, weight and volume),
   if younger than the cache's time to live.
3. `rate_card`: the carrier's rate card in force (always there: the estimate's own).

A carrier's circuit breaker (`serving.breaker`) counts its failed quotes; while open, the carrier is not
asked at all and its options come from 2 or 3 at once. A 4xx answer (the carrier does not serve this
parcel) is not the carrier failing: it is priced from the rate card and does not count against it.

The deadline is per estimate, not per carrier: every quote of an estimate runs concurrently and whatever
has not answered by `budget_ms` is priced from its fallback, so a slow or failing carrier never fails an
estimate, nor delays it by more than the budget.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from lakehouse.settings import Settings
from serving.breaker import CircuitBreaker

Source = Literal["quote", "cache", "rate_card"]
CACHE_ENTRIES = 10_000  # per carrier; the oldest goes first
MIN_ATTEMPT_S = 0.005  # a retry with less time left than this is not worth sending


@dataclass(frozen=True)
class Parcel:
    """One option to price: what the carrier is sent, and what keys its cached quote."""

    carrier: str
    service_level: str
    postal_code: str
    zone: int
    is_remote: bool
    weight_kg: float
    volume_cm3: float
    rate_card_usd: float

    @property
    def cache_key(self) -> tuple:
        return self.service_level, self.zone, self.is_remote, round(self.weight_kg, 3), round(self.volume_cm3)


@dataclass(frozen=True)
class CarrierPrice:
    price_usd: float
    source: Source
    reason: str | None = None  # why not a fresh quote


@dataclass(frozen=True)
class QuotePolicy:
    budget_s: float = 0.15
    timeout_s: float = 0.1
    retries: int = 1
    backoff_s: float = 0.01
    breaker_failures: int = 5
    breaker_reset_s: float = 10.0
    cache_ttl_s: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> QuotePolicy:
        return cls(budget_s=settings.carrier_quote_budget_ms / 1000, timeout_s=settings.carrier_quote_timeout_ms / 1000,
                   retries=settings.carrier_quote_retries, backoff_s=settings.carrier_quote_backoff_ms / 1000,
                   breaker_failures=settings.carrier_breaker_failures, breaker_reset_s=settings.carrier_breaker_reset_s,
                   cache_ttl_s=settings.carrier_quote_cache_ttl_s)


class QuoteFailed(Exception):
    """The carrier did not give a usable quote; `counts` says whether it counts against its breaker."""

    def __init__(self, reason: str, counts: bool = True, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.counts, self.retry = reason, counts, retry


def parse_quote(parcel: Parcel, status: int, body: bytes) -> float:
    """The price of a quote service's answer, or QuoteFailed naming what was wrong with it."""
    if status >= 500:
        raise QuoteFailed(f"http {status}", retry=True)
    if status >= 400:
        raise QuoteFailed(f"refused: http {status}", counts=False)
    try:
        answer = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        raise QuoteFailed("malformed quote: not JSON") from None
    price = answer.get("price_usd") if isinstance(answer, dict) else None
    if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price) or price <= 0:
        raise QuoteFailed("malformed quote: no positive price_usd")
    if answer.get("currency") != "USD" or answer.get("carrier") != parcel.carrier \
            or answer.get("service_level") != parcel.service_level:
        raise QuoteFailed("malformed quote: another carrier, service level or currency")
    return float(price)


class CarrierAdapter:
    """One carrier's quote service: timeouts, retries with backoff, circuit breaker and the quote cache."""

    def __init__(self, carrier: str, url: str, client: httpx.AsyncClient, policy: QuotePolicy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.carrier, self.url, self.client, self.policy, self.clock = carrier, url.rstrip("/"), client, policy, clock
        self.breaker = CircuitBreaker(policy.breaker_failures, policy.breaker_reset_s, clock)
        self.cache: OrderedDict[tuple, tuple[float, float]] = OrderedDict()

    async def price(self, parcel: Parcel, deadline: float) -> CarrierPrice:
        """The parcel's price by `deadline` (a `clock` time): the quote, else the cached quote, else the rate card."""
        if not self.breaker.allow():
            return self.fallback(parcel, "circuit open")
        try:
            price = await self._quote(parcel, deadline)
        except QuoteFailed as failed:
            if failed.counts:
                self.breaker.failure()
            else:
                self.breaker.success()
            return self.fallback(parcel, failed.reason)
        except asyncio.CancelledError:  # the estimate's deadline passed: count it, or a half-open probe never ends
            self.breaker.failure()
            raise
        self.breaker.success()
        self.cache[parcel.cache_key] = (price, self.clock())
        self.cache.move_to_end(parcel.cache_key)
        while len(self.cache) > CACHE_ENTRIES:
            self.cache.popitem(last=False)
        return CarrierPrice(price, "quote")

    def fallback(self, parcel: Parcel, reason: str) -> CarrierPrice:
        cached = self.cache.get(parcel.cache_key)
        if cached is not None and self.clock() - cached[1] <= self.policy.cache_ttl_s:
            return CarrierPrice(cached[0], "cache", reason)
        return CarrierPrice(parcel.rate_card_usd, "rate_card", reason)

    async def _quote(self, parcel: Parcel, deadline: float) -> float:
        body = {"postal_code": parcel.postal_code, "service_level": parcel.service_level,
                "weight_kg": parcel.weight_kg, "volume_cm3": parcel.volume_cm3}
        for attempt in range(self.policy.retries + 1):
            left = deadline - self.clock()
            if left < MIN_ATTEMPT_S:
                raise QuoteFailed("deadline")
            wait = min(self.policy.timeout_s, left)
            try:
                async with asyncio.timeout(wait):
                    response = await self.client.post(f"{self.url}/quote", json=body, timeout=wait)
                return parse_quote(parcel, response.status_code, response.content)
            except (TimeoutError, httpx.TimeoutException):
                failed = QuoteFailed("timeout", retry=True)
            except httpx.TransportError as error:
                failed = QuoteFailed(f"unreachable: {type(error).__name__}", retry=True)
            except QuoteFailed as error:
                failed = error
            if not failed.retry or attempt == self.policy.retries:
                raise failed
            pause = self.policy.backoff_s * 2 ** attempt
            if deadline - self.clock() - pause < MIN_ATTEMPT_S:
                raise failed
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")


class CarrierQuotes:
    """Every carrier's adapter; `prices` asks them all at once under one deadline."""

    def __init__(self, urls: dict[str, str], policy: QuotePolicy = QuotePolicy(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self.clock = policy, clock
        # Connections are kept alive: a new TCP connection per quote would spend the budget on handshakes.
        self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=50))
        self.adapters = {c: CarrierAdapter(c, url, self.client, policy, clock) for c, url in urls.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> CarrierQuotes:
        return cls(settings.carrier_quote_urls, QuotePolicy.from_settings(settings))

    async def prices(self, parcels: list[Parcel]) -> list[CarrierPrice]:
        """One price per parcel, in order, within the budget."""
        deadline = self.clock() + self.policy.budget_s
        adapters = [self.adapters.get(p.carrier) for p in parcels]
        tasks = {i: asyncio.ensure_future(a.price(p, deadline))
                 for i, (a, p) in enumerate(zip(adapters, parcels, strict=True)) if a is not None}
        if tasks:
            # The adapters keep to the deadline themselves; this is the guard that the estimate does too.
            await asyncio.wait(tasks.values(), timeout=self.policy.budget_s + 0.01)
        out = []
        for i, (adapter, parcel) in enumerate(zip(adapters, parcels, strict=True)):
            task = tasks.get(i)
            if adapter is None:
                out.append(CarrierPrice(parcel.rate_card_usd, "rate_card", "no quote service"))
            elif not task.done():
                task.cancel()
                out.append(adapter.fallback(parcel, "deadline"))
            elif task.exception() is not None:
                out.append(adapter.fallback(parcel, f"error: {type(task.exception()).__name__}"))
            else:
                out.append(task.result())
        return out

    def breakers(self) -> dict[str, str]:
        return {c: a.breaker.state for c, a in self.adapters.items()}

    async def aclose(self) -> None:
        await self.client.aclose()
