"""generate_images / edit_images against the in-process emulator: expansion, splitting, limits,
failures, display, files and the cache."""

from __future__ import annotations

import base64
import io
import os
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import deapi_ds
from deapi_ds import _client
from deapi_ds.images import (
    ImageGrid,
    ImageResult,
    aedit_images,
    agenerate_images,
    edit_images,
    generate_images,
    safe_filename,
)

GEN = "images.generations"
EDIT = "images.edits"


def requests(emulator, endpoint: str = GEN) -> int:
    return emulator.stats(endpoint)["requests"]


@pytest.fixture
def sent(monkeypatch):
    """Record the arguments of every images_generate / images_edit request."""
    calls: list[dict] = []
    gen, edit = _client.AsyncClient.images_generate, _client.AsyncClient.images_edit

    async def spy_gen(self, prompt, **kwargs):
        calls.append({"prompt": prompt, **kwargs})
        return await gen(self, prompt, **kwargs)

    async def spy_edit(self, images, prompt, **kwargs):
        calls.append({"images": images, "prompt": prompt, **kwargs})
        return await edit(self, images, prompt, **kwargs)

    monkeypatch.setattr(_client.AsyncClient, "images_generate", spy_gen)
    monkeypatch.setattr(_client.AsyncClient, "images_edit", spy_edit)
    return calls


def png(width: int = 128, height: int = 96, color: str = "teal") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


# --- generation: expansion, splitting, parameters ----------------------------------------------


def test_n_above_four_is_split_into_concurrent_requests(emulator, sent):
    out = generate_images("a red fox", n=6, seeds=10, cache=None)
    assert isinstance(out, ImageResult)
    assert len(out) == 6 and out.ok.all()
    assert requests(emulator) == 2
    assert sorted(c["n"] for c in sent) == [2, 4]
    # the second request continues the seeds, so no image repeats
    assert sorted(c["seed"] for c in sent) == [10, 14]
    assert out["n_index"].tolist() == [0, 1, 2, 3, 4, 5]
    assert out["seed"].tolist() == [10] * 6
    assert len(set(out["image"])) == 6


def test_prompts_times_seeds_is_one_call_in_prompt_major_order(emulator):
    out = generate_images(["a red fox", "a lighthouse"], seeds=[1, 2, 3], cache=None)
    assert len(out) == 6 and requests(emulator) == 6
    assert out["prompt"].tolist() == ["a red fox"] * 3 + ["a lighthouse"] * 3
    assert out["seed"].tolist() == [1, 2, 3, 1, 2, 3]
    assert out["row"].tolist() == [0, 0, 0, 1, 1, 1]
    assert out["prompt"].dtype == "string" and out["status"].dtype == "string"
    assert str(out["seed"].dtype) == "Int64"
    assert set(out["status"]) == {"ok"} and not out["cached"].any()
    assert (out["width"] == 512).all() and (out["height"] == 512).all()
    assert len(set(out["image"])) == 6  # every prompt x seed differs
    assert all(bytes(b[:8]) == b"\x89PNG\r\n\x1a\n" for b in out["image"])


def test_lists_of_models_and_sizes_expand_too(emulator):
    out = generate_images(
        "a cabin",
        model=["Flux1schnell", "ZImageTurbo_INT8"],
        size=["512x512", "768x512"],
        cache=None,
    )
    assert len(out) == 4 and requests(emulator) == 4
    assert list(zip(out["model"], out["size"], strict=True)) == [
        ("Flux1schnell", "512x512"),
        ("Flux1schnell", "768x512"),
        ("ZImageTurbo_INT8", "512x512"),
        ("ZImageTurbo_INT8", "768x512"),
    ]
    assert out["width"].tolist() == [512, 768, 512, 768]


def test_dataframe_column_keeps_row_labels_and_empty_prompts_cost_nothing(emulator):
    df = pd.DataFrame({"text": ["a cat", None, "  ", "a dog"]}, index=["a", "b", "c", "d"])
    out = generate_images(df, "text", cache=None)
    assert out["row"].tolist() == ["a", "b", "c", "d"]
    assert out["status"].tolist() == ["ok", "empty", "empty", "ok"]
    assert requests(emulator) == 2
    assert out["image"][1] is None


def test_native_parameters_pass_through(emulator, sent):
    generate_images(
        "a bridge",
        steps=4,
        negative_prompt="blurry",
        extra={"guidance": 3.5},
        response_format="b64_json",
        cache=None,
    )
    assert sent[0]["steps"] == 4 and sent[0]["negative_prompt"] == "blurry"
    assert sent[0]["extra"] == {"guidance": 3.5}
    assert sent[0]["response_format"] == "b64_json" and sent[0]["size"] == "512x512"


def test_seed_none_gives_distinct_images_within_a_request(emulator):
    out = generate_images("fog over a lake", n=3, cache=None)
    assert out["seed"].isna().all()
    assert len(set(out["image"])) == 3 and requests(emulator) == 1


# --- validation before spending ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "words"),
    [
        ("500x500", ["'500x500'", "Flux1schnell", "256 and 2048", "steps of 128", "512x512"]),
        ("4096x512", ["between 256 and 2048"]),
        ("big", ["must look like '512x512'", "'big'"]),
    ],
)
def test_sizes_are_checked_per_model_before_spending(emulator, size, words):
    with pytest.raises(deapi_ds.InvalidParameterError) as info:
        generate_images(["a", "b"], size=size)
    for word in words:
        assert word in str(info.value)
    assert requests(emulator) == 0


def test_size_valid_for_one_model_but_not_the_other(emulator):
    # 1600 is on ZImageTurbo's grid (step 16, up to 2048) but above Flux_2_Klein's 1536
    with pytest.raises(deapi_ds.InvalidParameterError, match="Flux_2_Klein_4B_BF16.*1536"):
        generate_images("a", model=["ZImageTurbo_INT8", "Flux_2_Klein_4B_BF16"], size="1600x1600")
    assert requests(emulator) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "'n' parameter of generate_images"),
        ({"n": True}, "'n' parameter"),
        ({"seeds": [1, -5]}, "'seeds' parameter"),
        ({"seeds": 1.5}, "'seeds' parameter"),
        ({"steps": 50}, "between 1 and 10 for Flux1schnell"),
        ({"response_format": "png"}, "'b64_json'"),
        ({"extra": {"seed": 3}}, "seeds="),
        ({"model": "Kokoro"}, "Kokoro.*cannot do txt2img.*Flux1schnell"),
        ({"model": "QwenImageEdit_Plus_NF4"}, "cannot do txt2img"),
    ],
)
def test_bad_parameters_raise_before_any_request(emulator, kwargs, match):
    with pytest.raises(deapi_ds.InvalidParameterError, match=match):
        generate_images("a cat", **kwargs)
    assert requests(emulator) == 0


def test_dataframe_without_prompt_column_names_the_columns(emulator):
    with pytest.raises(deapi_ds.InvalidParameterError, match=r"say which one.*\['text', 'id'\]"):
        generate_images(pd.DataFrame({"text": ["a"], "id": [1]}))


# --- responses: URLs and failures ----------------------------------------------------------------


def test_urls_are_downloaded_at_once(emulator):
    out = generate_images(["a", "b"], n=2, response_format="url", cache=None)
    assert out.ok.all() and requests(emulator) == 2
    assert emulator.stats("files")["requests"] == 4
    assert all(Image.open(io.BytesIO(b)).format == "PNG" for b in out["image"])
    assert (out["width"] == 512).all()


def test_failed_requests_become_rows_and_placeholder_tiles(emulator):
    deapi_ds.set_config(max_retries=0)
    emulator.configure(GEN, script=[None, 500])
    out = generate_images(["one", "two"])  # concurrent: which one fails is not fixed
    assert sorted(out["status"]) == ["error", "ok"]
    bad = int((out["status"] == "error").to_numpy().argmax())
    assert out["error_type"][bad] == "ServerError" and "500" in out["error"][bad]
    assert out["image"][bad] is None and out.images[bad] is None
    assert out.failed["prompt"].tolist() == [out["prompt"][bad]]
    html = out._repr_mimebundle_()["text/html"]
    assert html.count("⚠ failed") == 1 and "ServerError" in html
    # the image that failed was not cached: the rerun asks for it alone
    again = generate_images(["one", "two"])
    assert requests(emulator) == 3 and again.ok.all()
    assert again["status"][bad] == "ok" and again["status"][1 - bad] == "cached"


def test_every_image_failing_raises_with_the_partial_grid(emulator):
    # issue 14.9: a call whose every image failed the same way is loud, the grid still there
    deapi_ds.set_config(max_retries=0)
    emulator.configure(GEN, error_rate=1.0)
    with pytest.raises(deapi_ds.BatchError) as info:
        generate_images("a", seeds=[1, 2, 3], cache=None)
    out = info.value.partial
    assert isinstance(out, deapi_ds.ImageResult)
    assert (out["status"] == "error").all() and len(out) == 3
    assert isinstance(info.value.error, deapi_ds.ServerError)


# --- display -------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_notebook_output_is_a_static_thumbnail_grid(emulator):
    deapi_ds.set_config(max_retries=0)
    emulator.configure(GEN, script=[None, None, None, 500])
    out = generate_images(
        ["a <b>bold</b> cat", "a dog"], seeds=[1, 2], size="1024x1024", cache=None
    )
    bundle = out._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert "ImageResult: 4 rows" in bundle["text/plain"] and "\\x89PNG" not in bundle["text/plain"]
    html = bundle["text/html"]
    assert "<script" not in html.lower()
    parser = _Tags()
    parser.feed(html)
    imgs = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(imgs) == 3  # the failed image is a placeholder tile
    for attrs in imgs:
        assert attrs["src"].startswith("data:image/")
        raw = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert len(raw) < 20_000
        assert max(Image.open(io.BytesIO(raw)).size) <= 160  # a thumbnail, not the 1024 px image
    assert len(html) < 120_000
    text = " ".join(parser.text)
    assert "a <b>bold</b> cat" in text  # escaped in the markup, shown as text
    assert "seed 1 · Flux1schnell" in text and "⚠ failed" in text


def test_grid_object_and_custom_labels(emulator):
    out = generate_images("a fox", seeds=[1, 2, 3], cache=None)
    grid = out.grid(col_wrap=2, label="{model} s={seed}")
    assert isinstance(grid, ImageGrid)
    assert "repeat(2," in grid._repr_html_() and "Flux1schnell s=3" in grid.html
    assert grid._repr_mimebundle_()["text/html"] == grid.html


def test_plot_returns_the_figure(emulator):
    from matplotlib.figure import Figure

    out = generate_images(["a", "b"], seeds=[1, 2], cache=None)
    fig = out.plot(row="prompt", col="seed")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert isinstance(out.plot(col_wrap=3), Figure)


# --- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("../../etc/passwd", "etc-passwd"),
        ("..", "image"),
        ("C:\\Windows\\system32", "c-windows-system32"),
        ("A cat 🐱 on Mars!", "a-cat-on-mars"),
        ("東京の夜景", "東京の夜景"),
        ("\x00\n\t", "image"),
    ],
)
def test_safe_filename(text, expected):
    assert safe_filename(text) == expected


def test_safe_filename_is_length_limited():
    assert len(safe_filename("word " * 500)) <= 60
    assert len(safe_filename("猫" * 500, 200).encode()) <= 120


def test_save_writes_safe_unique_pngs_with_metadata(emulator, tmp_path):
    prompts = ["../../etc/passwd", "x" * 500, "🐱🐶", "a cat!", "a cat?", "/absolute/path"]
    out = generate_images(prompts, seeds=7, cache=None)
    folder = tmp_path / "renders"
    saved = out.save(folder)
    paths = [Path(p) for p in saved]
    assert len(set(paths)) == len(prompts)
    for p in paths:
        assert p.parent == folder and p.is_file() and p.suffix == ".png"
        assert len(p.name) <= 120
    names = [p.name for p in paths]
    assert names[0] == "etc-passwd_flux1schnell_s7.png"
    assert names[2] == "image_flux1schnell_s7.png"
    assert {names[3], names[4]} == {"a-cat_flux1schnell_s7.png", "a-cat_flux1schnell_s7-2.png"}
    assert not (tmp_path / "etc").exists() and sorted(os.listdir(tmp_path)) == ["renders"]
    with Image.open(paths[2]) as im:
        assert im.text["prompt"] == "🐱🐶"
        assert im.text["model"] == "Flux1schnell"
        assert im.text["size"] == "512x512" and im.text["seed"] == "7"
        assert im.size == (512, 512)
    # saving again reuses the same files (no -2 copies), other content gets a new name
    again = out.save(folder)
    assert again.tolist() == saved.tolist()
    assert len(os.listdir(folder)) == len(prompts)


def test_save_skips_failed_rows(emulator, tmp_path):
    deapi_ds.set_config(max_retries=0)
    emulator.configure(GEN, script=[500])
    out = generate_images(["one", "two"], cache=None)
    saved = out.save(tmp_path)
    assert saved.isna().tolist() == (out["status"] == "error").tolist()
    good = out["prompt"][int(out.ok.argmax())]
    assert os.listdir(tmp_path) == [f"{good}_flux1schnell_rnd.png"]


def test_save_keeps_the_servers_metadata_and_colour_profile(tmp_path):
    from PIL import ImageCms
    from PIL.PngImagePlugin import PngInfo

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    info = PngInfo()
    info.add_text("parameters", "steps=4")
    info.add_text("prompt", "what the server says")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buf, "PNG", icc_profile=icc, pnginfo=info)
    frame = pd.DataFrame(
        {
            "prompt": ["a teal square"],
            "model": ["Flux1schnell"],
            "size": ["64x64"],
            "seed": pd.array([3], dtype="Int64"),
            "n_index": pd.array([0], dtype="Int64"),
            "image": [buf.getvalue()],
            "status": ["ok"],
        }
    )
    (path,) = ImageResult(frame).save(tmp_path)
    with Image.open(path) as im:
        assert im.info.get("icc_profile") == icc
        assert im.text["parameters"] == "steps=4"
        assert im.text["prompt"] == "a teal square"  # ours win
        assert im.text["seed"] == "3"


def test_row_selections_stay_image_results(emulator, tmp_path):
    grid = generate_images(["a fox", "a bay"], seeds=[1, 2], steps=4, cache=None)
    chosen = grid[grid.seed == 2]  # a boolean mask, like a DataFrame
    assert isinstance(chosen, ImageResult) and len(chosen) == 2
    assert chosen.meta == grid.meta and "ImageResult: 2 rows" in chosen.summary()
    saved = chosen.save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [
        "a-bay_flux1schnell_s2.png",
        "a-fox_flux1schnell_s2.png",
    ]
    with Image.open(saved.iloc[0]) as im:
        assert im.text["seed"] == "2" and im.text["steps"] == "4"
    # .loc / .iloc / row-wise methods keep the kind; the grid shows only the chosen rows
    for subset in (
        grid.loc[grid.seed == 2],
        grid.loc[[1, 3]],
        grid.iloc[[1, 3]],
        grid.query("seed == 2"),
        grid.sort_values("seed").tail(2),
        grid[grid.ok & (grid.seed == 2).to_numpy()],
    ):
        assert isinstance(subset, ImageResult)
        assert subset["seed"].tolist() == [2, 2]
        assert subset.grid().count == 2
    # columns and single values are what pandas gives
    assert type(grid[["prompt", "seed"]]) is pd.DataFrame
    assert type(grid["seed"]) is pd.Series and type(grid.loc[0]) is pd.Series
    assert grid.loc[0, "prompt"] == "a fox"
    grid.loc[0, "prompt"] = "renamed"  # writing through .loc still reaches the frame
    assert grid.frame.loc[0, "prompt"] == "renamed"


# --- cache ---------------------------------------------------------------------------------------


def test_rerun_is_free_and_identical(emulator):
    first = generate_images(["a", "b"], seeds=[1, 2], n=2)
    assert requests(emulator) == 4
    second = generate_images(["a", "b"], seeds=[1, 2], n=2)
    assert requests(emulator) == 4
    assert second["status"].tolist() == ["cached"] * 8 and second["cached"].all()
    assert second["image"].tolist() == first["image"].tolist()
    assert second["width"].tolist() == first["width"].tolist()
    # seed=None is cached by (prompt, n_index) too
    generate_images("c", n=2)
    generate_images("c", n=2)
    assert requests(emulator) == 5
    # more images only asks for the new ones
    generate_images("c", n=3)
    assert requests(emulator) == 6
    # cache=None asks again
    generate_images(["a"], seeds=1, cache=None)
    assert requests(emulator) == 7


def test_key_covers_output_changing_parameters(emulator):
    generate_images("a", seeds=1)
    generate_images("a", seeds=1, steps=4)
    generate_images("a", seeds=1, negative_prompt="blur")
    generate_images("a", seeds=1, size="768x768")
    generate_images("a", seeds=2)
    assert requests(emulator) == 5
    generate_images("a", seeds=1, response_format="url")  # same image: cached
    assert requests(emulator) == 5


def test_duplicate_prompts_are_generated_once(emulator):
    out = generate_images(["same", "same", "other"], seeds=3, cache=None)
    assert requests(emulator) == 2 and out["image"][0] == out["image"][1]


# --- edits ---------------------------------------------------------------------------------------


def test_edit_takes_paths_bytes_pil_and_series(emulator, tmp_path, sent):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (320, 240), "orange").save(path, "JPEG")
    inputs = pd.Series(
        [str(path), png(256, 256, "navy"), Image.new("RGBA", (200, 300), "red")], index=[10, 11, 12]
    )
    out = edit_images(inputs, prompt="make it a watercolor", cache=None)
    assert out.ok.all() and requests(emulator, EDIT) == 3
    assert out["row"].tolist() == [10, 11, 12]
    assert out["input"].tolist()[0] == "photo.jpg"
    names = [c["images"][0][0] for c in sent]
    assert names == ["photo.jpg", "image_0.png", "image_0.png"]
    assert sent[0]["images"][0][1] == path.read_bytes()  # sent as it is
    assert out["model"].unique().tolist() == ["Flux_2_Klein_4B_BF16"]
    assert out["size"].tolist()[0] == f"{out['width'][0]}x{out['height'][0]}"


def test_edit_one_image_many_prompts_and_multi_input(emulator, sent):
    a, b = png(256, 256, "red"), png(256, 256, "blue")
    out = edit_images(a, prompt=["make it blue", "make it green"], seeds=[1, 2], cache=None)
    assert len(out) == 4 and out["row"].tolist() == [0, 0, 1, 1]
    assert out["prompt"].tolist() == ["make it blue"] * 2 + ["make it green"] * 2
    combo = edit_images([(a, b)], prompt="combine them", cache=None)
    assert combo.ok.all() and len(sent[-1]["images"]) == 2
    assert combo["input"][0] == "<image_0.png> + <image_1.png>"


def test_edit_cache_key_includes_the_input_bytes(emulator):
    edit_images(png(256, 256, "red"), prompt="sepia", seeds=1)
    again = edit_images(png(256, 256, "red"), prompt="sepia", seeds=1)
    assert again["status"].tolist() == ["cached"] and requests(emulator, EDIT) == 1
    edit_images(png(256, 256, "green"), prompt="sepia", seeds=1)
    assert requests(emulator, EDIT) == 2


def test_mask_is_refused_locally(emulator):
    with pytest.raises(deapi_ds.InvalidParameterError, match="inpainting.*prompt"):
        edit_images(png(), prompt="remove the car", mask=png())
    assert requests(emulator, EDIT) == 0


def test_models_that_cannot_edit_are_named(emulator):
    with pytest.raises(
        deapi_ds.InvalidParameterError,
        match="Flux1schnell.*cannot do img2img.*Flux_2_Klein_4B_BF16, QwenImageEdit_Plus_NF4",
    ):
        edit_images(png(), prompt="make it blue", model="Flux1schnell")
    assert requests(emulator, EDIT) == 0


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (lambda: png(32, 200), "32x200 px.*between 64 and 5000"),
        (lambda: png(5001, 64), "5001x64 px"),
        (lambda: b"\x89PNG" + os.urandom(11 * 1024 * 1024), "11.0 MB.*up to 10 MB"),
        (lambda: b"not an image", "not a readable image"),
        (lambda: "/no/such/file.png", "image file not found"),
        (lambda: (png(), png(), png(), png()), "4 input images.*at most 3"),
    ],
)
def test_upload_limits_are_checked_before_spending(emulator, image, match):
    with pytest.raises(deapi_ds.InvalidParameterError, match=match):
        edit_images([image()], prompt="make it blue")
    assert requests(emulator, EDIT) == 0


def test_one_bad_input_fails_only_its_rows(emulator):
    out = edit_images([png(), png(16, 16), None], prompt="make it blue", n=2, cache=None)
    assert out["status"].tolist() == ["ok", "ok", "error", "error", "empty", "empty"]
    assert "16x16 px" in out["error"][2] and "row 1" in out["error"][2]
    assert requests(emulator, EDIT) == 1


def test_edit_sizes_and_counts(emulator, sent):
    with pytest.raises(deapi_ds.InvalidParameterError, match="1536"):
        edit_images(png(), prompt="x", size="2048x2048")
    with pytest.raises(deapi_ds.InvalidParameterError, match="2 images and 3 prompts"):
        edit_images([png(), png()], prompt=["a", "b", "c"])
    out = edit_images(png(), prompt="x", size="512x512", n=5, cache=None)
    assert sorted(c["n"] for c in sent) == [1, 4] and (out["width"] == 512).all()


# --- async twins ---------------------------------------------------------------------------------


def test_async_functions(emulator):
    import anyio

    async def main():
        gen = await agenerate_images(["a", "b"], seeds=1, cache=None, progress=False)
        ed = await aedit_images(png(), prompt="x", cache=None, progress=False)
        return gen, ed

    gen, ed = anyio.run(main)
    assert gen.ok.all() and ed.ok.all()


def test_empty_input_gives_an_empty_result(emulator):
    out = generate_images([], cache=None)
    assert len(out) == 0 and requests(emulator) == 0
    assert "No images." in out._repr_mimebundle_()["text/html"]
    assert list(out.columns)[:3] == ["row", "prompt", "model"]
