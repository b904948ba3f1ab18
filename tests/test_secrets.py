"""The API key stays secret end to end (issue 2, "Secrets"; ARCHITECTURE invariant 6).

A recognisable fake key is set through ``DEAPI_API_KEY`` and every task runs against the
loopback emulator (real HTTP, so the key really is on the wire) with DEBUG logging captured from
every logger (httpx and httpcore included). Then every log record, every exception (text, repr
and formatted traceback, chained ones too), the repr of every result, client and settings object,
the notebook mimebundles of the results and every byte of the cache and output folders are
scanned for the key and for its secret part alone.
"""

from __future__ import annotations

import logging
import pathlib
import traceback

import httpx
import pytest

import deapi_ds
from deapi_ds import _tasks
from deapi_ds.emulator import Emulator

KEY = "dpn-sk-4242|FAKE-Zq7Xw9Kp2Lm5-Nb8Vc3Rt6Yh1Jd4Gs0Fe"
SECRET = KEY.partition("|")[2]
NEEDLES = (KEY, SECRET, SECRET[:12], SECRET[-12:])


def assert_clean(text: str, what: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"the key (or part of it) appears in {what}: {text[:300]!r}"


def assert_folder_clean(folder: pathlib.Path) -> int:
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for needle in NEEDLES:
            assert needle.encode() not in data, f"the key is written to {path}"
    return len(files)


def exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def bundle_text(obj: object) -> str:
    parts = [repr(obj), str(obj)]
    for name in ("_repr_mimebundle_", "_repr_html_"):
        method = getattr(obj, name, None)
        if method is not None:
            parts.append(str(method()))
    return "\n".join(parts)


@pytest.fixture
def live_like(monkeypatch, tmp_path):
    """The user's setup: key and base URL in the environment, a loopback emulator as deAPI."""
    emu = Emulator()
    with emu.serve() as server:
        monkeypatch.setenv("DEAPI_API_KEY", KEY)
        monkeypatch.setenv("DEAPI_BASE_URL", server.base_url)
        monkeypatch.setenv("DEAPI_DS_MAX_RETRIES", "1")
        _tasks.clear_shared_clients()
        yield emu, server, tmp_path
    _tasks.clear_shared_clients()


def test_key_appears_nowhere(live_like, caplog):
    emu, server, tmp_path = live_like
    caplog.set_level(logging.DEBUG)  # root: deapi_ds, httpx, httpcore, everything
    texts: list[str] = []

    emb = deapi_ds.embed(["the quick brown fox", "a lazy dog", "the quick brown fox"])
    speech = deapi_ds.speak(["hello there, general kenobi"], response_format="wav")
    clip = speech.frame["audio"].iloc[0]
    heard = deapi_ds.transcribe([clip])
    images = deapi_ds.generate_images(["a red kite"], size="256x256")
    url_images = deapi_ds.generate_images(["a blue kite"], size="256x256", response_format="url")
    video = deapi_ds.generate_video("a paper boat", folder=tmp_path / "videos", poll=0.01).jobs[0]
    frame = deapi_ds.models()
    assert emb.frame["status"].eq("ok").all() and heard.files["status"].eq("ok").all()
    assert images.frame["status"].eq("ok").all() and url_images.frame["status"].eq("ok").all()
    assert video.status == "completed" and len(frame) > 5
    assert "hello there" in heard.files["text"].iloc[0]
    assert emu.stats("files")["ok"] == 1  # the URL image was downloaded, from the API's origin

    for obj in (emb, speech, heard, images, url_images, video):
        texts.append(bundle_text(obj))
    texts.append(frame.to_string())
    client = deapi_ds.Client()
    texts += [
        repr(client),
        repr(client.aclient),
        repr(client.settings),
        str(client.settings),
        repr(deapi_ds.get_config()),
        repr(client.engine.__dict__),
        repr(client.aclient._transport),
        repr(client.aclient._transport.client.auth),
    ]
    texts.append(repr(client.embeddings(["x"])))

    # a 500 (retries exhausted) and a 401 from a server that knows another key
    emu.configure("embeddings", script=[500, 500])
    with pytest.raises(deapi_ds.ServerError) as server_error:
        client.embeddings(["boom"])
    texts += exception_texts(server_error.value)
    emu.configure("embeddings", script=[500, 500])
    with pytest.raises(deapi_ds.BatchError) as batch_error:  # every row failed: raised
        deapi_ds.embed(["boom"], cache=False)
    failed = batch_error.value.partial
    assert failed.frame["status"].tolist() == ["error"]
    texts.append(bundle_text(failed) + failed.frame.to_string())
    texts += exception_texts(batch_error.value)
    strict = Emulator(api_key="dpn-sk-1|theonlyacceptedkey")
    with strict.serve() as other:
        with deapi_ds.config_context(base_url=other.base_url):
            with pytest.raises(deapi_ds.AuthenticationError) as auth_error:
                deapi_ds.embed(["who am i"])
            with pytest.raises(deapi_ds.AuthenticationError) as auth_error2:
                deapi_ds.Client().models()
    assert "DEAPI_API_KEY" in str(auth_error.value)  # says how to fix it
    texts += exception_texts(auth_error.value) + exception_texts(auth_error2.value)

    assert len(caplog.records) > 20
    for record in caplog.records:
        assert_clean(record.getMessage(), f"a log record of {record.name}")
        assert_clean(repr(record.args), f"the args of a log record of {record.name}")
    for i, text in enumerate(texts):
        assert_clean(text, f"text #{i}")
    assert assert_folder_clean(tmp_path) > 5  # the cache and the saved video


def test_server_text_echoing_the_key_is_redacted(monkeypatch):
    """A server that echoes the key (whole, or only its secret part) in an error body."""
    bodies = iter(
        [
            (401, {"error": {"message": f"Invalid key {KEY}", "type": "auth"}}),
            (500, {"message": f"internal error near '{SECRET}'"}),
            (422, {"message": "bad", "errors": {"model": [f"no model for {SECRET}"]}}),
            (400, f"plain text error: Authorization: Bearer {KEY}".encode()),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        status, body = next(bodies)
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    client = deapi_ds.Client(
        KEY,
        base_url="https://oai.deapi.ai/v1",
        transport=httpx.MockTransport(handler),
        max_retries=0,
    )
    for _ in range(4):
        with pytest.raises(deapi_ds.APIStatusError) as info:
            client.embeddings(["a"])
        for text in exception_texts(info.value) + [str(info.value.errors), info.value.message]:
            assert_clean(text, f"the {info.value.status_code} error")


def test_key_not_sent_to_other_origins_for_downloads(monkeypatch):
    """Image URLs on another host, another port or plain http at the API's host get no key."""
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        seen[url] = request.headers.get("authorization")
        if request.url.path.endswith("/images/generations"):
            return httpx.Response(
                200,
                json={
                    "created": 0,
                    "data": [
                        {"url": "https://cdn.example.com/a.png"},
                        {"url": "http://oai.deapi.ai/files/b.png"},
                        {"url": "https://oai.deapi.ai:8443/files/c.png"},
                        {"url": "https://oai.deapi.ai/files/d.png"},
                    ],
                },
            )
        return httpx.Response(
            200, content=b"not really a png", headers={"content-type": "image/png"}
        )

    client = deapi_ds.Client(
        KEY, base_url="https://oai.deapi.ai/v1", transport=httpx.MockTransport(handler)
    )
    result = client.images_generate("x", response_format="url", n=4)
    for image in result.images:
        client.download(image.url)
    assert seen["https://oai.deapi.ai/v1/images/generations"] == f"Bearer {KEY}"
    assert seen["https://cdn.example.com/a.png"] is None
    assert seen["http://oai.deapi.ai/files/b.png"] is None  # same name, but clear text
    assert seen["https://oai.deapi.ai:8443/files/c.png"] is None  # another port
    assert seen["https://oai.deapi.ai/files/d.png"] == f"Bearer {KEY}"  # the API's own origin


def test_key_never_sent_in_clear_to_a_remote_host(monkeypatch):
    """Plain http to a non-loopback host is refused before any request, naming the fix."""
    monkeypatch.setenv("DEAPI_API_KEY", KEY)
    monkeypatch.setenv("DEAPI_BASE_URL", "http://api.example.com/v1")
    with pytest.raises(deapi_ds.ConfigurationError) as info:
        deapi_ds.embed(["a"])
    assert "api.example.com" in str(info.value) and "https://" in str(info.value)
    assert_clean(str(info.value), "the refusal")
    monkeypatch.setenv("DEAPI_DS_ALLOW_INSECURE_HTTP", "1")
    assert deapi_ds.get_config().require_key() == KEY  # explicitly allowed
