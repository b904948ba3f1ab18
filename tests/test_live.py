"""Against the real deAPI: run only with DEAPI_API_KEY set (``pytest -m live``); skipped otherwise.

These spend a few cents at most: one model listing and one tiny embeddings request.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import LIVE_BASE_URL, LIVE_KEY

import deapi_ds

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not LIVE_KEY, reason="needs DEAPI_API_KEY (real deAPI; costs a little)"),
]


@pytest.fixture
def live():
    options = {"api_key": LIVE_KEY}
    if LIVE_BASE_URL:
        options["base_url"] = LIVE_BASE_URL
    with deapi_ds.config_context(**options):
        yield


def test_live_models(live):
    frame = deapi_ds.models()
    assert "Bge_M3_FP16" in set(frame["id"])


def test_live_embeddings(live):
    res = deapi_ds.embed(["deapi_ds live test", "a second text"], cache=None)
    assert res.matrix.shape == (2, 1024) and res.matrix.dtype == np.float32
    assert list(res.status) == ["ok", "ok"]
