"""remove_background() and upscale(): ImageResults from native jobs on the emulator."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import deapi_ds
from deapi_ds import _image_jobs
from deapi_ds.images import ImageResult

matplotlib.use("Agg")


@pytest.fixture
def emu(emulator, monkeypatch):
    emulator.native.job_seconds = (0.005, 0.01)
    monkeypatch.setattr(_image_jobs, "POLL_SECONDS", 0.02)
    return emulator


def _product(colour=(200, 30, 30)) -> bytes:
    """A red square on a white background."""
    img = Image.new("RGB", (96, 80), "white")
    img.paste(colour, (30, 20, 66, 60))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_remove_background_gives_transparent_pngs_with_the_input_kept(emu, tmp_path):
    path = tmp_path / "red.png"
    path.write_bytes(_product())
    res = deapi_ds.remove_background(pd.Series([str(path), b"junk"], index=["x", "y"]),
                                     progress=False)  # fmt: skip
    assert isinstance(res, ImageResult)
    assert list(res.index) == ["x", "y"] and res["status"].tolist() == ["ok", "error"]
    assert "not a readable image" in res["error"].iloc[1]
    out = Image.open(io.BytesIO(res["image"].iloc[0]))
    alpha = np.asarray(out)[:, :, 3]
    assert out.mode == "RGBA" and alpha[0, 0] == 0 and alpha[40, 48] == 255
    assert res["input"].iloc[0] == "red.png" and res["input_image"].iloc[0] == str(path)
    assert (res["width"].iloc[0], res["height"].iloc[0]) == (96, 80)
    # grids, row selections and files work as for generated images
    ok = res[res.ok]
    assert isinstance(ok, ImageResult) and len(ok) == 1
    assert "red.png" in ok.grid().html
    saved = res.save(tmp_path / "out")
    assert saved.iloc[0].endswith(".png") and "red-png" in saved.iloc[0]
    assert pd.isna(saved.iloc[1])


def test_upscale_is_4x_cached_and_paid_once(emu):
    images = [_product(), _product((20, 20, 200)), _product()]
    res = deapi_ds.upscale(images, progress=False)
    assert res["status"].tolist() == ["ok"] * 3
    assert res["width"].tolist() == [384] * 3 and res["input_width"].tolist() == [96] * 3
    assert emu.native.submitted() == 2  # the duplicate is sent once
    again = deapi_ds.upscale(images, progress=False)
    assert again["status"].tolist() == ["cached"] * 3
    assert emu.native.submitted() == 2
    est = deapi_ds.estimate_upscale(images + [_product((1, 2, 3))])
    assert (est.requests, est.cached, est.unit, est.cost_usd) == (1, 2, "images", None)


def test_before_after_pairs_each_input_with_its_result(emu):
    res = deapi_ds.remove_background([_product(), _product((0, 120, 0))], progress=False)
    pairs = deapi_ds.before_after(res)
    assert pairs.frame["stage"].tolist() == ["before", "after"] * 2
    assert pairs.frame["image"].iloc[0] == res["input_image"].iloc[0]
    assert pairs.frame["image"].iloc[1] == res["image"].iloc[0]
    html = pairs._repr_mimebundle_()["text/html"]
    assert html.count("<img") == 4 and "repeat(2," in html
    fig = pairs.plot()
    assert len(fig.axes) == 4
    with pytest.raises(deapi_ds.InvalidParameterError, match="input_image"):
        deapi_ds.before_after(pd.DataFrame({"image": [b""]}))


def test_job_failure_and_wire_limits(emu):
    emu.native.fail_next("PROCESSING_FAILED", "PROCESSING_FAILED", "PROCESSING_FAILED")
    with pytest.raises(deapi_ds.BatchError, match="every row failed") as caught:
        deapi_ds.remove_background([_product()], progress=False)
    res = caught.value.partial
    # retryable: resubmitted twice, then the row fails (three jobs, all refunded)
    assert res["status"].tolist() == ["error"] and "PROCESSING_FAILED" in res["error"].iloc[0]
    assert emu.native.submitted() == 3
    big = Image.new("RGB", (3000, 100), "white")
    res = deapi_ds.upscale([big], max_side=1500, progress=False)
    # 1500 px long would make it 50 px high: it stops at 64 px high (1920 x 64)
    assert (res["input_width"].iloc[0], res["width"].iloc[0]) == (3000, 1920 * 4)
    assert emu.stats("v2.images.upscales")["pixels"] == 1920 * 64
