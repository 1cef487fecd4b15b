"""Where this node says it can be reached (its announce URLs), and the API base URL of a peer address.

A peer is reached at its API base URL, ``http://host:port/api/codex/v1``. An operator may write a peer's or its own
address without the path (``http://10.0.0.2:8080``): the path is added. Pure.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from codex_node.errors import ConfigError, PeerRecordError
from codex_node.peers.record import MAX_URLS, check_url

API_PATH = "/api/codex/v1"  # api.app.API_PREFIX; the network sits below the API, a test keeps them equal


def api_base_url(url: str) -> str:
    """``url`` with the API path when it has none, without a trailing ``/``."""
    url = url.rstrip("/")
    return url + API_PATH if urlsplit(url).path == "" else url


def announce_urls(configured: tuple[str, ...], bind_address: str, port: int) -> tuple[str, ...]:
    """The API URLs this node's record announces: ``--api-announce-url`` if given, else the concrete bind address
    with the port the API listens on; empty when the API listens on the any-address and none was given."""
    if configured:
        urls = tuple(dict.fromkeys(api_base_url(u) for u in configured))
        if len(urls) > MAX_URLS:
            raise ConfigError("--api-announce-url", f"at most {MAX_URLS} URLs fit in a peer record")
        for url in urls:
            try:
                check_url(url)
            except PeerRecordError as e:
                raise ConfigError("--api-announce-url", str(e)) from None
        return urls
    address = ipaddress.ip_address(bind_address)
    if address.is_unspecified:
        return ()
    host = f"[{address}]" if address.version == 6 else str(address)
    return (f"http://{host}:{port}{API_PATH}",)
