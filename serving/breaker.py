"""A circuit breaker per carrier: pure logic, with the clock injected.

Closed: calls go through; `failure_threshold` failures in a row open it. Open: calls are refused (the
caller answers from its fallback at once, without waiting on a carrier known to fail) until
`reset_after_s` have passed. Then half-open: one probe call goes through (others are still refused);
its success closes the breaker, its failure opens it again for another `reset_after_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    reset_after_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0  # consecutive, while closed
    opened_at: float | None = None
    probing: bool = False  # a half-open probe is in flight
    transitions: list[tuple[State, State]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.reset_after_s < 0:
            raise ValueError(f"need failure_threshold >= 1 and reset_after_s >= 0, got "
                             f"{self.failure_threshold}, {self.reset_after_s}")

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return CLOSED
        return HALF_OPEN if self.clock() - self.opened_at >= self.reset_after_s else OPEN

    def allow(self) -> bool:
        """May a call go through now? In half-open, only the first caller (the probe) may."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        if self.opened_at is not None:
            self._move(CLOSED)
        self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self) -> None:
        if self.opened_at is not None:  # the half-open probe failed (or a call that started before it opened)
            self._open()
            return
        self.failures += 1
        if self.failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._move(OPEN)
        self.failures, self.opened_at, self.probing = 0, self.clock(), False

    def _move(self, to: State) -> None:
        before = self.state
        if before != to:
            self.transitions.append((before, to))
