"""What the API's routes reach of the node: one frozen :class:`Services` value and one FastAPI dependency per part.

The node builds the value once, when every part a route may touch has started and before the API serves
(``node.py``), and hands it to the app with :func:`provide`; an app built without a node (tests,
``scripts/gen_openapi.py``) holds one with only what it was given. A route declares each part it uses as a
parameter (``reservations: ReservationsDep``). A marketplace part the node does not run (``--no-marketplace``)
answers 503 through the app's one error mapping (``api/errors.py``), before the handler runs.

This module never builds a part and never keeps state of its own: the value is the whole of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Protocol

from fastapi import Depends, FastAPI, Request

from codex_node.config import DEFAULTS, NodeConfig
from codex_node.errors import CodexError, MarketUnavailableError
from codex_node.market.market import Market
from codex_node.monitor.monitor import Monitor
from codex_node.peers.part import Peers
from codex_node.purchasing.purchasing import Purchasing
from codex_node.sales.account import AccountMetrics
from codex_node.sales.ledger import EarningsLedger
from codex_node.sales.reservations import Reservations
from codex_node.sales.sales import Sales
from codex_node.stores.repostore import RepoStore
from codex_node.validation.validator import ValidatorStatus

if TYPE_CHECKING:  # the chain modules pull in the whole Ethereum stack; only their types are needed here
    from codex_node.blockexchange.datasets import NetworkDatasets
    from codex_node.data.cid import Cid
    from codex_node.market.embedded import EmbeddedChain
    from codex_node.market.onchain import OnChainMarket
    from codex_node.market.types import ChainInfo


class NodeView(Protocol):
    """What the debug routes read from the running node."""

    @property
    def node_id(self) -> str: ...

    @property
    def api_url(self) -> str | None: ...

    @property
    def chain(self) -> ChainInfo | None: ...


class DatasetHolds(Protocol):
    """Which datasets sales still need (``sales.datasource.LocalSlotDataSource``; absent without a marketplace)."""

    def held_until(self, cid: Cid) -> int | None: ...


class ValidatorView(Protocol):
    """What ``GET /validator`` reads of the validator (``validation.validator.Validator``)."""

    def status(self) -> ValidatorStatus: ...


@dataclass(frozen=True, slots=True)
class DevChain:
    """The embedded chain and the two accounts its dev routes act as (``api/routes/devchain.py``)."""

    chain: EmbeddedChain
    market: OnChainMarket
    """The node's own market: the routes wake its event stream after a time travel."""
    client: OnChainMarket
    """The funded dev client account's view of the market, made once: one sender keeps its nonces in order."""


@dataclass(frozen=True, slots=True)
class Services:
    """The node's parts the routes use; ``None`` where the node does not run that part."""

    config: NodeConfig = DEFAULTS
    node: NodeView | None = None
    repo: RepoStore | None = None
    market: Market | None = None
    sales: Sales | None = None
    reservations: Reservations | None = None
    purchasing: Purchasing | None = None
    dataset_holds: DatasetHolds | None = None
    dev_chain: DevChain | None = None
    monitor: Monitor | None = None
    """Readings, alerts, storage samples and proof margins (``monitor/``); health and the dashboard read it."""
    ledger: EarningsLedger | None = None
    account_metrics: AccountMetrics | None = None
    peers: Peers | None = None
    """The network's peers: the node's identity and record, the peer table (``api/routes/peers.py``)."""
    network: NetworkDatasets | None = None
    """Datasets fetched from peers (``/data/{cid}/network…``); ``None`` without the block exchange."""
    validator: ValidatorView | None = None
    """The validator, when the node runs with ``--validator``."""


def provide(app: FastAPI, services: Services) -> None:
    """Give ``app`` the parts its routes use (the node calls it once, before the API serves)."""
    app.state.services = services


def services_of(app: FastAPI) -> Services:
    services = getattr(app.state, "services", None)
    if not isinstance(services, Services):
        raise CodexError("the API has no services: build the app with api.app.create_app")
    return services


def get_services(request: Request) -> Services:
    return services_of(request.app)


ServicesDep = Annotated[Services, Depends(get_services)]


def _no_marketplace(what: str) -> MarketUnavailableError:
    return MarketUnavailableError(f"this node runs without a marketplace: {what} are not available")


def get_repo(services: ServicesDep) -> RepoStore:
    if services.repo is None:
        raise CodexError("the node's repo store is not running")
    return services.repo


def get_market(services: ServicesDep) -> Market:
    if services.market is None:
        raise _no_marketplace("sales")
    return services.market


def get_sales(services: ServicesDep) -> Sales:
    if services.sales is None:
        raise _no_marketplace("sales")
    return services.sales


def get_reservations(services: ServicesDep) -> Reservations:
    if services.reservations is None:
        raise _no_marketplace("sales")
    return services.reservations


def get_ledger(services: ServicesDep) -> EarningsLedger:
    if services.ledger is None:
        raise _no_marketplace("the account and its ledger")
    return services.ledger


def get_purchasing(services: ServicesDep) -> Purchasing:
    if services.purchasing is None:
        raise _no_marketplace("purchases")
    return services.purchasing


def get_dev_chain(services: ServicesDep) -> DevChain:
    if services.dev_chain is None:
        raise _no_marketplace("the embedded chain's dev routes")
    return services.dev_chain


def get_monitor(services: ServicesDep) -> Monitor:
    if services.monitor is None:
        raise CodexError("the node's monitor is not running")
    return services.monitor


def get_peers(services: ServicesDep) -> Peers:
    if services.peers is None:
        raise CodexError("the node's peers part is not running")
    return services.peers


RepoDep = Annotated[RepoStore, Depends(get_repo)]
MarketDep = Annotated[Market, Depends(get_market)]
SalesDep = Annotated[Sales, Depends(get_sales)]
ReservationsDep = Annotated[Reservations, Depends(get_reservations)]
PurchasingDep = Annotated[Purchasing, Depends(get_purchasing)]
DevChainDep = Annotated[DevChain, Depends(get_dev_chain)]
MonitorDep = Annotated[Monitor, Depends(get_monitor)]
LedgerDep = Annotated[EarningsLedger, Depends(get_ledger)]
PeersDep = Annotated[Peers, Depends(get_peers)]
