"""Configuration: every flag from every source, precedence, and a ConfigError naming the flag for each bad value."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import pytest

from codex_node.config import DEFAULTS, OPTIONS, NodeConfig, load_node_config, option, read_private_key
from codex_node.errors import ConfigError

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"  # EIP-55 spelling
OTHER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
RPC = "http://127.0.0.1:8545"


def load(cli: dict[str, object] | None = None, env: dict[str, str] | None = None) -> NodeConfig:
    return load_node_config(cli or {}, env or {})  # type: ignore[arg-type]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    path = tmp_path / "deployment.json"
    path.write_text(f'{{"chainId": 31337, "marketplace": "{OTHER}", "token": "{ADDRESS}", "blockNumber": 258}}')
    return path


def remote(key_file: Path, **more: object) -> dict[str, object]:
    return {
        "eth_provider": "http://127.0.0.1:8545",
        "eth_private_key": str(key_file),
        "marketplace_address": OTHER,
        **more,
    }


# --- defaults ---------------------------------------------------------------------------------------------------


def test_nothing_given_yields_the_documented_defaults() -> None:
    c = load()
    assert c == DEFAULTS
    assert c.data_dir == Path(platformdirs.user_cache_dir("codex"))
    assert (c.api_bindaddr, c.api_port) == ("127.0.0.1", 8080)
    assert c.storage_quota == 20 * 1024**3
    assert (c.block_ttl, c.block_mi, c.block_mn) == (30 * 86400, 600, 1000)
    assert (c.log_level, c.log_format) == ("info", "text")
    assert (c.metrics, c.metrics_address, c.metrics_port) == (False, "127.0.0.1", 8008)
    assert (c.max_slot_queue_size, c.max_slot_workers, c.dev_block_time) == (128, 3, 1)
    assert c.marketplace
    assert c.chain_mode == "embedded"
    assert c.bootstrap_nodes == ()
    assert c.config_file is None


# --- each flag from the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("api_bindaddr", "127.0.0.2", "127.0.0.2"),
        ("api_bindaddr", "::1", "::1"),
        ("api_port", "8081", 8081),
        ("api_port", "0", 0),
        ("storage_quota", "20GiB", 20 * 1024**3),
        ("storage_quota", "500MB", 500_000_000),
        ("storage_quota", "1048576", 1048576),
        ("storage_quota", "1.5GiB", 3 * 1024**3 // 2),
        ("storage_quota", "64 kib", 65536),
        ("block_ttl", "30d", 30 * 86400),
        ("block_ttl", "1h", 3600),
        ("block_ttl", "10s", 10),
        ("block_ttl", "45", 45),
        ("block_ttl", "1h30m", 5400),
        ("block_mi", "10m", 600),
        ("block_mn", "5", 5),
        ("log_level", "trace", "debug"),
        ("log_level", "WARN", "warning"),
        ("log_level", "error", "error"),
        ("log_format", "json", "json"),
        ("metrics", True, True),
        ("metrics_address", "0.0.0.0", "0.0.0.0"),
        ("metrics_port", "9100", 9100),
        (
            "bootstrap_nodes",
            ["http://10.0.0.1:8080", "https://peer.example/"],
            ("http://10.0.0.1:8080", "https://peer.example"),
        ),
        ("bootstrap_nodes", ["spr:AbC-_9"], ("spr:AbC-_9",)),  # a record: verified by the network at start
        ("api_announce_urls", ["http://node.example.org:8080"], ("http://node.example.org:8080",)),
        ("max_peers", "20", 20),
        ("marketplace", False, False),
        ("dev_block_time", "2s", 2),
        ("eth_confirmations", "3", 3),
        ("eth_resend_after", "5s", 5),
        ("eth_max_fee_per_gas", "50", 50 * 10**9),
        ("eth_max_fee_per_gas", "1.5", 1_500_000_000),
        ("eth_max_fee_per_gas", "0.000000001", 1),
        ("simulate_proof_failures", "3", 3),
        ("max_slot_queue_size", "10", 10),
        ("max_slot_workers", "1", 1),
    ],
)
def test_each_flag_is_parsed_from_the_command_line(field: str, raw: object, expected: object) -> None:
    assert getattr(load({field: raw}), field) == expected


def test_data_dir_is_made_absolute_and_expands_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load({"data_dir": "~/codex"}).data_dir == tmp_path / "codex"
    monkeypatch.chdir(tmp_path)
    assert load({"data_dir": "rel"}).data_dir == tmp_path / "rel"


def test_remote_chain_flags_are_kept(key_file: Path, deployment: Path) -> None:
    c = load(remote(key_file))
    assert c.chain_mode == "remote"
    assert (c.eth_provider, c.eth_private_key, c.marketplace_address) == ("http://127.0.0.1:8545", key_file, OTHER)
    c = load({"eth_provider": "ws://127.0.0.1:8546", "eth_account": ADDRESS.lower(), "deployment": str(deployment)})
    assert c.eth_account == ADDRESS  # normalised to its checksum spelling
    assert c.deployment == deployment


def test_validator_flags_are_kept() -> None:
    c = load({"validator": True, "validator_groups": "4", "validator_group_index": "3"})
    assert (c.validator, c.validator_groups, c.validator_group_index) == (True, 4, 3)


def test_no_marketplace_means_no_chain() -> None:
    assert load({"marketplace": False}).chain_mode == "none"


# --- each invalid value ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "raw", "flag", "says"),
    [
        ("api_bindaddr", "localhost", "--api-bindaddr", "not an IP address"),
        ("api_port", "abc", "--api-port", "not a whole number"),
        ("api_port", "65536", "--api-port", "out of range"),
        ("api_port", "-1", "--api-port", "out of range"),
        ("storage_quota", "lots", "--storage-quota", "not a size"),
        ("storage_quota", "20G", "--storage-quota", "unknown unit"),
        ("storage_quota", "0", "--storage-quota", "more than zero"),
        ("storage_quota", "-5GiB", "--storage-quota", "not a size"),
        ("block_ttl", "soon", "--block-ttl", "not a duration"),
        ("block_ttl", "0s", "--block-ttl", "shorter than 1s"),
        ("block_ttl", "1.5h", "--block-ttl", "not a duration"),
        ("block_mi", "10x", "--block-mi", "not a duration"),
        ("block_mn", "0", "--block-mn", "out of range"),
        ("log_level", "loud", "--log-level", "not a log level"),
        ("log_format", "xml", "--log-format", "not a log format"),
        ("metrics_address", "999.1.1.1", "--metrics-address", "not an IP address"),
        ("metrics_port", "http", "--metrics-port", "not a whole number"),
        ("bootstrap_nodes", ["ftp://peer:21"], "--bootstrap-node", "not a URL"),
        ("bootstrap_nodes", ["http://peer:port"], "--bootstrap-node", "invalid port"),
        ("bootstrap_nodes", ["spr:not base64!"], "--bootstrap-node", "not a peer record"),
        ("api_announce_urls", ["node:8080"], "--api-announce-url", "not a URL"),
        ("max_peers", "0", "--max-peers", "out of range"),
        ("eth_provider", "127.0.0.1:8545", "--eth-provider", "not a URL"),
        ("eth_account", "0x1234", "--eth-account", "not an Ethereum address"),
        ("eth_account", ADDRESS.replace("E", "e", 1), "--eth-account", "checksum"),
        ("marketplace_address", "marketplace", "--marketplace-address", "not an Ethereum address"),
        ("deployment", "/nonexistent/deployment.json", "--deployment", "not a readable file"),
        ("eth_private_key", "/nonexistent/key", "--eth-private-key", "not a readable file"),
        ("dev_block_time", "0", "--dev-block-time", "shorter than 1s"),
        ("eth_confirmations", "-1", "--eth-confirmations", "out of range"),
        ("eth_resend_after", "0s", "--eth-resend-after", "shorter than 1s"),
        ("eth_max_fee_per_gas", "cheap", "--eth-max-fee-per-gas", "not a number of gwei"),
        ("eth_max_fee_per_gas", "0", "--eth-max-fee-per-gas", "more than 0 gwei"),
        ("eth_max_fee_per_gas", "-3", "--eth-max-fee-per-gas", "more than 0 gwei"),
        ("eth_max_fee_per_gas", "nan", "--eth-max-fee-per-gas", "more than 0 gwei"),
        ("eth_max_fee_per_gas", "0.0000000001", "--eth-max-fee-per-gas", "finer than one wei"),
        ("validator_groups", "1", "--validator-groups", "out of range"),
        ("validator_groups", "65536", "--validator-groups", "out of range"),
        ("validator_group_index", "-1", "--validator-group-index", "out of range"),
        ("simulate_proof_failures", "-1", "--simulate-proof-failures", "out of range"),
        ("max_slot_queue_size", "0", "--max-slot-queue-size", "out of range"),
        ("max_slot_workers", "0", "--max-slot-workers", "out of range"),
        ("config_file", "/nonexistent/codex.toml", "--config-file", "not a readable file"),
        ("alert_webhook", "ftp://hooks.example/x", "--alert-webhook", "http"),
    ],
)
def test_an_invalid_value_raises_a_config_error_naming_the_flag(field: str, raw: object, flag: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        load({field: raw})
    assert e.value.flag == flag
    assert says in e.value.reason
    assert str(e.value).startswith(flag + ": ")
    assert "\n" not in str(e.value)


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"--data-dir: .* is not a directory"):
        load({"data_dir": str(tmp_path / "file")})


def test_a_key_file_readable_by_others_is_refused(key_file: Path) -> None:
    key_file.chmod(0o644)
    with pytest.raises(ConfigError) as e:
        load(remote(key_file))
    assert e.value.flag == "--eth-private-key"
    assert "chmod 600" in e.value.reason
    assert "0644" in e.value.reason


def test_a_key_file_writable_by_the_group_is_refused(key_file: Path) -> None:
    key_file.chmod(0o620)
    with pytest.raises(ConfigError, match=r"--eth-private-key: .*group or others"):
        load(remote(key_file))


def test_a_key_file_without_a_key_is_refused_without_echoing_its_content(key_file: Path) -> None:
    key_file.write_text("secret-words-not-a-key")
    with pytest.raises(ConfigError) as e:
        load(remote(key_file))
    assert e.value.flag == "--eth-private-key"
    assert "secret" not in str(e.value)


def test_read_private_key_accepts_a_0x_prefix(key_file: Path) -> None:
    key_file.write_text("0x" + KEY)
    assert read_private_key(key_file) == bytes.fromhex(KEY)


def test_a_deployment_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "deployment.json"
    bad.write_text("marketplace=0x")
    with pytest.raises(ConfigError, match=r"--deployment: .*not a JSON file"):
        load({"eth_provider": "http://127.0.0.1:8545", "eth_account": ADDRESS, "deployment": str(bad)})


# --- rules between flags ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cli", "flag", "says"),
    [
        ({"max_slot_queue_size": "2", "max_slot_workers": "3"}, "--max-slot-workers", "exceed --max-slot-queue-size"),
        ({"marketplace": False, "eth_provider": "http://127.0.0.1:8545"}, "--eth-provider", "--no-marketplace"),
        ({"marketplace": False, "validator": True}, "--validator", "--no-marketplace"),
        ({"marketplace_address": OTHER}, "--marketplace-address", "needs --eth-provider"),
        ({"eth_provider": RPC, "marketplace_address": OTHER}, "--eth-provider", "--eth-private-key"),
        ({"eth_provider": RPC, "eth_account": ADDRESS}, "--eth-provider", "--marketplace-address"),
        ({"validator_groups": "4"}, "--validator-groups", "only applies with --validator"),
        ({"validator_group_index": "1"}, "--validator-group-index", "only applies with --validator"),
        (
            {"validator": True, "validator_groups": "4", "validator_group_index": "4"},
            "--validator-group-index",
            "not below",
        ),
        ({"validator": True, "validator_group_index": "1"}, "--validator-group-index", "not below"),
    ],
)
def test_conflicting_flags_raise_a_config_error_naming_one_of_them(
    cli: dict[str, object], flag: str, says: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load(cli)
    assert e.value.flag == flag
    assert says in e.value.reason


def test_a_key_and_an_account_together_are_refused(key_file: Path) -> None:
    with pytest.raises(ConfigError, match="--eth-account: give either"):
        load(remote(key_file, eth_account=ADDRESS))


def test_a_marketplace_address_and_a_deployment_together_are_refused(key_file: Path, deployment: Path) -> None:
    with pytest.raises(ConfigError, match="--marketplace-address: give either"):
        load(remote(key_file, deployment=str(deployment)))


def test_constructing_a_config_directly_checks_the_same_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--max-slot-workers"):
        NodeConfig(data_dir=tmp_path, max_slot_queue_size=1, max_slot_workers=2)


# --- environment -----------------------------------------------------------------------------------------------------


def test_every_option_has_an_environment_variable_named_after_its_flag() -> None:
    assert option("--api-port").env == "CODEX_API_PORT"
    assert option("--storage-quota").env == "CODEX_STORAGE_QUOTA"
    for opt in OPTIONS:
        assert opt.env == "CODEX_" + opt.flag[2:].upper().replace("-", "_")


def test_environment_variables_set_values(tmp_path: Path) -> None:
    c = load(
        env={
            "CODEX_DATA_DIR": str(tmp_path),
            "CODEX_API_PORT": "9000",
            "CODEX_STORAGE_QUOTA": "1GiB",
            "CODEX_BLOCK_TTL": "1h",
            "CODEX_METRICS": "true",
            "CODEX_MARKETPLACE": "off",
            "CODEX_BOOTSTRAP_NODE": "http://10.0.0.1:8080, http://10.0.0.2:8080",
            "CODEX_HOME": "/unrelated",  # another tool's variable: ignored, not an error
        }
    )
    assert (c.data_dir, c.api_port, c.storage_quota, c.block_ttl) == (tmp_path, 9000, 1024**3, 3600)
    assert c.metrics is True
    assert c.marketplace is False
    assert c.bootstrap_nodes == ("http://10.0.0.1:8080", "http://10.0.0.2:8080")


def test_an_invalid_environment_value_names_the_flag_and_the_variable() -> None:
    with pytest.raises(ConfigError) as e:
        load(env={"CODEX_STORAGE_QUOTA": "lots"})
    assert e.value.flag == "--storage-quota"
    assert "CODEX_STORAGE_QUOTA" in e.value.reason


def test_an_invalid_boolean_in_the_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--metrics: 'maybe' is not a boolean .*CODEX_METRICS"):
        load(env={"CODEX_METRICS": "maybe"})


# --- config file -------------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "codex.toml"
    path.write_text(text)
    return path


def test_a_config_file_sets_values_with_either_key_spelling(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
data-dir = "{tmp_path / "d"}"
api_port = 8099
storage-quota = "2GiB"
block_ttl = 60
metrics = true
bootstrap-node = ["http://10.0.0.1:8080"]
max-slot-queue-size = 16
""",
    )
    c = load({"config_file": str(path)})
    assert c.config_file == path
    assert (c.data_dir, c.api_port, c.storage_quota, c.block_ttl) == (tmp_path / "d", 8099, 2 * 1024**3, 60)
    assert c.metrics is True
    assert c.bootstrap_nodes == ("http://10.0.0.1:8080",)
    assert c.max_slot_queue_size == 16


def test_the_config_file_can_be_named_in_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "api-port = 8100\n")
    assert load(env={"CODEX_CONFIG_FILE": str(path)}).api_port == 8100


@pytest.mark.parametrize(
    ("text", "flag", "says"),
    [
        ("api-port = [", "--config-file", "not valid TOML"),
        ("api-prot = 8080", "--config-file", "unknown key 'api-prot'"),
        ("config-file = 'other.toml'", "--config-file", "unknown key 'config-file'"),
        ("api-port = 1\napi_port = 2", "--api-port", "set twice"),
        ("api-port = 'http'", "--api-port", "not a whole number"),
        ("metrics = 'yes'", "--metrics", "expected true or false"),
        ("api-port = true", "--api-port", "expected a string or a number"),
        ("bootstrap-node = [1, 2]", "--bootstrap-node", "list of strings"),
        ("storage-quota = 0", "--storage-quota", "more than zero"),
    ],
)
def test_an_invalid_config_file_raises_a_config_error_naming_the_flag(
    tmp_path: Path, text: str, flag: str, says: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load({"config_file": str(path)})
    assert e.value.flag == flag
    assert says in e.value.reason
    if flag != "--config-file":
        assert str(path) in e.value.reason  # the message says where the bad value came from


# --- precedence ------------------------------------------------------------------------------------------------------


def test_precedence_is_flags_over_environment_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "api-port = 1001\nmetrics-port = 2001\nblock-mn = 3001\n")
    env = {"CODEX_CONFIG_FILE": str(path), "CODEX_API_PORT": "1002", "CODEX_METRICS_PORT": "2002"}
    c = load({"api_port": "1003"}, env)
    assert c.api_port == 1003  # flag beats environment and file
    assert c.metrics_port == 2002  # environment beats file
    assert c.block_mn == 3001  # file beats default
    assert c.block_mi == DEFAULTS.block_mi  # default when nobody sets it


def test_a_bad_value_in_a_lower_source_does_not_matter_when_a_higher_one_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "api-port = 'nonsense'\n")
    assert load({"config_file": str(path), "api_port": "1234"}).api_port == 1234


def test_a_higher_source_replaces_a_list_whole(tmp_path: Path) -> None:
    path = write(tmp_path, 'bootstrap-node = ["http://a:1", "http://b:2"]\n')
    c = load({"config_file": str(path)}, {"CODEX_BOOTSTRAP_NODE": "http://c:3"})
    assert c.bootstrap_nodes == ("http://c:3",)


def test_the_config_file_is_read_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "api-port = 1111\n")
    monkeypatch.chdir(tmp_path)
    assert load({"config_file": "codex.toml"}).api_port == 1111
    assert os.path.isabs(load({"config_file": "codex.toml"}).config_file or "")
