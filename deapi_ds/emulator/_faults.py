"""Fault injection and rate limiting for the emulator (no I/O; the clock is injected).

Each endpoint key has one :class:`EndpointConfig`. For every request the emulator asks it,
under the emulator's lock, for a :class:`Decision`: the latency to add, whether the rate limit
rejects the request, and which fault (if any) replaces or alters the normal answer.

Order of checks for one request: rate limit (a rejected request is not counted in the
window) -> the next scripted entry (one per request, until the script is exhausted) ->
``error_rate`` (seeded RNG) -> the persistent embeddings faults (``shuffle_index``,
``drop_items``, ``wrong_dimension``, ``nan_vectors``).

Script kinds (strings, or ``Fault(kind=...)``):

``"drop"``
    the connection closes without an answer.
``"truncate"``
    half the body is sent with the full Content-Length, then the connection closes.
``"shuffle"`` / ``"short"`` / ``"wrongdim"``
    embeddings only: items out of order (correct ``index`` fields), the last item(s) missing,
    vectors of the wrong length.
``"nan_vectors"``
    embeddings only: the item with index 0 has NaN as its first component, index 1 has
    +inf, index 2 has ``"embedding": null`` (the others are normal). With
    ``encoding_format="float"`` the JSON carries the non-standard ``NaN``/``Infinity`` tokens
    a broken server would send. ``configure(nan_vectors=True)`` does it to every answer.
``"trickle"``
    the normal answer, with its headers at once and then its body one byte per second
    (``Fault(kind="trickle", interval=0.1)`` for another pace): read timeouts never fire,
    only a total deadline ends it.
``"gzip_bomb"``
    a 200 answer with ``Content-Encoding: gzip`` whose body (about 2 MB on the wire)
    inflates to 2 GiB of zeros (``Fault(kind="gzip_bomb", size=...)`` for another size).

A huge or endless ``Retry-After`` is an HTTP fault: ``Fault(status=429,
retry_after="86400")`` or ``Fault(status=429, retry_after="inf")``.
"""

from __future__ import annotations

import functools
import math
import random
import struct
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Decision", "EndpointConfig", "Fault", "SCRIPT_KINDS", "gzip_bomb"]

#: String entries accepted in a script.
SCRIPT_KINDS = frozenset(
    {"drop", "truncate", "shuffle", "short", "wrongdim", "nan_vectors", "trickle", "gzip_bomb"}
)
#: what a ``"gzip_bomb"`` inflates to by default: 2 GiB
GZIP_BOMB_SIZE = 2 * 1024**3
#: seconds between two bytes of a ``"trickle"`` answer by default
TRICKLE_INTERVAL = 1.0


@dataclass(frozen=True)
class Fault:
    """One scripted fault.

    Either an HTTP error (``status`` >= 400, optional ``retry_after``, ``body``, ``headers``),
    or a ``kind`` (see the module docstring): ``"drop"``, ``"truncate"``, ``"shuffle"``,
    ``"short"``, ``"wrongdim"``, ``"nan_vectors"``, ``"trickle"`` (``interval`` seconds between
    bytes, default 1) or ``"gzip_bomb"`` (``size`` bytes once inflated, default 2 GiB).

    >>> Fault(status=429, retry_after="3")
    Fault(status=429, kind=None, retry_after='3', body=None, headers=None, message=None, size=None, interval=None)
    >>> Fault(kind="drop").kind
    'drop'
    """

    status: int | None = None
    kind: str | None = None
    retry_after: str | int | float | None = None
    body: bytes | str | Mapping[str, object] | None = None
    headers: Mapping[str, str] | None = None
    message: str | None = None
    size: int | None = None
    interval: float | None = None

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
        if self.size is not None and (self.kind != "gzip_bomb" or int(self.size) < 1):
            raise ValueError(
                f"Fault size is the inflated size of a 'gzip_bomb' (bytes >= 1). Got "
                f"size={self.size!r} with kind={self.kind!r}."
            )
        if self.interval is not None and (
            self.kind != "trickle" or not 0 < float(self.interval) < math.inf
        ):
            raise ValueError(
                f"Fault interval is the seconds between bytes of a 'trickle' (> 0). Got "
                f"interval={self.interval!r} with kind={self.kind!r}."
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
    nan_vectors: bool = False
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
        self.nan_vectors = False
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
        decision.nan_vectors = self.nan_vectors
        decision.shuffle_seed = (self.seed * 1_000_003 + self.count) % 2**32
        fault = decision.fault
        if fault is not None and fault.kind == "shuffle":
            decision.shuffle = True
        elif fault is not None and fault.kind == "short":
            decision.drop_items = max(1, self.drop_items)
        elif fault is not None and fault.kind == "wrongdim":
            decision.wrong_dimension = self.wrong_dimension or 512
        elif fault is not None and fault.kind == "nan_vectors":
            decision.nan_vectors = True
        return decision


def validate_script(script: Sequence[Fault | int | str | None]) -> list[Fault | None]:
    """Coerce every entry now so that a bad script fails in ``configure``, not mid-test."""
    if isinstance(script, (str, bytes)):
        raise TypeError(
            "script must be a sequence of entries, e.g. [500, 'drop', None]. Got a single string."
        )
    return [Fault.coerce(entry) for entry in script]


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int = GZIP_BOMB_SIZE) -> bytes:
    """A valid gzip stream of ``size`` zero bytes, about ``size / 1000`` bytes long.

    Built from one compressed 1 MiB block repeated (a full flush makes the blocks identical),
    so 2 GiB take a fraction of a second to build; the CRC and length trailer are exact.

    >>> import gzip
    >>> len(gzip.decompress(gzip_bomb(3_000_000)))
    3000000
    """
    step = 1024 * 1024
    zeros = bytes(step)
    whole, rest = divmod(size, step)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.compress(bytes(rest)) + comp.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(whole):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
    return header + block * whole + tail + trailer
