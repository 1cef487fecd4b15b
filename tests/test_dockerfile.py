"""The container image's promises, read from the ``Dockerfile`` itself (no Docker needed).

It runs as an unprivileged user, keeps the data dir in a volume, checks its health on a route that answers without
a token, starts by default with a configuration the node accepts, and then says how to guard the API with a
token. (Building and running the image is the job of the container check outside the test suite.)
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from codex_node.api.access import PUBLIC_PATHS
from codex_node.api.app import create_app
from codex_node.cli import build_parser
from codex_node.config import (
    CONFIG_FILE,
    DEFAULTS,
    ENV_PREFIX,
    OPTIONS,
    NodeConfig,
    given,
    load_node_config,
    open_api_warning,
)

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"


def final_stage() -> list[str]:
    """The last stage's instructions, one string each (continuation lines joined, comments dropped)."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    instructions = [line.strip() for line in joined.splitlines() if line.strip()]
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    return instructions[last_from:]


def instruction(name: str) -> list[str]:
    return [line[len(name) :].strip() for line in final_stage() if line.upper().startswith(name + " ")]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in instruction("ENV"):
        for pair in shlex.split(line):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def image_run_args() -> list[str]:
    [entrypoint] = instruction("ENTRYPOINT")
    [cmd] = instruction("CMD")
    assert json.loads(entrypoint) == ["codex-node"]
    return list(json.loads(cmd))


def image_config(extra_env: dict[str, str] | None = None) -> NodeConfig:
    args = build_parser().parse_args(image_run_args())
    return load_node_config(given(args, (CONFIG_FILE, *OPTIONS)), {**image_env(), **(extra_env or {})})


def test_the_image_runs_unprivileged_with_the_data_dir_in_a_volume() -> None:
    [user] = instruction("USER")
    assert user not in ("root", "0")
    env = image_env()
    assert json.loads(instruction("VOLUME")[0]) == [env["CODEX_DATA_DIR"]]
    assert "--data-dir" in image_run_args()
    assert image_run_args()[image_run_args().index("--data-dir") + 1] == env["CODEX_DATA_DIR"]


def test_every_codex_variable_of_the_image_is_an_option_of_the_node() -> None:
    known = {opt.env for opt in OPTIONS}
    assert {k for k in image_env() if k.startswith(ENV_PREFIX)} <= known


def test_the_health_check_asks_the_public_health_route_on_the_api_port() -> None:
    [check] = instruction("HEALTHCHECK")
    url = re.search(r"http://127\.0\.0\.1:' \+ os\.environ\.get\('CODEX_API_PORT', '(\d+)'\) \+ '(/[^']+)'", check)
    assert url is not None, check
    port, path = int(url[1]), url[2]
    assert port == DEFAULTS.api_port
    assert path in PUBLIC_PATHS  # a check carries no token, whatever --api-token says
    assert path in create_app().openapi()["paths"]


def test_the_image_starts_by_default_and_says_how_to_pass_a_token() -> None:
    config = image_config()
    assert config.api_bindaddr == "0.0.0.0"
    warning = open_api_warning(config)
    assert warning is not None
    assert "--api-token FILE" in warning
    assert "CODEX_API_TOKEN" in warning
    assert "-p 127.0.0.1:" in warning


@pytest.mark.parametrize("bindaddr", ["127.0.0.1", "::1"])
def test_no_warning_on_loopback(bindaddr: str) -> None:
    assert open_api_warning(load_node_config({"api_bindaddr": bindaddr}, {})) is None


def test_with_a_token_the_image_has_nothing_to_warn_about(tmp_path: Path) -> None:
    token = tmp_path / "api-token"
    token.write_text("s3cret-token-0123456789\n")
    token.chmod(0o600)
    config = image_config({"CODEX_API_TOKEN": str(token)})
    assert config.api_token == token
    assert open_api_warning(config) is None
