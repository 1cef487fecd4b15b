"""Secrets of provider URLs kept out of every log line and error message.

A JSON-RPC URL often carries a credential: ``https://user:password@host/…`` (basic auth), ``/v3/<key>``
(Infura- and Alchemy-style keys in the path) or ``?apikey=<key>``. :func:`redact_url` is the form of such a URL
that may be shown: scheme, host and port, the user name, short word-like path segments (``v3``, ``rpc``) and query
keys; the password, every other path segment and every query value become ``***``.

Library code we do not control (web3 logs each request's URL at debug level; aiohttp and web3 put the URL into
exception texts) is covered by :func:`register_url`, which remembers the secret parts of a URL process-wide, and
:func:`redact_text`, which replaces them (and any ``scheme://user:password@``) in any text. The logging setup
runs every rendered line through :func:`redact_text` and :class:`RedactFilter` keeps stdlib records clean for
handlers it does not configure.

Nothing here imports the rest of codex-node: any layer may use it.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

MASK: Final = "***"
MIN_SECRET_LENGTH: Final = 4
"""Registered secrets shorter than this are not replaced in free text (they would blank unrelated words); the
``user:password@`` pattern still hides a short password inside a URL."""

_WORD_SEGMENT = re.compile(r"^(?:[A-Za-z][A-Za-z_-]{0,11}|v\d{1,3})$")
"""Path segments shown as they are: short words (``rpc``, ``api``, ``ws``) and versions (``v3``)."""
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<password>[^/@\s]*)@")

_lock = threading.Lock()
_secrets: set[str] = set()


def redact_url(url: str) -> str:
    """``url`` with its password, non-word path segments and query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return _USERINFO.sub(_mask_userinfo, url)  # not a URL we can take apart: hide what we can see
    netloc = host or ""
    if host is not None and ":" in host:
        netloc = f"[{host}]"  # an IPv6 literal
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username is not None or parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:{MASK}@{netloc}" if parts.password is not None else f"{user}@{netloc}"
    path = "/".join(seg if not seg or _WORD_SEGMENT.match(seg) else MASK for seg in parts.path.split("/"))
    query = "&".join(f"{key}={MASK}" if value else key for key, value in _query_items(parts.query))
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def url_secrets(url: str) -> set[str]:
    """The parts of ``url`` that :func:`redact_url` hides, as they may appear in text (raw and decoded)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    found: set[str] = set()
    netloc_user = parts.netloc.rpartition("@")[0]
    if ":" in netloc_user:
        found.add(netloc_user.partition(":")[2])
    found.update(seg for seg in parts.path.split("/") if seg and not _WORD_SEGMENT.match(seg))
    found.update(value for _key, value in _query_items(parts.query) if value)
    found.update(value for pair in parts.query.split("&") if (value := pair.partition("=")[2]))
    if parts.fragment:
        found.add(parts.fragment)
    variants = {variant for secret in found for variant in (secret, unquote(secret), quote(unquote(secret), safe=""))}
    return {s for s in variants if s}


def register_url(url: str) -> None:
    """Remember the secrets of ``url`` so :func:`redact_text` hides them wherever they appear from now on."""
    secrets = {s for s in url_secrets(url) if len(s) >= MIN_SECRET_LENGTH}
    with _lock:
        _secrets.update(secrets)


def forget_all() -> None:
    """Drop every registered secret (tests)."""
    with _lock:
        _secrets.clear()


def redact_text(text: str) -> str:
    """``text`` with every registered secret and every ``scheme://user:password@`` password masked."""
    text = _USERINFO.sub(_mask_userinfo, text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)  # a longer secret first: it may contain a shorter one
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactFilter(logging.Filter):
    """A stdlib logging filter that masks secrets in a record's message (and its arguments) in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _mask_userinfo(match: re.Match[str]) -> str:
    return f"{match['scheme']}{match['user']}:{MASK}@"


def _query_items(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)
