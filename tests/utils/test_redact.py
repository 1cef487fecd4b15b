"""The redaction of provider URLs: what may be shown of a URL, and secrets hidden in any text."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from codex_node.utils import redact
from codex_node.utils.redact import RedactFilter, redact_text, redact_url, register_url

URL = "https://alice:hunter2pass@rpc.example.test:8545/v3/0123456789abcdef0123?apikey=KEY98765&chain=main"


@pytest.fixture(autouse=True)
def no_registered_secrets() -> Iterator[None]:
    redact.forget_all()
    yield
    redact.forget_all()


def test_a_url_keeps_host_port_user_and_word_segments_and_hides_password_key_and_query_values() -> None:
    assert redact_url(URL) == "https://alice:***@rpc.example.test:8545/v3/***?apikey=***&chain=***"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("ws://localhost:8546/ws", "ws://localhost:8546/ws"),
        ("https://eth-mainnet.example.test/v2/AbCdEf123456", "https://eth-mainnet.example.test/v2/***"),
        ("https://:onlysecret@host.test/", "https://:***@host.test/"),
        ("http://[::1]:8545/rpc", "http://[::1]:8545/rpc"),
        ("http://user:pw@host.test:notaport/x", "http://user:***@host.test:notaport/x"),
    ],
)
def test_redacted_forms(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_registered_urls_secrets_are_hidden_in_any_text_also_percent_decoded() -> None:
    register_url("http://u:p%40ss-word@host.test/v3/0123456789abcdef0123")
    text = "failed: p@ss-word and p%40ss-word, key 0123456789abcdef0123 in /v3/0123456789abcdef0123"
    cleaned = redact_text(text)
    assert "p@ss-word" not in cleaned
    assert "p%40ss-word" not in cleaned
    assert "0123456789abcdef0123" not in cleaned


def test_a_password_in_any_url_is_hidden_even_when_not_registered() -> None:
    assert redact_text("see http://bob:topsecret@10.0.0.1/ for") == "see http://bob:***@10.0.0.1/ for"


def test_the_logging_filter_hides_secrets_in_the_message_and_its_arguments() -> None:
    register_url(URL)
    record = logging.LogRecord("web3", logging.DEBUG, __file__, 1, "Making request HTTP. URI: %s", (URL,), None)
    assert RedactFilter().filter(record)
    message = record.getMessage()
    assert "hunter2pass" not in message
    assert "0123456789abcdef0123" not in message
    assert "KEY98765" not in message
    assert "rpc.example.test:8545" in message
