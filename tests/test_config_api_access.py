"""The API access flags: --api-allowed-host, --api-token, --api-allow-unauthenticated, --api-max-downloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from codex_node.cli import main
from codex_node.config import load_node_config
from codex_node.errors import ConfigError

TOKEN = "s3cret-token-0123456789"


def token_file(tmp_path: Path, text: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "api-token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_a_non_loopback_api_without_a_token_is_refused_naming_the_flags() -> None:
    with pytest.raises(ConfigError) as raised:
        load_node_config({"api_bindaddr": "0.0.0.0"}, {})
    assert raised.value.flag == "--api-bindaddr"
    assert "--api-token" in str(raised.value)
    assert "--api-allow-unauthenticated" in str(raised.value)


def test_a_non_loopback_api_runs_with_a_token_or_when_told_to(tmp_path: Path) -> None:
    with_token = load_node_config({"api_bindaddr": "0.0.0.0", "api_token": str(token_file(tmp_path))}, {})
    assert with_token.api_token == tmp_path / "api-token"
    told = load_node_config({"api_bindaddr": "0.0.0.0"}, {"CODEX_API_ALLOW_UNAUTHENTICATED": "true"})
    assert told.api_allow_unauthenticated
    assert load_node_config({"api_bindaddr": "::1"}, {}).api_token is None  # loopback needs nothing


def test_the_cli_exits_2_on_an_unguarded_public_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--data-dir", str(tmp_path / "data"), "--api-bindaddr", "0.0.0.0"], env={})
    assert code == 2
    err = capsys.readouterr().err
    assert "--api-bindaddr" in err
    assert "--api-token" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (TOKEN, 0o644, "chmod 600"),
        ("short", 0o600, "16 to 512 printable characters"),
        ("has a space in the middle", 0o600, "16 to 512 printable characters"),
    ],
)
def test_a_bad_token_file_is_refused_without_showing_it(tmp_path: Path, text: str, mode: int, message: str) -> None:
    path = token_file(tmp_path, text, mode)
    with pytest.raises(ConfigError, match=message) as raised:
        load_node_config({"api_token": str(path)}, {})
    assert raised.value.flag == "--api-token"
    assert text not in str(raised.value)


def test_allowed_hosts_are_repeatable_normalised_and_checked() -> None:
    c = load_node_config({"api_allowed_hosts": ["Node.Example.org", "::1", "10.0.0.5", "codex_node", "*"]}, {})
    assert c.api_allowed_hosts == ("node.example.org", "[::1]", "10.0.0.5", "codex_node", "*")
    env = load_node_config({}, {"CODEX_API_ALLOWED_HOST": "a.example,b.example"})
    assert env.api_allowed_hosts == ("a.example", "b.example")
    for bad in ("evil.example:8080", "http://x", "a b", ""):
        with pytest.raises(ConfigError) as raised:
            load_node_config({"api_allowed_hosts": [bad]}, {})
        assert raised.value.flag == "--api-allowed-host"


def test_max_downloads_defaults_to_32_and_must_be_positive() -> None:
    assert load_node_config({}, {}).api_max_downloads == 32
    assert load_node_config({"api_max_downloads": "100"}, {}).api_max_downloads == 100
    with pytest.raises(ConfigError, match="--api-max-downloads"):
        load_node_config({"api_max_downloads": "0"}, {})
