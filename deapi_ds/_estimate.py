"""One estimate type for every task: what a call would send and cost, before anything is spent.

Each task has an ``estimate_<function>`` (``estimate_embed``, ``estimate_speak``,
``estimate_generate_images``, ``estimate_edit_images``, ``estimate_transcribe``,
``estimate_generate_video``) taking the same arguments as the function and returning an
:class:`Estimate`.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["Estimate"]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a call would send: requests, the billed quantity, cost and time (nothing is spent).

    ``func`` is the function estimated and ``model`` its model. ``rows`` input rows stand for
    ``unique`` distinct units of work, of which ``cached`` are already in the cache; ``empty``
    rows need no request and ``errors`` rows are refused before sending. ``requests`` would be
    sent for ``quantity`` ``unit`` (tokens, characters, audio seconds, images, videos), costing
    ``cost_usd`` (``price_note`` says where the price comes from: a reference price with its
    date is not a quote). ``rpm`` and ``concurrency`` give the time; ``daily_quota`` and
    ``quota_left`` (today, on the configured tier) say how many days the requests take.
    ``details`` is a per-row breakdown where the task has one.
    """

    func: str
    model: str
    rows: int
    unique: int
    cached: int
    empty: int
    errors: int
    requests: int
    quantity: float
    unit: str
    cost_usd: float | None
    rpm: float | None
    concurrency: int
    price_note: str | None = None
    daily_quota: int | None = None
    quota_left: int | None = None
    details: pd.DataFrame | None = dataclasses.field(default=None, repr=False, compare=False)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def minutes(self) -> float | None:
        """Minutes the rate limit alone needs for the requests (None without a limit)."""
        if not self.rpm:
            return None if self.requests else 0.0
        return self.requests / self.rpm

    @property
    def days(self) -> int | None:
        """Days the daily quota needs for the requests (1 when they fit today; None when the
        tier has no daily quota)."""
        if self.daily_quota is None:
            return None
        if not self.requests:
            return 0
        left = self.daily_quota if self.quota_left is None else self.quota_left
        if self.requests <= left:
            return 1
        return 1 + math.ceil((self.requests - left) / max(1, self.daily_quota))

    @property
    def tokens(self) -> int:
        """Tokens to send (embeddings)."""
        return int(self.quantity) if self.unit == "tokens" else 0

    @property
    def frame(self) -> pd.DataFrame | None:
        """The per-row breakdown (same as :attr:`details`)."""
        return self.details

    def summary(self) -> str:
        """One line: what would be sent, the cost and the time."""
        return str(self)

    @property
    def cost(self) -> float | None:
        """Same as :attr:`cost_usd`."""
        return self.cost_usd

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("extra") or {}
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _when(self) -> str:
        if self.requests == 0:
            return "nothing to send"
        word = "request" if self.requests == 1 else "requests"
        if self.rpm:
            when = f"~{self.requests / self.rpm:.1f} min at {self.rpm:g} {word}/min"
        else:
            when = "no client-side rate limit"
        if self.daily_quota is not None:
            left = self.daily_quota if self.quota_left is None else self.quota_left
            days = self.days or 0
            when += (
                f"; daily quota {self.daily_quota:,} ({left:,} left today): "
                f"{days} day{'s' if days != 1 else ''}"
            )
        return when

    def __str__(self) -> str:
        cost = f"~${self.cost_usd:.4f}" if self.cost_usd is not None else "cost unknown"
        if self.price_note and self.cost_usd is not None:
            cost += f" ({self.price_note})"
        word = "request" if self.requests == 1 else "requests"
        quantity = (
            f"{self.quantity:,.0f}"
            if float(self.quantity).is_integer()
            else f"{self.quantity:,.1f}"
        )
        return (
            f"{self.func} {self.model}: {self.rows:,} rows ({self.unique:,} unique, "
            f"{self.cached:,} cached, {self.empty:,} empty) -> {self.requests:,} {word}, "
            f"~{quantity} {self.unit}, {cost}, {self._when()}"
        )

    def __repr__(self) -> str:
        return f"Estimate({self})"

    def _repr_html_(self) -> str:

        body = f"<p><b>Estimate</b>: {html.escape(str(self))}</p>"
        if self.details is not None:
            body += self.details.head(20).to_html()
        return body
