"""Announce URLs and peer API base URLs."""

from __future__ import annotations

import pytest

from codex_node.api.app import API_PREFIX
from codex_node.config import NodeConfig
from codex_node.errors import ConfigError
from codex_node.peers.addresses import API_PATH, announce_urls, api_base_url
from codex_node.peers.part import check_network_config
from tests.peers.netfakes import record


def test_the_api_path_is_the_apis_prefix() -> None:
    assert API_PATH == API_PREFIX


def test_a_concrete_bind_address_is_announced_with_the_bound_port() -> None:
    assert announce_urls((), "127.0.0.1", 4321) == ("http://127.0.0.1:4321/api/codex/v1",)
    assert announce_urls((), "::1", 4321) == ("http://[::1]:4321/api/codex/v1",)


def test_the_any_address_announces_nothing_unless_told() -> None:
    assert announce_urls((), "0.0.0.0", 8080) == ()
    assert announce_urls(("http://node.example.org:8080",), "0.0.0.0", 8080) == (
        "http://node.example.org:8080/api/codex/v1",
    )


def test_a_peer_address_gets_the_api_path_when_it_has_none() -> None:
    assert api_base_url("http://h:1/") == "http://h:1/api/codex/v1"
    assert api_base_url("http://h:1/api/codex/v1/") == "http://h:1/api/codex/v1"


def test_peers_configured_with_nothing_to_announce_is_refused_naming_the_flag() -> None:
    c = NodeConfig(api_bindaddr="0.0.0.0", api_allow_unauthenticated=True, bootstrap_nodes=("http://127.0.0.1:9",))
    with pytest.raises(ConfigError) as e:
        check_network_config(c)
    assert e.value.flag == "--api-announce-url"
    told = NodeConfig(
        api_bindaddr="0.0.0.0",
        api_allow_unauthenticated=True,
        bootstrap_nodes=("http://127.0.0.1:9",),
        api_announce_urls=("http://127.0.0.5:8080",),
    )
    assert len(check_network_config(told)) == 1


def test_a_bootstrap_record_that_does_not_verify_is_refused_naming_the_flag() -> None:
    assert check_network_config(NodeConfig(bootstrap_nodes=(record(2).text,)))[0].record == record(2)
    with pytest.raises(ConfigError) as e:
        check_network_config(NodeConfig(bootstrap_nodes=(record(2).text[:-2] + "AA",)))
    assert e.value.flag == "--bootstrap-node"


def test_too_many_announce_urls_are_refused() -> None:
    urls = tuple(f"http://h{i}:1" for i in range(9))
    with pytest.raises(ConfigError) as e:
        check_network_config(NodeConfig(api_announce_urls=urls))
    assert e.value.flag == "--api-announce-url"
