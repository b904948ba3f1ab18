"""Fault injection and rate limiting for the emulator (no I/O; the clock is injected).

Each endpoint key has one :class:`EndpointConfig`. For every request the emulator asks it,
under the emulator's lock, for a :class:`Decision`: the latency to add, whether the rate limit
rejects the request, and which fault (if any) replaces or alters the normal answer.

Order of checks for one request: rate limit (a rejected request is not counted in the
window) -> the next scripted entry (one per request, until the script is exhausted) ->
``error_rate`` (seeded RNG) -> the persistent embeddings faults (``shuffle_index``,
``drop_items``, ``wrong_dimension``).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Decision", "EndpointConfig", "Fault", "SCRIPT_KINDS"]

#: String entries accepted in a script.
SCRIPT_KINDS = frozenset({"drop", "truncate", "shuffle", "short", "wrongdim"})


@dataclass(frozen=True)
class Fault:
    """One scripted fault.

    Either an HTTP error (``status`` >= 400, optional ``retry_after``, ``body``, ``headers``),
    or a ``kind``: ``"drop"`` (connection closed without an answer), ``"truncate"`` (body cut
    in half with the full Content-Length), ``"shuffle"`` / ``"short"`` / ``"wrongdim"``
    (embeddings only: items out of order, one item (or ``drop_items``) missing, vectors of the
    wrong length).

    >>> Fault(status=429, retry_after="3")
    Fault(status=429, kind=None, retry_after='3', body=None, headers=None, message=None)
    >>> Fault(kind="drop").kind
    'drop'
    """

    status: int | None = None
    kind: str | None = None
    retry_after: str | int | float | None = None
    body: bytes | str | Mapping[str, object] | None = None
    headers: Mapping[str, str] | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if (self.status is None) == (self.kind is None):
            raise ValueError(
                "Fault needs exactly one of status=... (an HTTP error status such as 500) or "
                f"kind=... (one of {sorted(SCRIPT_KINDS)}). Got status={self.status!r}, "
                f"kind={self.kind!r}."
            )
        if self.kind is not None and self.kind not in SCRIPT_KINDS:
            raise ValueError(
                f"Fault kind must be one of {sorted(SCRIPT_KINDS)}. Got {self.kind!r}."
            )
        if self.status is not None and not 400 <= int(self.status) <= 599:
            raise ValueError(
                f"Fault status must be an HTTP error status (400-599). Got {self.status!r}."
            )

    @classmethod
    def coerce(cls, entry: Fault | int | str | None) -> Fault | None:
        """Turn a script entry (``Fault``, status int, kind string or None) into a Fault."""
        if entry is None or isinstance(entry, Fault):
            return entry
        if isinstance(entry, bool):
            raise TypeError(f"A script entry cannot be a bool. Got {entry!r}.")
        if isinstance(entry, int):
            return cls(status=entry)
        if isinstance(entry, str):
            if entry.isdigit():
                return cls(status=int(entry))
            return cls(kind=entry)
        raise TypeError(
            "Script entries must be a Fault, an HTTP status int, one of "
            f"{sorted(SCRIPT_KINDS)} or None. Got {entry!r}."
        )


@dataclass
class Decision:
    """What the emulator does to one request (computed by :meth:`EndpointConfig.decide`)."""

    latency: float = 0.0
    rate_limited: bool = False
    retry_after: int = 0
    fault: Fault | None = None
    shuffle: bool = False
    drop_items: int = 0
    wrong_dimension: int | None = None
    shuffle_seed: int = 0
    rate_headers: dict[str, str] = field(default_factory=dict)


class EndpointConfig:
    """Per-endpoint settings and state: rate window, script position, seeded RNG."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self.rpm: int | None = None
        self.latency: float | tuple[float, float] | None = None
        self.error_rate: float = 0.0
        self.error_status: int = 500
        self.script: deque[Fault | None] = deque()
        self.shuffle_index = False
        self.drop_items = 0
        self.wrong_dimension: int | None = None
        self.seed = 0
        self.rng = random.Random(0)
        self.window: deque[float] = deque()
        self.count = 0

    def update(self, **changes: object) -> None:
        """Apply the settings given to :meth:`Emulator.configure` (already validated)."""
        for name, value in changes.items():
            if name == "script":
                self.script = deque(Fault.coerce(e) for e in value)  # type: ignore[attr-defined]
            elif name == "seed":
                self.seed = int(value)  # type: ignore[arg-type]
                self.rng = random.Random(self.seed)
            else:
                setattr(self, name, value)

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        assert self.rpm is not None
        return {
            "X-RateLimit-Limit": str(self.rpm),
            "X-RateLimit-Remaining": str(max(0, remaining)),
        }

    def decide(self, now: float) -> Decision:
        """Consume one request's worth of state and say what to do with it."""
        decision = Decision()
        self.count += 1
        if self.latency is not None:
            if isinstance(self.latency, tuple):
                low, high = self.latency
                decision.latency = self.rng.uniform(low, high)
            else:
                decision.latency = float(self.latency)
        if self.rpm is not None:
            while self.window and self.window[0] <= now - self.WINDOW:
                self.window.popleft()
            if len(self.window) >= self.rpm:
                decision.rate_limited = True
                wait = self.window[0] + self.WINDOW - now
                decision.retry_after = max(1, math.ceil(wait))
                decision.rate_headers = self._rate_headers(0)
                return decision
            self.window.append(now)
            decision.rate_headers = self._rate_headers(self.rpm - len(self.window))
        if self.script:
            decision.fault = self.script.popleft()
        elif self.error_rate > 0 and self.rng.random() < self.error_rate:
            decision.fault = Fault(status=self.error_status)
        decision.shuffle = self.shuffle_index
        decision.drop_items = self.drop_items
        decision.wrong_dimension = self.wrong_dimension
        decision.shuffle_seed = (self.seed * 1_000_003 + self.count) % 2**32
        fault = decision.fault
        if fault is not None and fault.kind == "shuffle":
            decision.shuffle = True
        elif fault is not None and fault.kind == "short":
            decision.drop_items = max(1, self.drop_items)
        elif fault is not None and fault.kind == "wrongdim":
            decision.wrong_dimension = self.wrong_dimension or 512
        return decision


def validate_script(script: Sequence[Fault | int | str | None]) -> list[Fault | None]:
    """Coerce every entry now so that a bad script fails in ``configure``, not mid-test."""
    if isinstance(script, (str, bytes)):
        raise TypeError(
            "script must be a sequence of entries, e.g. [500, 'drop', None]. Got a single string."
        )
    return [Fault.coerce(entry) for entry in script]
