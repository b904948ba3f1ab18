"""A run that meets the daily quota stops cleanly: finished rows cached, unsent rows `quota`
(not `error`), one message, and a rerun after the reset pays only for the rest."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

import deapi_ds
from deapi_ds import _quota
from deapi_ds.emulator import Emulator, embed_texts
from deapi_ds.testing import emulated

START = dt.datetime(2026, 12, 7, 23, 0, tzinfo=dt.UTC).timestamp()


class UTC:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now, dt.UTC)


@pytest.fixture
def utc(monkeypatch):
    clock = UTC()
    monkeypatch.setattr(_quota, "utc_now", clock.datetime)
    return clock


def test_embed_stops_at_the_servers_quota_and_finishes_after_the_reset(utc, tmp_path, capsys):
    emu = Emulator(profile="today", daily_quotas={"embeddings": 5}, utc_clock=utc)
    texts = [f"row {i} about topic {i % 7}" for i in range(200)]
    cache = str(tmp_path / "cache")
    with emulated(emulator=emu, tier="basic", rpm=10**6, max_concurrency=1):
        est = deapi_ds.estimate_embed(texts, cache=cache, max_inputs=20)
        assert est.requests == 10 and est.daily_quota == 500 and est.days == 1
        first = deapi_ds.embed(texts, cache=cache, max_inputs=20)
        counts = first.status.value_counts().to_dict()
        assert counts == {"ok": 100, "quota": 100}  # no error rows
        assert first.usage["error_rows"] == 0 and first.usage["quota_rows"] == 100
        assert np.isnan(first.matrix[first.status.eq("quota").to_numpy()]).all()
        err = capsys.readouterr().err
        assert "daily quota stopped the run; 100 rows were not sent" in err
        assert "2026-12-08 00:00 UTC" in err
        paid = emu.stats("embeddings")["inputs"]
        assert paid == 100
        utc.now += 3600  # 00:00 UTC: the quota resets
        second = deapi_ds.embed(texts, cache=cache, max_inputs=20)
    assert second.status.value_counts().to_dict() == {"cached": 100, "ok": 100}
    assert emu.stats("embeddings")["inputs"] == 200  # no row paid twice
    np.testing.assert_allclose(second.matrix, embed_texts(texts), rtol=1e-6)


def test_estimate_reports_days_against_a_small_quota(utc, tmp_path, monkeypatch):
    from deapi_ds import _profiles

    texts = [f"t{i}" for i in range(120)]
    with emulated(tier="basic", rpm=10**6):
        settings = deapi_ds.get_config()
        real = _profiles.ProviderProfile.daily_quota
        monkeypatch.setattr(
            _profiles.ProviderProfile,
            "daily_quota",
            lambda self, ep, tier: 4 if ep == "embeddings" else real(self, ep, tier),
        )
        est = deapi_ds.estimate_embed(texts, cache=None, max_inputs=10)
    assert settings.effective_tier == "basic"
    assert est.requests == 12 and est.daily_quota == 4 and est.days == 3
    assert "daily quota 4 (4 left today): 3 days" in str(est)
