"""A small, strict ``multipart/form-data`` parser (RFC 7578) for the emulator.

The stdlib's ``cgi`` module is gone in Python 3.13 and ``email`` is slow on large bodies, so
the emulator splits the body on the boundary itself. Repeated field names (``image[]``) keep
their order.

>>> body = (b'--xyz\\r\\nContent-Disposition: form-data; name="model"\\r\\n\\r\\nKokoro\\r\\n'
...         b'--xyz--\\r\\n')
>>> [p.name for p in parse_multipart(body, "multipart/form-data; boundary=xyz")]
['model']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["MultipartError", "Part", "parse_multipart", "boundary_of"]


class MultipartError(ValueError):
    """The body is not valid multipart/form-data."""


@dataclass(frozen=True)
class Part:
    """One form field: a text value (``filename`` is None) or an uploaded file."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


_PARAM_RE = re.compile(r';\s*([\w*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _params(header_value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, raw in _PARAM_RE.findall(header_value):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        key = key.lower()
        if key.endswith("*"):  # RFC 5987: filename*=utf-8''na%C3%AFve.mp3
            _, _, encoded = value.partition("''")
            params[key[:-1]] = unquote(encoded)
        else:
            params.setdefault(key, value)
    return params


def boundary_of(content_type: str) -> str | None:
    """Return the boundary parameter of a multipart Content-Type header, if any."""
    if not content_type.lower().startswith("multipart/"):
        return None
    return _params(content_type).get("boundary") or None


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """Split ``body`` into its parts; raise :class:`MultipartError` when it is malformed."""
    boundary = boundary_of(content_type)
    if not boundary:
        raise MultipartError(
            "The request body must be multipart/form-data with a boundary "
            f"(got Content-Type {content_type!r})."
        )
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise MultipartError(
            "The multipart body does not contain the boundary of its Content-Type."
        )
    parts: list[Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        elif chunk.startswith(b"\n"):
            chunk = chunk[1:]
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, data = chunk.partition(b"\n\n")
            if not sep:
                raise MultipartError("A multipart part has no blank line after its headers.")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", errors="replace").splitlines():
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = _params(disposition)
        if "name" not in params:
            raise MultipartError("A multipart part has no Content-Disposition name.")
        parts.append(
            Part(
                name=params["name"],
                data=data,
                filename=params.get("filename"),
                content_type=headers.get("content-type"),
            )
        )
    return parts
