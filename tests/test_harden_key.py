"""The key by every route (issue 15, items 1-3; issue 14, item 10).

1. Proxies from the environment never see the key of a plain-http (loopback) base URL.
2. The key is held in a ``Secret`` wherever it is kept, passed or refused: verbose tracebacks
   (``%xmode Verbose`` in a real kernel) and frame locals show a redacted value.
3. Host rules compare normalised hosts (case, trailing dot, IDNA).
4. ``set_config(api_key=...)`` applies the environment's key rules; the rules answer for any
   base URL (the native API's too).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import traceback
from pathlib import Path

import httpx
import pytest

import deapi_ds
from deapi_ds import _config, _tasks
from deapi_ds._config import (
    Secret,
    get_config,
    key_refusal,
    native_key,
    normalize_host,
    secret_key,
)
from deapi_ds.emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]
KEY = "dpn-sk-4242|FAKE-Zq7Xw9Kp2Lm5-Nb8Vc3Rt6Yh1Jd4Gs0Fe"
SECRET = KEY.partition("|")[2]
OPENAI_KEY = "sk-proj-FAKEopenai-Qw3Er5Ty7Ui9Op1As3Df5Gh"
NEEDLES = (KEY, SECRET, SECRET[:12], SECRET[-12:], OPENAI_KEY, OPENAI_KEY[8:24])


def assert_clean(text: str, what: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"the key (or part of it) appears in {what}: {text[:300]!r}"


class RecordingProxy:
    """A loopback listener standing in for a proxy: records every byte, answers 502."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received = bytearray()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    self.received += conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def proxy():
    p = RecordingProxy()
    yield p
    p.close()


# -------------------------------------------------------------------------------- 1. proxies


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY", "http_proxy"])
def test_loopback_http_never_goes_through_an_environment_proxy(monkeypatch, proxy, variable):
    with Emulator().serve() as server:
        monkeypatch.setenv(variable, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        # the test can fail: plain httpx, trusting the environment, does use the proxy
        with httpx.Client() as plain:
            assert plain.get(server.base_url + "/models").status_code == 502
        assert proxy.received.startswith(b"GET http://127.0.0.1")
        proxy.received.clear()

        monkeypatch.setenv("DEAPI_API_KEY", KEY)
        monkeypatch.setenv("DEAPI_BASE_URL", server.base_url)
        _tasks.clear_shared_clients()
        with deapi_ds.Client() as client:
            out = client.embeddings(["through no proxy"])
        assert out.matrix.shape == (1, 1024)
        assert proxy.received == b"", "the request went through the proxy"
        assert_clean(bytes(proxy.received).decode("latin-1"), "the proxy's bytes")


def test_invalid_host_behind_an_environment_proxy_is_refused(monkeypatch, proxy):
    """Without an in-process transport, a proxy would answer for a .invalid host: refused."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with pytest.raises(deapi_ds.ConfigurationError, match="proxy") as info:
        deapi_ds.Client(KEY, base_url="http://emulator.deapi-ds.invalid/v1")
    assert_clean(str(info.value), "the refusal")
    assert proxy.received == b""
    # the emulator's in-process transport is never proxied (httpx ignores proxies then)
    emu = Emulator()
    client = deapi_ds.Client(
        KEY, base_url="http://emulator.deapi-ds.invalid/v1", transport=emu.transport()
    )
    assert client.embeddings(["x"]).matrix.shape == (1, 1024)
    assert proxy.received == b""


def test_env_proxy_follows_no_proxy(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example.com")
    assert _config.env_proxy("https://oai.deapi.ai/v1") == "http://proxy.example.com:3128"
    assert _config.env_proxy("https://internal.example.com/v1") is None
    assert _config.env_proxy("http://oai.deapi.ai/v1") is None  # no HTTP_PROXY


# ------------------------------------------------------------------------------ 3. host rules


@pytest.mark.parametrize(
    "base_url",
    [
        "https://oai.deapi.ai./v1",
        "https://OAI.DEAPI.AI/v1",
        "https://oai.deapi.ai../v1",
        "https://oai.deapi.\uff41\uff49/v1",  # full-width letters: IDNA maps them to "ai"
        "https://api.deapi.ai./api/v2",
    ],
)
def test_openai_key_never_goes_to_a_deapi_host_however_spelled(monkeypatch, base_url):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    with pytest.raises(deapi_ds.ConfigurationError, match="does not start with 'dpn-sk-'") as info:
        deapi_ds.Client()
    assert_clean(str(info.value), "the refusal")
    assert key_refusal(secret_key(OPENAI_KEY), base_url) is not None


def test_normalize_host():
    assert normalize_host("OAI.deapi.AI.") == "oai.deapi.ai"
    assert normalize_host("oai.deapi.\uff41\uff49") == "oai.deapi.ai"
    assert normalize_host("b\u00fccher.example") == "xn--bcher-kva.example"
    assert _config.is_deapi_host("https://DeApi.Ai./x")
    assert not _config.is_deapi_host("https://deapi.ai.evil.com/x")
    assert not _config.is_deapi_host("https://notdeapi.ai/x")
    assert _config.is_loopback("http://LOCALHOST./v1")
    assert _config.is_loopback("http://[::ffff:127.0.0.1]:8000/v1")
    assert not _config.is_loopback("http://127.0.0.1.evil.com/v1")


def test_plain_http_rule_uses_the_normalised_host():
    with pytest.raises(deapi_ds.ConfigurationError, match="plain http"):
        deapi_ds.Client(KEY, base_url="http://Example.COM./v1")
    deapi_ds.Client(KEY, base_url="http://LocalHost.:8000/v1")


# ------------------------------------------------------------- 4. set_config and a second URL


def test_set_config_refuses_an_openai_key_for_deapi_with_the_same_rule(monkeypatch):
    deapi_ds.set_config(api_key=KEY)
    with pytest.raises(deapi_ds.ConfigurationError, match="looks like an OpenAI key") as info:
        deapi_ds.set_config(api_key=OPENAI_KEY)
    assert_clean(str(info.value), "the refusal")
    assert get_config().api_key == Secret(KEY)  # nothing changed
    with pytest.raises(deapi_ds.ConfigurationError, match="looks like an OpenAI key"):
        deapi_ds.Client(OPENAI_KEY)
    with pytest.raises(deapi_ds.ConfigurationError, match="looks like an OpenAI key"):
        deapi_ds.set_config(base_url="https://oai.deapi.ai./v1", api_key=OPENAI_KEY)
    # to an OpenAI-compatible server of another host the same key may go
    deapi_ds.set_config(base_url="https://my-vllm.example.com/v1", api_key=OPENAI_KEY)
    assert get_config().require_key() == OPENAI_KEY
    # and moving the base URL back to deAPI with that key set is refused at once
    with pytest.raises(deapi_ds.ConfigurationError, match="looks like an OpenAI key"):
        deapi_ds.set_config(base_url="https://oai.deapi.ai/v1")
    # the environment's rule is the same rule
    deapi_ds.reset_config()
    monkeypatch.setenv("DEAPI_API_KEY", OPENAI_KEY)
    with pytest.raises(deapi_ds.ConfigurationError, match="looks like an OpenAI key"):
        get_config().require_key()


def test_deapi_keys_in_the_sk_dp_form_are_not_taken_for_openai_keys(monkeypatch):
    """One deAPI docs page shows keys shaped sk-dp-...: those may go to deAPI."""
    deapi_ds.set_config(api_key="sk-dp-1234-abcdef")
    assert get_config().require_key() == "sk-dp-1234-abcdef"
    deapi_ds.reset_config()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dp-1234-abcdef")
    assert get_config().require_key() == "sk-dp-1234-abcdef"


@pytest.mark.parametrize("bad", ["", "   ", "dpn-sk-1|abc def", "dpn-sk-1|abc\x00"])
def test_set_config_refuses_keys_that_cannot_be_a_bearer_token(bad):
    with pytest.raises(deapi_ds.ConfigurationError, match="empty or contains spaces"):
        deapi_ds.set_config(api_key=bad)


def test_one_function_answers_may_this_key_go_to_this_url():
    """The rules are reusable for a second origin (deAPI's native API, raw key form)."""
    raw = native_key(KEY)
    assert isinstance(raw, Secret) and raw.get() == KEY.removeprefix("dpn-sk-")
    assert native_key(raw).get() == raw.get()  # the raw form stays raw
    native = "https://api.deapi.ai/api/v2"
    assert key_refusal(raw, native) is None
    assert key_refusal(secret_key(OPENAI_KEY), native) is not None
    assert key_refusal(raw, "http://api.deapi.ai/api/v2") is not None  # plain http, remote
    assert key_refusal(raw, "http://127.0.0.1:9/api/v2") is None
    assert key_refusal(raw, "http://api.deapi.ai/api/v2", allow_insecure_http=True) is None
    settings = get_config(api_key=KEY)
    assert settings.require_secret(native) == secret_key(KEY)
    with pytest.raises(deapi_ds.ConfigurationError, match="plain http"):
        settings.require_secret("http://api.deapi.ai/api/v2")


# -------------------------------------------------------------------- 2. the key as a Secret


def _frame_texts(exc: BaseException) -> list[str]:
    """What a verbose traceback or an error tracker would print: every local of every frame,
    and the attributes of objects held in locals (``self._key``), one level deep."""
    texts = []
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_filename != __file__:
            for name, value in frame.f_locals.items():
                texts.append(f"{name} = {value!r}")
                for attr, inner in getattr(value, "__dict__", {}).items():
                    texts.append(f"{name}.{attr} = {inner!r}")
                for attr in getattr(type(value), "__slots__", ()):
                    if attr != "_value" and hasattr(value, attr):
                        texts.append(f"{name}.{attr} = {getattr(value, attr)!r}")
        tb = tb.tb_next
    return texts


def test_the_key_is_a_secret_wherever_it_is_kept():
    client = deapi_ds.Client(KEY, base_url="http://127.0.0.1:9/v1")
    transport = client.aclient._transport
    assert isinstance(client.settings.api_key, Secret)
    assert isinstance(transport._key, Secret)
    auth = transport.client.auth
    assert isinstance(auth._key, Secret)
    for obj in (client, client.settings, transport, auth, transport._key):
        assert_clean(repr(obj) + str(obj) + f"{obj}", type(obj).__name__)
    assert_clean(repr(vars(transport)), "the transport's attributes")


def test_refused_keys_leave_no_plain_text_in_frame_locals(monkeypatch):
    cases = [
        lambda: deapi_ds.set_config(api_key=OPENAI_KEY),
        lambda: deapi_ds.Client(OPENAI_KEY),
        lambda: deapi_ds.Client(KEY, base_url="http://api.example.com/v1"),
        lambda: deapi_ds.get_config(api_key=KEY, base_url="http://x.example/v1").require_key(),
    ]
    for case in cases:
        with pytest.raises(deapi_ds.ConfigurationError) as info:
            case()
        texts = _frame_texts(info.value)
        assert texts, "no frames were inspected"
        for text in texts:
            assert_clean(text, "a frame local")
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with pytest.raises(deapi_ds.ConfigurationError) as info:
        deapi_ds.Client()
    for text in _frame_texts(info.value):
        assert_clean(text, "a frame local")


def test_a_401_leaves_no_plain_text_in_frame_locals(monkeypatch):
    with Emulator(api_key="dpn-sk-1|the-right-one").serve() as server:
        client = deapi_ds.Client(KEY, base_url=server.base_url, max_retries=0)
        with pytest.raises(deapi_ds.AuthenticationError) as info:
            client.embeddings(["a"])
    texts = _frame_texts(info.value) + ["".join(traceback.format_exception(info.value))]
    assert any("Secret('**********')" in t for t in texts), "the key's holders were not seen"
    for text in texts:
        assert_clean(text, "a frame local")


NOTEBOOK_CELLS = [
    "%xmode Verbose",
    "import deapi_ds\nclient = deapi_ds.Client(max_retries=0)",
    "client.embeddings(['hello'])",
    "deapi_ds.set_config(base_url='https://oai.deapi.ai/v1', api_key=open(KEYFILE).read())",
    "deapi_ds.Client(base_url='http://api.example.com/v1')",
]


@pytest.mark.timeout(120)
def test_verbose_notebook_traceback_of_a_401_never_shows_the_key(monkeypatch, tmp_path):
    """An executed notebook with ``%xmode Verbose``, a 401 and a refused key, saved and grepped."""
    nbformat = pytest.importorskip("nbformat")
    jupyter_client = pytest.importorskip("jupyter_client.manager")
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(OPENAI_KEY)
    with Emulator(api_key="dpn-sk-1|the-right-one").serve() as server:
        env = {
            **os.environ,
            "DEAPI_API_KEY": KEY,
            "DEAPI_BASE_URL": server.base_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        km, kc = jupyter_client.start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
        try:
            nb = nbformat.v4.new_notebook()
            kc.execute_interactive(f"KEYFILE = {str(keyfile)!r}", timeout=30)
            for source in NOTEBOOK_CELLS:
                cell = nbformat.v4.new_code_cell(source)
                outputs = []

                def hook(msg, outputs=outputs):
                    kind = msg["header"]["msg_type"]
                    if kind in ("stream", "error", "execute_result", "display_data"):
                        outputs.append(nbformat.v4.output_from_msg(msg))

                kc.execute_interactive(source, timeout=60, output_hook=hook)
                cell.outputs = outputs
                nb.cells.append(cell)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    saved = path.read_text()
    errors = [o for c in nb.cells for o in c.outputs if o.get("output_type") == "error"]
    names = [o["ename"] for o in errors]
    assert names == ["AuthenticationError", "ConfigurationError", "ConfigurationError"], names
    # the verbose traceback did print locals, including the objects that hold the key
    assert "Secret(" in saved and "self" in saved
    for needle in NEEDLES:
        assert needle not in saved, f"{needle[:10]}... is in the saved notebook"
    assert_clean(saved, "the saved notebook")
    assert sys.executable  # the kernel is this interpreter's python3 kernel
