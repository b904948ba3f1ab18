import logging
import pickle

import pytest

import deapi_ds
from deapi_ds import _config
from deapi_ds._config import Secret, get_config, normalize_key

KEY = "dpn-sk-1234|FAKE-abcdefghij-klmnopqrst-0123456789"


def test_defaults():
    s = get_config()
    assert s.base_url == "https://oai.deapi.ai/v1"
    assert s.api_key is None
    assert s.effective_tier == "basic"
    assert s.max_concurrency == 8


def test_env_and_precedence(monkeypatch):
    monkeypatch.setenv("DEAPI_API_KEY", KEY)
    monkeypatch.setenv("DEAPI_DS_CONCURRENCY", "3")
    monkeypatch.setenv("DEAPI_DS_RPM", "embeddings=20,audio.speech=5")
    s = get_config()
    assert s.api_key.get() == KEY and s.key_source == "DEAPI_API_KEY"
    assert s.max_concurrency == 3
    assert s.rpm_for("embeddings") == 20 and s.rpm_for("images.generations") is None
    deapi_ds.set_config(max_concurrency=5)
    assert get_config().max_concurrency == 5
    with deapi_ds.config_context(max_concurrency=2) as inner:
        assert inner.max_concurrency == 2
        with deapi_ds.config_context(timeout=7):
            assert get_config().max_concurrency == 2 and get_config().timeout == 7
    assert get_config().max_concurrency == 5
    deapi_ds.set_config(max_concurrency=None)
    assert get_config().max_concurrency == 3


def test_bare_key_gets_prefix(monkeypatch):
    assert normalize_key("2206|secretsecret") == "dpn-sk-2206|secretsecret"
    assert normalize_key("Bearer dpn-sk-1|x") == "dpn-sk-1|x"
    monkeypatch.setenv("DEAPI_API_KEY", "  2206|ixoAULVrhsecret ")
    assert get_config().api_key.get() == "dpn-sk-2206|ixoAULVrhsecret"


def test_openai_env_vars(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "dpn-sk-7|abc")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://oai.deapi.ai/v1/")
    s = get_config()
    assert s.key_source == "OPENAI_API_KEY" and s.require_key() == "dpn-sk-7|abc"
    assert s.base_url == "https://oai.deapi.ai/v1"


def test_openai_key_never_sent_to_deapi(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-realopenaikey1234567890")
    with pytest.raises(deapi_ds.ConfigurationError, match="does not start with 'dpn-sk-'") as info:
        get_config().require_key()
    assert "realopenaikey" not in str(info.value)
    with pytest.raises(deapi_ds.ConfigurationError):
        deapi_ds.Client()
    # to a non-deAPI OpenAI-compatible server it may go
    monkeypatch.setenv("OPENAI_BASE_URL", "https://my-vllm.example.com/v1")
    assert get_config().require_key().startswith("sk-proj")


def test_missing_key_message():
    with pytest.raises(deapi_ds.MissingAPIKeyError, match="DEAPI_API_KEY"):
        deapi_ds.Client()


def test_plain_http_refused_except_loopback():
    with pytest.raises(deapi_ds.ConfigurationError, match="plain http"):
        deapi_ds.Client(KEY, base_url="http://example.com/v1")
    deapi_ds.Client(KEY, base_url="http://127.0.0.1:8000/v1")
    deapi_ds.Client(KEY, base_url="http://localhost:8000/v1")
    deapi_ds.Client(KEY, base_url="http://example.com/v1", allow_insecure_http=True)


def test_unknown_option_and_bad_values():
    with pytest.raises(
        deapi_ds.InvalidParameterError, match="Unknown configuration option 'concurency'"
    ):
        deapi_ds.set_config(concurency=3)
    with pytest.raises(deapi_ds.InvalidParameterError, match="max_concurrency"):
        deapi_ds.set_config(max_concurrency=0)
    with pytest.raises(deapi_ds.InvalidParameterError, match="tier"):
        deapi_ds.set_config(tier="gold")


def test_bad_env_value(monkeypatch):
    monkeypatch.setenv("DEAPI_DS_CONCURRENCY", "lots")
    with pytest.raises(deapi_ds.ConfigurationError, match="DEAPI_DS_CONCURRENCY must be a number"):
        get_config()


def test_secret_never_in_repr(monkeypatch):
    monkeypatch.setenv("DEAPI_API_KEY", KEY)
    s = get_config()
    assert KEY not in repr(s) and KEY not in str(s) and "1234|" not in repr(s)
    assert KEY not in repr(s.api_key)
    client = deapi_ds.Client()
    assert KEY not in repr(client) and KEY not in repr(client.aclient._transport)
    assert pickle.loads(pickle.dumps(Secret(KEY))).get() == KEY


def test_readme_table_lists_every_variable():
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    for name in _config.ENV_VARIABLES:
        assert f"`{name}`" in readme, name


def test_tier_default_depends_on_host():
    assert get_config(base_url="http://127.0.0.1:9/v1").effective_tier == "unlimited"
    assert get_config(tier="premium").effective_tier == "premium"


def test_logging_no_key(monkeypatch, caplog):
    monkeypatch.setenv("DEAPI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("deapi_ds").debug("settings %r", get_config())
    assert KEY not in caplog.text


def test_plain_http_refused_even_with_a_custom_transport():
    import httpx

    transport = httpx.HTTPTransport()  # a real network transport: the key would travel in clear
    with pytest.raises(deapi_ds.ConfigurationError, match="plain http"):
        deapi_ds.Client(KEY, base_url="http://proxy.example.com/v1", transport=transport)
    # an in-process transport on a name that can never resolve is fine (the emulator's)
    deapi_ds.Client(KEY, base_url="http://emulator.deapi-ds.invalid/v1", transport=transport)
