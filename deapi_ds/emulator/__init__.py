"""An offline, deterministic fake of deAPI's OpenAI-compatible API (``https://oai.deapi.ai/v1``).

Develop notebooks, tests and CI pipelines without a network or credits. The emulator answers
every endpoint of deAPI's OpenAI-compatibility page the way deAPI documents it, with real
media bytes, and never imports the rest of ``deapi_ds`` (it checks the wire contract on its
own).

What it serves
--------------
* ``GET /v1/models`` and ``GET /v1/models/{id}``: deAPI slugs (Flux1schnell, ZImageTurbo_INT8,
  Flux_2_Klein_4B_BF16, QwenImageEdit_Plus_NF4, Kokoro, WhisperLargeV3, WhisperLargeV3Ct2,
  Bge_M3_FP16, Ltx2_3_22B_Dist_INT8, Ltxv_13B_0_9_8_Distilled_FP8).
* ``POST /v1/embeddings``: Bge_M3_FP16, 1024 dims, string or array of strings, at most 2048
  inputs / 8192 tokens per input / 300,000 tokens per request (see :func:`count_tokens`),
  ``encoding_format`` float or base64 (little-endian float32). Vectors are feature-hashed
  words, bigrams and character 3-grams, so texts sharing words rank as similar.
* ``POST /v1/images/generations`` and ``/v1/images/edits``: real PNGs, ``n`` 1-4, sizes
  checked per model, ``response_format`` url (served at ``/v1/files/images/...``, expiring
  after ``url_ttl``) or b64_json; extra ``seed``, ``steps``, ``negative_prompt``; any ``mask``
  gives 400; Flux1schnell and ZImageTurbo_INT8 reject edits.
* ``POST /v1/audio/speech``: Kokoro, OpenAI voice aliases and Kokoro voice ids, mp3, wav, flac,
  opus. ``POST /v1/audio/transcriptions``: json, text, verbose_json, srt, vtt; audio the
  emulator synthesised transcribes back to its exact text.
* ``POST /v1/videos``, ``GET /v1/videos/{id}``, ``GET /v1/videos/{id}/content``: OpenAI's job
  flow. A job advances one step per retrieve (``video_polls_to_complete``); a prompt with the
  word "fail" ends in status ``failed``.
* ``POST /v1/chat/completions``: 404 (deAPI serves no LLMs). Errors use OpenAI's envelope;
  a missing or non-``dpn-sk-`` key gives 401.

In tests (in-process, no sockets)
---------------------------------
>>> import httpx
>>> from deapi_ds.emulator import Emulator
>>> emu = Emulator()
>>> http = httpx.Client(transport=emu.transport(), base_url="https://oai.deapi.ai/v1",
...                     headers={"Authorization": "Bearer dpn-sk-test"})
>>> r = http.post("/embeddings", json={"model": "Bge_M3_FP16", "input": ["a", "b"]})
>>> len(r.json()["data"][0]["embedding"]), emu.stats("embeddings")["inputs"]
(1024, 2)

The same transport works with ``httpx.AsyncClient``.

On loopback (notebooks, the official ``openai`` SDK, other languages)
---------------------------------------------------------------------
>>> with Emulator().serve() as server:  # doctest: +SKIP
...     from openai import OpenAI
...     client = OpenAI(base_url=server.base_url, api_key="dpn-sk-local")
...     client.images.generate(model="Flux1schnell", prompt="a cabin", size="512x512")

``server = emu.serve()`` also works without ``with``; call ``server.close()`` when done. From
a shell: ``deapi-ds emulator --port 8000``.

Faults and rate limits
----------------------
``configure(endpoint, ...)`` sets them per endpoint key ("models", "embeddings",
"images.generations", "images.edits", "audio.speech", "audio.transcriptions", "videos",
"videos.retrieve", "videos.content", "chat.completions", "files"; "*" = all):

>>> emu = Emulator(clock=lambda: 0.0)
>>> emu = emu.configure("embeddings", rpm=10, script=[503, "drop", None, Fault(status=429, retry_after="2")])
>>> emu = emu.configure("images.generations", latency=(0.05, 0.2), error_rate=0.1, seed=7)

* ``rpm``: sliding 60 s window on the injected ``clock``; 429 with ``Retry-After``, and
  ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` on every answer of that endpoint.
* ``script``: one entry per request, in order: an HTTP status, ``"drop"`` (connection closed
  without an answer: httpx raises ``RemoteProtocolError``), ``"truncate"`` (half the body with
  the full Content-Length), ``"shuffle"`` / ``"short"`` / ``"wrongdim"`` (embeddings: items out
  of order with correct ``index`` fields, the last item(s) missing, vectors of the wrong
  length), ``"nan_vectors"`` (embeddings: NaN, inf and null vectors at indexes 0-2),
  ``"trickle"`` (the body one byte per second), ``"gzip_bomb"`` (2 MB of gzip that inflates to
  2 GiB), ``None`` (answer normally), or a :class:`Fault`. A bare 429 carries no Retry-After;
  ``Fault(status=429, retry_after="3")`` does (``"inf"`` or ``"86400"`` for an endless one).
  ``deapi_ds.emulator._faults`` documents each kind.
* After the script: ``error_rate`` (seeded, reproducible) answers ``error_status``.
* ``shuffle_index``, ``drop_items``, ``wrong_dimension``, ``nan_vectors``: applied to every
  embeddings answer.
* ``latency``: seconds, or a (low, high) range drawn from the seeded RNG; slept by the
  transport (``anyio.sleep`` when async) and the server, never by ``handle``.

Stats
-----
``emu.stats("embeddings")`` counts ``requests``, ``ok``, ``errors``, ``rate_limited``,
``dropped``, ``truncated``, ``bytes_in`` and what deAPI would bill, on successful answers only:
``inputs``, ``tokens``, ``images``, ``characters``, ``audio_seconds``, ``bytes`` (transcription
uploads), ``videos`` and ``video_seconds`` (when a job completes). ``emu.history`` lists recent
requests; ``emu.reset_stats()`` zeroes everything.

Lifetime: ``emu.close()`` (or ``with Emulator() as emu:``) runs the callbacks registered
with ``emu.on_close(...)``; ``deapi_ds.use_emulator()`` registers its undo there.

deAPI's native v2 API
---------------------
The same emulator answers ``/api/v2/...`` (base URL ``https://api.deapi.ai/api/v2``, raw
``<id>|<secret>`` keys): transcription jobs from files or the fake links of :data:`SOURCES`
(with diarization: :func:`synthesize_dialogue` makes multi-voice clips whose turns come back
labelled), OCR of text drawn with Pillow's bitmap font (:func:`render_text_image`,
:func:`read_text`), background removal, upscaling, ``/price`` quotes, ``/jobs/{id}``,
``/account/balance`` and ``/models``. ``emu.native`` (a :class:`NativeAPI`) sets job timing,
result-URL lifetime, Basic limits (``emu.native.limits("basic")``) and scripted job failures.

Other options: ``Emulator(api_key="dpn-sk-x")`` accepts only that key;
``error_style="native"`` answers deAPI's native ``{"message", "errors"}`` shape (422 for
validation); ``speech_formats=("mp3",)`` emulates the mp3-only gateway.

Seed or today
-------------
``Emulator(profile="today")`` plays deAPI as its docs describe it on 2026-08-19: speech in mp3
only (another ``response_format`` gets 400), 20 MB per audio upload and 50 MB per video (413
above), 75 MB per request body, and the Basic tier's daily quotas (``tier="premium"``: none):
embeddings 500, transcriptions 10, image generations 100, edits 15, speech 300, videos 15,
video status 200 per UTC day. A spent quota answers 429 ``{"message": "Too Many Attempts."}``
with ``Retry-After``, ``X-RateLimit-Limit``, ``X-RateLimit-Remaining: 0`` and
``X-RateLimit-Reset``. The default ``profile="seed"`` keeps the seed document's behaviour (mp3,
wav, flac, opus; 80 MB; no quotas). ``daily_quotas={"embeddings": 3}`` sets quotas directly and
``utc_clock=`` (Unix seconds) lets a test move past 00:00 UTC:

>>> now = [86400 * 20000 + 3600.0]
>>> emu = Emulator(profile="today", daily_quotas={"embeddings": 1}, utc_clock=lambda: now[0])
>>> ask = lambda: emu.handle("POST", "/v1/embeddings", {"Authorization": "Bearer dpn-sk-t"},
...                          b'{"model": "Bge_M3_FP16", "input": "hi"}')
>>> ask().status, ask().status, ask().json()
(200, 429, {'message': 'Too Many Attempts.'})
>>> now[0] += 86400
>>> ask().status
200
"""

from __future__ import annotations

from ._app import ENDPOINTS, Emulator, EmulatorResponse
from ._faults import Fault
from ._models import MODELS, count_tokens, embed_texts
from ._native import SOURCES, NativeAPI, synthesize_dialogue
from ._ocr import read_text, render_text_image
from ._server import EmulatorServer
from ._transport import EmulatorTransport

__all__ = [
    "ENDPOINTS",
    "MODELS",
    "SOURCES",
    "Emulator",
    "EmulatorResponse",
    "EmulatorServer",
    "EmulatorTransport",
    "Fault",
    "NativeAPI",
    "count_tokens",
    "embed_texts",
    "main_serve",
    "read_text",
    "render_text_image",
    "synthesize_dialogue",
]

for _name in ("Emulator", "EmulatorResponse", "EmulatorServer", "EmulatorTransport", "Fault"):
    globals()[_name].__module__ = __name__
del _name


def main_serve(port: int, host: str = "127.0.0.1", api_key: str | None = None) -> None:
    """Run an emulator on ``host:port`` until Ctrl-C (what ``deapi-ds emulator`` calls)."""
    server = EmulatorServer(Emulator(api_key=api_key), host, port, verbose=True)
    key_hint = "the key you configured" if api_key else "any key starting with dpn-sk-"
    print(f"deAPI emulator listening on {server.base_url} (accepts {key_hint}); Ctrl-C to stop.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
