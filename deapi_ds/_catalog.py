"""``deapi_ds.models()`` and ``deapi_ds.use_emulator()``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ._client import AsyncClient, Client
from ._config import get_config, restore_options, saved_options, set_config
from ._profiles import get_profile
from ._tasks import clear_shared_clients, resolve_client, syncify

__all__ = ["amodels", "models", "use_emulator"]

EMULATOR_BASE_URL = "http://emulator.deapi-ds.invalid/v1"
_loopback_server: list[Any] = []  # the server of the last use_emulator(loopback=True)


async def amodels(*, client: Client | AsyncClient | None = None) -> pd.DataFrame:
    """The models your key can use, joined with what deapi_ds knows about each.

    Columns: ``id``, ``owned_by``, ``created``, ``known`` (in the provider profile), ``tasks``,
    ``dimension``, ``min_size``/``max_size``/``size_step``, ``max_n``, ``voices`` (count),
    ``formats``, ``word_timestamps`` and the reference prices.
    """
    aclient = resolve_client(client)
    listed = await aclient.models()
    profile = get_profile(aclient.settings)
    rows = []
    for m in listed:
        known = profile.model(m.id)
        row: dict[str, Any] = {"id": m.id, "owned_by": m.owned_by, "created": m.created}
        row["known"] = known is not None
        if known is not None:
            extra = known.as_row()
            extra.pop("id")
            row.update(extra)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "created" in frame:
        frame["created"] = pd.to_datetime(frame["created"], unit="s", utc=True, errors="coerce")
    return frame.convert_dtypes(dtype_backend="numpy_nullable")


models = syncify(amodels)


#: the options use_emulator() sets; its undo puts back exactly what they were before
_EMULATOR_OPTIONS = ("base_url", "native_base_url", "api_key", "key_source", "transport", "tier")
_active: list[Any] = []  # the emulator of the last use_emulator() still wired in


def use_emulator(*, loopback: bool = False, api_key: str | None = None, **configure: Any) -> Any:
    """Point deapi_ds at its built-in emulator of deAPI (offline, free, deterministic).

    ``loopback=False`` plugs the emulator in as an in-process transport (no sockets);
    ``loopback=True`` starts it as a real HTTP server on 127.0.0.1 (for other tools such as the
    ``openai`` SDK). Returns the :class:`deapi_ds.emulator.Emulator`, whose ``stats()`` tell what
    would have been paid for. ``configure`` options go to ``Emulator.configure()`` for every
    endpoint.

    Undo with ``emu.close()``: it restores every option ``use_emulator()`` changed (base URL,
    key, transport and the rate-limit tier) to what it was before, and stops the loopback
    server. The context-manager form does that at the end of the block::

        with deapi_ds.use_emulator() as emu:
            deapi_ds.embed(["a", "b"])
        # back to the real API (and its rate limits) here

    Calling ``use_emulator()`` again (a rerun notebook cell) first undoes the previous one.
    For tests, :func:`deapi_ds.emulated` does the same for every thread and with a private
    temporary cache.

    >>> import deapi_ds
    >>> emu = deapi_ds.use_emulator()
    >>> deapi_ds.models()["id"].tolist()[:2]
    ['Flux1schnell', 'ZImageTurbo_INT8']
    >>> emu.close()
    """
    from .emulator import Emulator

    while _active:
        _active.pop().close()
    while _loopback_server:
        _loopback_server.pop().close()
    emu = Emulator(api_key=api_key)
    if configure:
        emu.configure(**configure)
    key = api_key or "dpn-sk-0|emulator"
    saved = saved_options(_EMULATOR_OPTIONS)
    clear_shared_clients()
    if loopback:
        server = emu.serve()
        handle = server.__enter__()
        emu._deapi_ds_server = (server, handle)  # keep it alive with the emulator
        _loopback_server.append(server)
        emu.on_close(server.close)
        set_config(
            base_url=handle.base_url,
            native_base_url=handle.base_url.removesuffix("/v1") + "/api/v2",
            api_key=key,
            transport=None,
            tier="unlimited",
        )
    else:
        set_config(
            base_url=EMULATOR_BASE_URL,
            native_base_url=EMULATOR_BASE_URL.removesuffix("/v1") + "/api/v2",
            api_key=key,
            transport=emu.transport(),
            tier="unlimited",
        )
    mine = saved_options(("base_url", "transport"))
    emu.on_close(lambda: _restore(emu, saved, mine))
    _active.append(emu)
    get_config()
    return emu


def _restore(emu: Any, saved: dict[str, Any], mine: dict[str, Any]) -> None:
    """Put back the options use_emulator() changed, as they were before it.

    Nothing is put back when the configuration no longer points at this emulator (a
    ``reset_config()`` or another ``set_config(base_url=...)`` since): that is the newer choice.
    """
    if emu in _active:
        _active.remove(emu)
    if saved_options(("base_url", "transport")) != mine:
        return
    restore_options(_EMULATOR_OPTIONS, saved)
    clear_shared_clients()
