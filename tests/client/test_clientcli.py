"""``codex-node upload`` and ``codex-node download`` against a real node: the data, the exit codes, one-line
errors, and a progress bar only on a terminal."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from codex_node import cli, clientcli
from codex_node.client import wire
from codex_node.data.cid import manifest_cid
from tests.client.conftest import RunningNode
from tests.harness.nodeprocess import SCRIPT

pytestmark = pytest.mark.slow

UNREACHABLE = "http://127.0.0.1:1/api/codex/v1"


def node_flags(node: RunningNode) -> list[str]:
    return ["--api-url", node.api, "--api-token", str(node.token_file)]


def upload(node: RunningNode, path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["upload", str(path), *node_flags(node)], env={}) == 0
    out, err = capsys.readouterr()
    assert err == ""  # stderr is no terminal here: no progress bar
    return out.strip()


def one_error_line(err: str, command: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"codex-node {command}: error: "), err
    return lines[0]


def test_upload_then_download_to_a_file(
    running_node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = os.urandom(300_000)
    (tmp_path / "in.bin").write_bytes(data)
    cid = upload(running_node, tmp_path / "in.bin", capsys)
    out = tmp_path / "out.bin"
    assert cli.main(["download", cid, "-o", str(out), *node_flags(running_node)], env={}) == 0
    assert out.read_bytes() == data
    assert capsys.readouterr() == ("", "")


def test_download_to_standard_output(
    running_node: RunningNode, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    (tmp_path / "in.txt").write_bytes(b"to stdout\n")
    assert cli.main(["upload", str(tmp_path / "in.txt"), *node_flags(running_node)], env={}) == 0
    cid = capsysbinary.readouterr().out.decode().strip()
    env = {"CODEX_API_URL": running_node.api, "CODEX_API_TOKEN": str(running_node.token_file)}
    assert cli.main(["download", cid], env=env) == 0
    assert capsysbinary.readouterr().out == b"to stdout\n"


def test_a_missing_cid_is_one_line_and_exit_1(
    running_node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = manifest_cid(b"nobody uploaded this").text
    out = tmp_path / "out.bin"
    assert cli.main(["download", missing, "-o", str(out), *node_flags(running_node)], env={}) == 1
    line = one_error_line(capsys.readouterr().err, "download")
    assert "(HTTP 404)" in line
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_node_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_bytes(b"x")
    assert cli.main(["upload", str(tmp_path / "f"), "--api-url", UNREACHABLE], env={}) == 1
    assert "could not connect to the node at http://127.0.0.1:1" in one_error_line(capsys.readouterr().err, "upload")
    assert cli.main(["download", "zCid", "-o", str(tmp_path / "o"), "--api-url", UNREACHABLE], env={}) == 1
    one_error_line(capsys.readouterr().err, "download")


def test_a_wrong_token_is_one_line_and_exit_1(
    running_node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-right-token-at-all")
    wrong.chmod(0o600)
    (tmp_path / "f").write_bytes(b"x")
    assert (
        cli.main(["upload", str(tmp_path / "f"), "--api-url", running_node.api, "--api-token", str(wrong)], env={}) == 1
    )
    line = one_error_line(capsys.readouterr().err, "upload")
    assert "(HTTP 401)" in line
    assert "not-the-right-token-at-all" not in line


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["upload", "{tmp}/missing.bin"], "FILE"),
        (["upload", "{tmp}/f", "--api-url", "ftp://node"], "--api-url"),
        (["upload", "{tmp}/f", "--api-token", "{tmp}/no-token-file"], "--api-token"),
        (["upload", "{tmp}/f", "--api-token", "{tmp}/open-token"], "--api-token"),
        (["upload", "{tmp}/f", "--timeout", "0"], "--timeout"),
        (["download", "zCid", "-o", "{tmp}/no/such/dir/out"], "-o"),
        (["download", "zCid", "-o", "{tmp}"], "-o"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "open-token").write_text("a-token-others-may-read")
    (tmp_path / "open-token").chmod(0o644)
    assert cli.main([a.format(tmp=tmp_path) for a in argv], env={}) == 2
    assert one_error_line(capsys.readouterr().err, argv[0]).startswith(f"codex-node {argv[0]}: error: {flag}")


def test_a_bad_timeout_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["download", "zCid", "--timeout", "soon"], env={})
    assert exited.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_the_commands_run_as_a_real_process(running_node: RunningNode, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    (tmp_path / "in.bin").write_bytes(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")}
    up = subprocess.run(
        [str(SCRIPT), "upload", str(tmp_path / "in.bin"), *node_flags(running_node)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (up.returncode, up.stderr) == (0, b"")
    cid = up.stdout.decode().strip()
    down = subprocess.run(
        [str(SCRIPT), "download", cid, *node_flags(running_node)], capture_output=True, env=env, timeout=60, check=False
    )
    assert (down.returncode, down.stderr, down.stdout) == (0, b"", data)
    piped = subprocess.run(
        [str(SCRIPT), "upload", "-", *node_flags(running_node)],
        input=data,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (piped.returncode, piped.stderr) == (0, b"")
    again = subprocess.run(
        [str(SCRIPT), "download", piped.stdout.decode().strip(), *node_flags(running_node)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (again.returncode, again.stdout) == (0, data)


# --- the progress bar ---------------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_only_when_its_text_changes() -> None:
    screen = Terminal()
    bar = clientcli.ProgressBar.on(screen, "upload")
    for done in (0, 1, 2, 512 * 1024, 1024 * 1024):
        bar(done, 1024 * 1024)
    bar.finish()
    frames = screen.getvalue().split("\r")[1:]
    assert frames[0] == "upload [..............................]   0% of 1MiB"
    assert frames[-1] == "upload [##############################] 100% of 1MiB\n"
    assert len(frames) == 3  # 0 %, 50 %, 100 %: the bytes in between changed nothing shown
    unknown = clientcli.ProgressBar(Terminal(), "download")
    assert unknown.render(3 * 1024 * 1024 + 5, None) == "download 3MiB"


def test_no_progress_bar_when_stderr_is_not_a_terminal() -> None:
    pipe = io.StringIO()
    bar = clientcli.ProgressBar.on(pipe, "upload")
    bar(10, 100)
    bar.finish()
    assert pipe.getvalue() == ""


def test_the_commands_default_to_the_clients_default_node() -> None:
    assert clientcli.DEFAULT_API_URL == wire.DEFAULT_API_URL


def test_download_refuses_to_write_a_dataset_to_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdout", Terminal())
    assert cli.main(["download", "zCid", "--api-url", UNREACHABLE], env={}) == 2
    assert "-o: give -o FILE" in capsys.readouterr().err
