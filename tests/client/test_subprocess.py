"""The blocking client against a real ``codex-node run`` over loopback HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codex_node.client import BadRequestError, CodexClient, NotFoundApiError, UnauthorizedError, UnprocessableError
from codex_node.data.cid import manifest_cid
from tests.client.conftest import RunningNode

pytestmark = pytest.mark.slow

MISSING = manifest_cid(b"a manifest nobody stored").text


def test_upload_and_download_byte_identical(running_node: RunningNode, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 17)
    source = tmp_path / "dataset.bin"
    source.write_bytes(data)
    with CodexClient(running_node.api, token=running_node.token) as node:
        cid = node.upload(source)
        assert node.exists(cid)
        assert cid in {d.cid for d in node.list_data()}
        out = tmp_path / "copy.bin"
        info = node.download(cid, out)
        assert out.read_bytes() == data
        assert (info.size, info.filename) == (len(data), "dataset.bin")
        with node.stream_download(cid) as download:
            assert b"".join(download) == data
        node.delete(cid)
        assert not node.exists(cid)


def test_errors_map_to_their_types(running_node: RunningNode, tmp_path: Path) -> None:
    with CodexClient(running_node.api, token=running_node.token) as node:
        with pytest.raises(NotFoundApiError) as missing:
            node.download(MISSING, tmp_path / "out")
        assert missing.value.status == 404
        assert not (tmp_path / "out").exists()
        with pytest.raises(UnprocessableError, match="invalid Content-Type") as refused:
            node.upload(b"data", mimetype="not a media type")
        assert "expected type/subtype" in refused.value.message
        with pytest.raises(BadRequestError):
            node.exists("not-a-cid")


def test_a_wrong_token_is_401_and_never_shown(running_node: RunningNode) -> None:
    wrong = "a-wrong-token-that-stays-hidden"
    with (
        capture_logs() as logs,
        CodexClient(running_node.api, token=wrong) as node,
        pytest.raises(UnauthorizedError) as raised,
    ):
        node.space()
    assert "Authorization: Bearer" in raised.value.message
    assert wrong not in str(raised.value)
    assert wrong not in repr(logs)
    with CodexClient(running_node.api) as anonymous, pytest.raises(UnauthorizedError):
        anonymous.space()


def test_the_readme_example_runs(
    running_node: RunningNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Python client", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "http://127.0.0.1:8080/api/codex/v1" in example
    (tmp_path / "photo.jpg").write_bytes(os.urandom(1000))
    (tmp_path / "api-token").write_text(running_node.token + "\n")
    monkeypatch.chdir(tmp_path)
    exec(compile(example.replace("http://127.0.0.1:8080/api/codex/v1", running_node.api), "README", "exec"), {})
    assert (tmp_path / "copy.jpg").read_bytes() == (tmp_path / "photo.jpg").read_bytes()
    assert not (tmp_path / "gone.jpg").exists()
    assert capsys.readouterr().out.splitlines()[-1].startswith("404 ")
