"""The codex-node command: help, and one line with exit code 2 (never a traceback) for every bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from codex_node.cli import COMMANDS, EXIT_FAILURE, EXIT_USAGE, main
from codex_node.config import CONFIG_FILE, OPTIONS
from codex_node.stores.kv import LevelDBStore

SCRIPT = Path(sys.executable).with_name("codex-node")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed console script in a subprocess, with no CODEX_* variables from the test's environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")}
    return subprocess.run(
        [str(SCRIPT), *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("codex-node")
    for fragment in fragments:
        assert fragment in lines[0]


# --- subprocess: what an operator sees ----------------------------------------------------------------------------


def test_the_console_script_is_installed() -> None:
    assert SCRIPT.exists()


def test_an_invalid_flag_value_exits_2_with_one_line_naming_the_flag() -> None:
    assert_one_line_error(run_cli("run", "--api-port", "abc"), EXIT_USAGE, "--api-port", "'abc'")


def test_an_invalid_environment_value_exits_2_naming_flag_and_variable() -> None:
    result = run_cli("run", env={"CODEX_STORAGE_QUOTA": "lots"})
    assert_one_line_error(result, EXIT_USAGE, "--storage-quota", "CODEX_STORAGE_QUOTA")


def test_an_invalid_config_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "codex.toml"
    path.write_text("block-ttl = 'forever'\n")
    assert_one_line_error(run_cli("run", "--config-file", str(path)), EXIT_USAGE, "--block-ttl", "forever")


def test_an_unknown_flag_exits_2_with_one_line() -> None:
    assert_one_line_error(run_cli("run", "--no-such-flag"), EXIT_USAGE, "--no-such-flag")


def test_no_command_exits_2_with_one_line() -> None:
    assert_one_line_error(run_cli(), EXIT_USAGE, "COMMAND")


def test_a_taken_api_port_exits_2_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("run", "--data-dir", str(tmp_path), "--api-port", port, "--no-marketplace")
    assert result.returncode == EXIT_USAGE, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("codex-node run: error: --api-port: cannot listen on 127.0.0.1:" + port)
    assert "Traceback" not in result.stderr


def test_a_data_dir_held_by_another_node_exits_1_with_one_line(tmp_path: Path) -> None:
    held = LevelDBStore(tmp_path / "meta")  # LevelDB's lock file keeps a second process out
    try:
        result = run_cli("run", "--data-dir", str(tmp_path), "--api-port", "0", "--no-marketplace")
    finally:
        held.close()
    assert result.returncode == EXIT_FAILURE, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("codex-node run: error: cannot open metadata store")
    assert "Traceback" not in result.stderr


# --- in process: the parser -------------------------------------------------------------------------------------------


def test_help_lists_every_flag_with_its_default_and_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for opt in (CONFIG_FILE, *OPTIONS):
        assert opt.flag in text
        assert opt.env in text
    assert "default: 20GiB" in text
    assert "default: 30d" in text
    assert "default: 8080" in text
    assert "--no-marketplace" in text


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command.name in out


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["run", "--block-ttl", "0"], "--block-ttl"),
        (["run", "--log-format", "xml"], "--log-format"),
        (["run", "--max-slot-queue-size", "2", "--max-slot-workers", "5"], "--max-slot-workers"),
        (["run", "--bootstrap-node", "peer:8080"], "--bootstrap-node"),
    ],
)
def test_main_returns_2_and_prints_the_flag_for_bad_values(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, env={}) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"codex-node run: error: {flag}: ")


def test_log_level_help_and_error_name_warning_and_critical(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "debug|info|warning|error|critical" in text
    result = run_cli("run", "--log-level", "verbose")
    assert_one_line_error(result, EXIT_USAGE, "--log-level", "warning", "critical")


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_command_s_help_works(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Each command imports its module only when it is used: its flags come from there.
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: codex-node {command}")
