"""ocr(): text from images through native jobs on the in-process emulator."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import deapi_ds
from deapi_ds import _image_jobs, _jobs
from deapi_ds._native import NativeClient, background_removal_request
from deapi_ds._ocr import OCR_BASE_USD, OCR_PIXEL_USD, ocr_price
from deapi_ds.emulator import read_text, render_text_image

DOCS = {
    "invoice.png": "INVOICE 2041\nTotal due: 118.40 EUR\nPay by 2026-01-31",
    "letter.png": "Dear tenant,\nthe rent is due on the 1st.",
    "notes/todo.png": "TODO: renew passport",
}


@pytest.fixture
def emu(emulator, monkeypatch):
    emulator.native.job_seconds = (0.005, 0.01)
    monkeypatch.setattr(_image_jobs, "POLL_SECONDS", 0.02)
    return emulator


@pytest.fixture
def scans(tmp_path):
    root = tmp_path / "scans"
    for name, text in DOCS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render_text_image(text, scale=2))
    (root / ".hidden.png").write_bytes(render_text_image("secret", scale=2))
    (root / "readme.txt").write_text("not an image")
    os.symlink(root, root / "notes" / "loop")  # a link back to the top: walked once
    return root


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_folder_text_comes_back_exactly_in_sorted_order(emu, scans):
    res = deapi_ds.ocr(scans, progress=False)
    assert isinstance(res, deapi_ds.OCRResult)
    assert res["source"].tolist() == sorted(DOCS)  # hidden file, .txt and the loop left out
    assert res["text"].tolist() == [DOCS[name] for name in sorted(DOCS)]
    assert res["status"].tolist() == ["ok"] * 3
    assert (res["pixels"] == res["width"] * res["height"]).all()
    assert res.meta["ignored"] == 1 and res.meta["jobs"] == 3
    assert emu.native.submitted() == 3
    html = res._repr_mimebundle_()["text/html"]
    assert html.count("<img") == 3  # a thumbnail per row
    paths = res.save(scans.parent / "texts")
    assert [os.path.basename(p) for p in paths] == [
        "000_invoice-png.txt", "001_letter-png.txt", "002_notes-todo-png.txt"]  # fmt: skip
    assert open(paths.iloc[0], encoding="utf-8").read() == DOCS["invoice.png"]


def test_every_kind_of_input_and_index_kept(emu, scans, tmp_path):
    text = "Receipt 7\nCash 3.20"
    png = render_text_image(text, scale=2)
    pil = Image.open(io.BytesIO(png))
    arr = np.asarray(pil.convert("RGB"))
    tiff = tmp_path / "scan.tiff"
    pil.save(tiff)  # not a format deAPI takes: converted to PNG before the upload
    column = pd.Series([png, pil, arr, str(tiff), scans / "letter.png"], index=list("abcde"))
    frame = pd.DataFrame({"scan": column, "other": 1})
    res = deapi_ds.ocr(frame, "scan", progress=False)
    assert list(res.index) == list("abcde")
    assert res["text"].tolist() == [text] * 4 + [DOCS["letter.png"]]
    assert res["status"].tolist() == ["ok"] * 5
    # cached by content: the PIL image and the array encode to the PNG's very bytes (sent
    # once); the TIFF's bytes differ, and the letter is another image
    assert emu.native.submitted() == 3
    w, h = pil.size
    assert res["source"].tolist()[:3] == [f"<bytes {len(png):,}>", f"<PIL {w}x{h}>",
                                          f"<array {h}x{w}x3>"]  # fmt: skip


def test_urls_are_downloaded_and_read(emu):
    # a result file the emulator serves: a background removal keeps the text's pixels
    client = NativeClient()
    job = client.submit(background_removal_request(render_text_image("From a URL", scale=2)))
    for _ in range(200):
        status = client.job(job)
        if status.done:
            break
        time.sleep(0.01)
    res = deapi_ds.ocr([status.result_url], progress=False)
    assert res["text"].tolist() == ["From a URL"]
    assert res["source"].iloc[0] == status.result_url


def test_bad_inputs_are_rows_with_a_clear_error_and_cost_nothing(emu, tmp_path):
    good = render_text_image("fine", scale=2)
    tall = _png(Image.new("RGB", (100, 6000), "white"))
    tiny = _png(Image.new("RGB", (30, 200), "white"))
    inputs = [good, b"\x00not an image", str(tmp_path / "missing.png"), tiny, tall, None, 42,
              str(tmp_path)]  # fmt: skip
    res = deapi_ds.ocr(inputs, max_side=None, progress=False)
    assert res["status"].tolist() == ["ok", "error", "error", "error", "error", "empty",
                                      "error", "error"]  # fmt: skip
    errors = res["error"].tolist()
    assert "not a readable image" in errors[1]
    assert "missing.png" in errors[2] and "cannot read" in errors[2]
    assert "30x200" in errors[3] and "never enlarges" in errors[3]
    assert "100x6000" in errors[4] and "max_side=5000" in errors[4]
    assert "int" in errors[6]
    assert "folder" in errors[7]
    assert emu.native.submitted() == 1
    # the too-tall image fits once max_side allows downsizing (never below 64 px across)
    again = deapi_ds.ocr([tall], max_side=1500, progress=False)
    assert again["status"].tolist() == ["ok"]
    assert (again["upload_width"].iloc[0], again["upload_height"].iloc[0]) == (64, 3840)


def test_a_failed_job_is_an_error_row_and_the_others_go_on(emu):
    emu.native.fail_next("INPUT_TOO_LARGE")
    a, b = render_text_image("first", scale=2), render_text_image("second", scale=2)
    res = deapi_ds.ocr([a, b], progress=False)
    # both are sent at once: either may be the one the emulator fails
    assert sorted(res["status"]) == ["error", "ok"]
    bad, good = (0, 1) if res["status"].iloc[0] == "error" else (1, 0)
    assert res["error_type"].iloc[bad] == "JobFailedError"
    assert "INPUT_TOO_LARGE" in res["error"].iloc[bad] and pd.isna(res["pixels"].iloc[bad])
    assert res["text"].iloc[good] == ["first", "second"][good] and pd.isna(res["text"].iloc[bad])


def test_rerun_pays_nothing(emu, scans):
    first = deapi_ds.ocr(scans, progress=False)
    paid = emu.stats("v2.images.ocr")
    again = deapi_ds.ocr(scans, progress=False)
    assert again["status"].tolist() == ["cached"] * 3
    assert again["text"].tolist() == first["text"].tolist()
    assert emu.stats("v2.images.ocr") == paid
    # another format is another result
    deapi_ds.ocr(scans, format="json", progress=False)
    assert emu.native.submitted() == 6


def test_killed_run_resumes_its_jobs_and_pays_for_no_image_twice(emu, scans):
    emu.native.job_seconds = (0.05, 0.1)
    original = _jobs.JobRunner._wait

    async def die(self, *args, **kwargs):
        raise deapi_ds.ConfigurationError("the kernel died")  # fatal: the run stops here

    _jobs.JobRunner._wait = die
    try:
        with pytest.raises(deapi_ds.ConfigurationError, match="kernel died"):
            deapi_ds.ocr(scans, progress=False)
    finally:
        _jobs.JobRunner._wait = original
    in_flight = emu.native.submitted()
    assert 1 <= in_flight <= 3
    res = deapi_ds.ocr(scans, progress=False)
    assert res["status"].tolist() == ["ok"] * 3
    assert res["text"].tolist() == [DOCS[name] for name in sorted(DOCS)]
    assert res.meta["resumed"] == in_flight and res.meta["jobs"] == 3 - in_flight
    assert emu.native.submitted() == 3  # every image paid for once


def test_json_format_gives_a_blocks_table(emu, scans):
    res = deapi_ds.ocr(scans, format="json", progress=False)
    blocks = res.blocks
    assert blocks["text"].tolist() == [line for name in sorted(DOCS)
                                       for line in DOCS[name].split("\n")]  # fmt: skip
    assert blocks["row"].tolist() == [0, 0, 0, 1, 1, 2]
    assert blocks["source"].iloc[0] == "invoice.png"
    first = blocks.iloc[0]
    assert (first["x0"], first["y0"]) == (16, 16) and first["x1"] > first["x0"]
    assert res["text"].tolist() == [DOCS[name] for name in sorted(DOCS)]
    assert len(res[res["source"] == "letter.png"].blocks) == 2  # row selections keep blocks


def test_max_side_downsizes_on_the_wire_and_never_enlarges(emu):
    big = _png(Image.new("RGB", (2000, 800), "white"))
    small = _png(Image.new("RGB", (600, 400), "white"))
    res = deapi_ds.ocr([big, small], max_side=1000, progress=False)
    assert res["upload_width"].tolist() == [1000, 600]
    assert res["upload_height"].tolist() == [400, 400]
    assert emu.stats("v2.images.ocr")["pixels"] == 1000 * 400 + 600 * 400  # what was billed
    assert res["pixels"].tolist() == [1000 * 400, 600 * 400]
    full = deapi_ds.ocr([big], max_side=None, progress=False)
    assert full["pixels"].tolist() == [2000 * 800]
    assert emu.stats("v2.images.ocr")["pixels"] == 1000 * 400 + 600 * 400 + 2000 * 800


def test_estimate_shows_pixels_cost_and_the_saving(emu):
    big = _png(Image.new("RGB", (3000, 2000), "white"))
    small = render_text_image("tiny", scale=2)
    est = deapi_ds.estimate_ocr([big, small, big, b"junk", None], max_side=1500)
    assert isinstance(est, deapi_ds.Estimate)
    assert (est.rows, est.unique, est.requests, est.errors, est.empty) == (5, 2, 2, 1, 1)
    small_px = Image.open(io.BytesIO(small)).size
    sent = 1500 * 1000 + small_px[0] * small_px[1]
    assert est.pixels == est.quantity == sent and est.unit == "pixels"
    assert est.pixels_original == 3000 * 2000 + small_px[0] * small_px[1]
    assert est.pixels_saved == 3000 * 2000 - 1500 * 1000
    assert est.cost_usd == pytest.approx(2 * OCR_BASE_USD + sent * OCR_PIXEL_USD)
    assert est.saving_usd == pytest.approx(est.pixels_saved * OCR_PIXEL_USD)
    with deapi_ds.config_context(tier="basic"):
        basic = deapi_ds.estimate_ocr([big, small], max_side=1500)
    assert basic.rpm == 5 and basic.daily_quota == 50  # Basic limits of images/ocr
    assert basic.minutes == pytest.approx(2 / 5)
    assert est.details["billable_pixels"].tolist() == [
        1500 * 1000,
        sum([small_px[0] * small_px[1]]),
        0,
        0,
        0,
    ]
    assert emu.native.submitted() == 0  # nothing was sent
    deapi_ds.ocr([small], progress=False)
    after = deapi_ds.estimate_ocr([big, small], max_side=1500)
    assert (after.cached, after.requests) == (1, 1)
    assert round(ocr_price(1920 * 1080), 5) == 0.01791  # deAPI's published point


def test_ocr_of_the_emulators_own_rendering_is_exact():
    text = "Line one: ABC xyz 0123456789\n  indented (2) !?#$%&*+-/<=>@[]^_{|}~"
    for fmt in ("PNG", "BMP", "GIF", "WEBP"):
        assert read_text(render_text_image(text, scale=3, fmt=fmt))["text"] == text


def test_bad_parameters_raise_before_anything_is_sent(emu, scans):
    with pytest.raises(deapi_ds.InvalidParameterError, match="'format'"):
        deapi_ds.ocr(scans, format="xml")
    with pytest.raises(deapi_ds.InvalidParameterError, match="max_side"):
        deapi_ds.ocr(scans, max_side=10)
    with pytest.raises(deapi_ds.InvalidParameterError, match="neither a folder"):
        deapi_ds.ocr("no/such/place")
    assert emu.native.submitted() == 0


@pytest.mark.parametrize(
    ("path", "model", "per_day"),
    [("/images/ocr", "Nanonets_Ocr_S_F16", 50), ("/images/background-removals", "Ben2", 100),
     ("/images/upscales", "RealESRGAN_x4", 100)],
)  # fmt: skip
def test_emulator_image_endpoints_keep_basic_limits_and_bill_pixels(path, model, per_day):
    import httpx

    from deapi_ds.emulator import Emulator

    now = [1000.0]
    emu = Emulator(clock=lambda: now[0])
    emu.native.limits("basic")
    emu.native.balance = 100.0
    http = httpx.Client(transport=emu.transport(), base_url="https://api.deapi.ai/api/v2",
                        headers={"Authorization": "Bearer 17|secret"})  # fmt: skip
    png = _png(Image.new("RGB", (96, 64), "white"))

    def post():
        return http.post(path, data={"model": model}, files={"image": ("a.png", png, "image/png")})

    answers = [post() for _ in range(6)]
    assert [r.status_code for r in answers] == [200] * 5 + [429]  # 5 per minute on Basic
    assert answers[5].json() == {"message": "Too Many Attempts."}
    price = http.post(path + "/price", data={"model": model},
                      files={"image": ("a.png", png, "image/png")}).json()["data"]["price"]  # fmt: skip
    if path == "/images/ocr":
        assert price == pytest.approx(ocr_price(96 * 64), rel=1e-3)  # the reference rate
    for _ in range(per_day // 5 - 1):  # the rest of the day's requests, a minute apart
        now[0] += 61
        assert all(post().status_code == 200 for _ in range(5))
    now[0] += 61
    daily = post()
    assert daily.status_code == 429 and daily.headers["X-RateLimit-Source"] == "daily"
    for i, job in enumerate(emu.native.jobs):
        if i % 50 == 0:
            now[0] += 61  # job status reads: 50 per minute
        assert http.get(f"/jobs/{job}").json()["data"]["status"] == "done"  # done: billed
    assert emu.stats("v2" + path.replace("/", "."))["pixels"] == per_day * 96 * 64


def test_basic_daily_quota_stops_at_50_and_the_rest_waits_with_status_quota(emu):
    deapi_ds.set_config(tier="basic", rpm={"v2.images.ocr": 10_000, "v2.jobs": 10_000})
    pages = [render_text_image(f"page {i}", scale=1) for i in range(52)]
    res = deapi_ds.ocr(pages, progress=False)
    assert res["status"].value_counts().to_dict() == {"ok": 50, "quota": 2}
    assert emu.native.submitted() == 50  # nothing sent past the day's 50
    assert "resets at" in res.loc[res["status"] == "quota", "error"].iloc[0]
    assert res.loc[res["status"] == "ok", "text"].str.startswith("page ").all()
