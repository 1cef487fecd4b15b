"""The marketplace half of a node: the chain, the Market on it, and Sales, built and started in order.

Called by the composition root (``node.py``) after the metadata store and the repo are up, and before the REST
API starts. Every part is started through the node's ``start_part`` callback, so the node stops them in reverse
order (Sales before the Market before the chain) with everything else it owns.

Start order, and why:

1. the chain: the embedded one (``<data-dir>/chain``, its own LevelDB) unless ``--eth-provider`` names a remote
   one, or a chain shared with other nodes of the process (``market/sharedchain.py``: started, stopped and funded
   by its owner, never by this node; its head wakes this node's event stream); then the deployment (embedded:
   its own; remote: ``--deployment FILE`` or ``--marketplace-address``, the token read from the marketplace);
2. the chain identity check (``market/identity.py``): a data dir that worked with another chain or marketplace
   is refused before anything reads or writes its books;
3. the Market (``OnChainMarket``) for the node's account; the on-chain clock is primed from the chain head so
   every deadline computed while Sales starts is right;
4. Sales (reservations over the repo's quota record, the slot queue, the local slot data source, the prover,
   the persisted sale history): it resumes the slots the chain says we host and subscribes to the events;
5. Purchasing (``purchasing/``): it resumes the purchases it persisted from the chain's view of their requests
   and subscribes to the request events;
6. only then the Market's event stream: its catch-up delivers what happened while the node was down (requests
   posted meanwhile reach the slot queue) to handlers that are already subscribed.

This module never parses flags (``config.py`` did) and never serves HTTP (the node hands its parts to the API:
``api/services.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry

from codex_node.blockexchange.datasets import NetworkDatasets
from codex_node.blockexchange.fetcher import BlockFetcher
from codex_node.blockexchange.metrics import FetchMetrics
from codex_node.blockexchange.repair import RepoSlotRepairer
from codex_node.blockexchange.slotsource import NetworkSlotDataSource
from codex_node.clock import Clock
from codex_node.config import NodeConfig
from codex_node.errors import ConfigError
from codex_node.market import identity, provider
from codex_node.market.deployment import Deployment
from codex_node.market.embedded import EmbeddedChain
from codex_node.market.onchain import MarketOptions, OnChainMarket
from codex_node.market.types import Address, ChainInfo
from codex_node.proofs.prover import Prover
from codex_node.purchasing.metrics import PurchaseMetrics
from codex_node.purchasing.purchasing import Purchasing
from codex_node.sales.account import AccountMetrics, LedgerCollector
from codex_node.sales.datasource import LocalSlotDataSource, SlotDataSource
from codex_node.sales.history import SaleHistory
from codex_node.sales.ledger import EarningsLedger
from codex_node.sales.metrics import ReservationsCollector, SalesMetrics
from codex_node.sales.openrequests import OpenRequests
from codex_node.sales.proofmargin import ProofMargins
from codex_node.sales.reservations import Reservations
from codex_node.sales.sales import Sales
from codex_node.sales.slotqueue import SlotQueue
from codex_node.utils.parts import Closing
from codex_node.utils.redact import redact_url

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import AsyncWeb3

    from codex_node.blockexchange.port import SlotRepairer
    from codex_node.market.sharedchain import SharedChain
    from codex_node.peers.port import Providers
    from codex_node.stores.kv import KVStore
    from codex_node.stores.repostore import RepoStore
    from codex_node.utils.parts import Part

log = structlog.get_logger(__name__)

StartPart = Callable[[str, "Part"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MarketplaceParts:
    """What the rest of the node (the API, tests) reaches of the marketplace once it runs."""

    market: OnChainMarket
    sales: Sales
    purchasing: Purchasing
    reservations: Reservations
    data_source: LocalSlotDataSource
    info: ChainInfo
    chain: EmbeddedChain | None
    """The embedded chain, when the node runs one or shares one (``None`` on a remote chain)."""
    ledger: EarningsLedger
    """The earnings ledger; purchasing records its payments and refunds here (``ledger.MoneyRecorder``)."""
    account_metrics: AccountMetrics
    w3: AsyncWeb3[Any]
    """The connection the market runs on (the monitor reads the head and the gas balance through it)."""
    proof_margins: ProofMargins | None = None
    fetcher: BlockFetcher | None = None
    """Verified blocks from peers (``blockexchange/``, the node's own); ``None`` without a block exchange."""
    network: NetworkDatasets | None = None
    """Datasets fetched from peers for the ``/data/{cid}/network…`` routes (the node's own, see ``Node.network``)."""


class _Exits:
    """A part that closes what an ``AsyncExitStack`` holds (a remote provider's connection)."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self._stack = stack

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self._stack.aclose()


class _HeadListener:
    """A part that calls ``listener`` after every move of a shared chain's head while the node runs."""

    def __init__(self, chain: EmbeddedChain, listener: Callable[[], None]) -> None:
        self._chain = chain
        self._listener = listener
        self._remove: Callable[[], None] = lambda: None

    async def start(self) -> None:
        self._remove = self._chain.add_head_listener(self._listener)

    async def stop(self) -> None:
        self._remove()


class _Ordered:
    """Runs ``first`` then ``second`` on start; stops in reverse. Sales must subscribe before the stream starts."""

    def __init__(self, first: Any, second: Any) -> None:
        self._first = first
        self._second = second

    async def start(self) -> None:
        await self._first.start()
        try:
            await self._second.start()
        except BaseException:
            await self._first.stop()
            raise

    async def stop(self) -> None:
        try:
            await self._first.stop()
        finally:
            await self._second.stop()


async def start_marketplace(
    config: NodeConfig,
    *,
    kv: KVStore,
    repo: RepoStore,
    clock: Clock,
    start_part: StartPart,
    registry: CollectorRegistry,
    market_options: MarketOptions | None = None,
    providers: Providers | None = None,
    repairer: SlotRepairer | None = None,
    shared_chain: SharedChain | None = None,
    fetcher: BlockFetcher | None = None,
    network: NetworkDatasets | None = None,
) -> MarketplaceParts:
    """Build and start the chain, the Market and Sales (see the module docstring); return them.

    ``fetcher`` (and ``network``): the node's block exchange, built and started by the node (``node.py``) so the
    ``/data/{cid}/network…`` routes work without a marketplace too; sales fetch their slots through it. Without
    one, a ``providers`` makes this function build its own (tests that start only the marketplace).
    """
    chain: EmbeddedChain | None = None
    account: LocalAccount | str
    if shared_chain is not None:
        chain = shared_chain.chain  # its owner started it and stops it
        w3, deployment, account = chain.w3, chain.deployment, shared_chain.account
    elif config.eth_provider is None:
        chain = EmbeddedChain(
            config.data_dir / "chain", block_time=config.dev_block_time, clock=clock, registry=registry
        )
        await start_part("embedded chain", chain)
        w3, deployment, account = chain.w3, chain.deployment, chain.node_account
    else:
        stack = AsyncExitStack()
        await start_part("chain connection", _Exits(stack))
        w3 = await stack.enter_async_context(provider.connect(config.eth_provider))
        deployment = await _remote_deployment(config, w3)
        account = provider.account(config.eth_private_key, config.eth_account)

    found = await identity.verify(kv, w3, deployment.marketplace, data_dir=str(config.data_dir))
    options = market_options or MarketOptions(
        confirmations=config.eth_confirmations,
        resend_after=config.eth_resend_after,
        max_fee_per_gas=config.eth_max_fee_per_gas,
    )
    market = OnChainMarket(w3, deployment, account, kv, options=options, registry=registry)
    head = await w3.eth.get_block("latest")
    market.clock.observe(int(head["number"]), int(head["timestamp"]))
    market_config = await market.config()

    prover = Prover(repo, samples=market_config.proofs.proof_samples, registry=registry)
    await start_part("prover metrics", Closing(prover.close))
    reservations = Reservations(repo)
    registry.register(ReservationsCollector(reservations.availability_totals))  # the node's own registry
    local_source = LocalSlotDataSource(repo)
    data_source: SlotDataSource = local_source
    if fetcher is None and providers is not None:
        fetcher = BlockFetcher(repo, providers, clock, metrics=FetchMetrics(registry))
        await start_part("block fetcher", fetcher)
        network = NetworkDatasets(repo, fetcher)
        await start_part("network downloads", network)
    if fetcher is not None:
        # Slots come from peers: fetched, verified and stored block by block, then held like local ones.
        # A slot in Repair is rebuilt from K other slots, read through the same fetcher (local blocks first).
        # The repaired slot's cell leaves go to the prover: InitialProving does not hash that slot again.
        repairer = repairer or RepoSlotRepairer(
            repo, fetcher, registry=registry, on_slot_leaves=prover.offer_slot_leaves
        )
        data_source = NetworkSlotDataSource(repo, fetcher, local_source, repairer=repairer)
    ledger = EarningsLedger(kv, market.clock)
    registry.register(LedgerCollector(ledger))
    account_metrics = AccountMetrics(registry)
    sales = Sales(
        market=market,
        clock=market.clock,
        reservations=reservations,
        queue=SlotQueue(config.max_slot_queue_size, config.max_slot_workers, clock=market.clock, registry=registry),
        data_source=data_source,
        prover=prover,
        history=SaleHistory(kv, market.clock),
        open_requests=OpenRequests(kv, market.clock),
        metrics=SalesMetrics(registry),
        simulate_proof_failures=config.simulate_proof_failures,
        proof_margins=(proof_margins := ProofMargins(registry)),
        ledger=ledger,
    )
    purchasing = Purchasing(market, market.clock, kv, PurchaseMetrics(registry), money=ledger)
    if shared_chain is not None:  # other nodes' blocks and time jumps: poll now, not at the next interval
        await start_part("shared chain head listener", _HeadListener(shared_chain.chain, market.events.wake))
    # Sales and Purchasing subscribe (and resume) first; then the stream catches up and follows.
    await start_part("sales, purchasing and market events", _Ordered(sales, _Ordered(purchasing, market)))
    address = await market.get_signer()
    info = ChainInfo(
        chain_id=found.chain_id,
        marketplace_address=deployment.marketplace,
        token_address=deployment.token,
        node_address=address,
    )
    log.info(
        "marketplace started",
        chain=_chain_name(config, shared=shared_chain is not None),
        chain_id=found.chain_id,
        marketplace=deployment.marketplace,
        node_address=address,
    )
    return MarketplaceParts(
        market=market,
        sales=sales,
        purchasing=purchasing,
        reservations=reservations,
        data_source=local_source,
        info=info,
        chain=chain,
        w3=w3,
        proof_margins=proof_margins,
        ledger=ledger,
        account_metrics=account_metrics,
        fetcher=fetcher,
        network=network,
    )


def _chain_name(config: NodeConfig, *, shared: bool) -> str:
    if shared:
        return "embedded (shared)"
    return "embedded" if config.eth_provider is None else redact_url(config.eth_provider)


async def _remote_deployment(config: NodeConfig, w3: AsyncWeb3[Any]) -> Deployment:
    if config.deployment is not None:
        deployment = Deployment.load(config.deployment)
        chain_id = await w3.eth.chain_id
        if deployment.chain_id != chain_id:
            raise ConfigError(
                "--deployment",
                f"{config.deployment} is for chain {deployment.chain_id}, but --eth-provider is chain {chain_id}",
            )
        if not await w3.eth.get_code(deployment.marketplace):  # type: ignore[arg-type]
            raise ConfigError(
                "--deployment",
                f"{config.deployment} names marketplace {deployment.marketplace}, but this chain has no contract "
                "there (a dev chain restarted since the deployment? deploy again)",
            )
        return deployment
    assert config.marketplace_address is not None  # config.py requires one of the two with --eth-provider
    return await _deployment_at(w3, config.marketplace_address)


async def _deployment_at(w3: AsyncWeb3[Any], marketplace: str) -> Deployment:
    """The deployment of the marketplace at ``marketplace``: its token is read from the contract."""
    from eth_utils.address import to_checksum_address

    from codex_node.market.deployment import artifact

    address = to_checksum_address(marketplace)
    if not await w3.eth.get_code(address):
        raise ConfigError("--marketplace-address", f"no contract at {address} on this chain")
    contract = w3.eth.contract(address=address, abi=artifact("Marketplace")["abi"])
    try:
        token = await contract.functions.token().call()
    except Exception as e:  # not our marketplace: any ABI/revert error means the same to the operator
        raise ConfigError("--marketplace-address", f"{address} is not a codex marketplace ({e})") from e
    return Deployment(
        chain_id=await w3.eth.chain_id,
        marketplace=Address(address),
        token=Address(to_checksum_address(token)),
        block_number=await _deployment_block(w3, address),
    )


async def _deployment_block(w3: AsyncWeb3[Any], address: str) -> int:
    """The first block in which ``address`` has code: where the event stream starts when no cursor is stored.

    A binary search over ``eth_getCode`` at past blocks (~log2(head) requests instead of a log scan from genesis).
    A node that has pruned old state cannot answer for old blocks: then the scan starts at 0, which is slow but
    complete (``--deployment FILE`` names the block and avoids both).
    """
    low, high = 0, int(await w3.eth.block_number)
    try:
        while low < high:
            middle = (low + high) // 2
            if await w3.eth.get_code(address, middle):  # type: ignore[arg-type]
                high = middle
            else:
                low = middle + 1
    except Exception as e:  # noqa: BLE001 - pruned state answers with node-specific errors; the scan from 0 is safe
        log.warning("deployment block unknown: reading events from block 0", error=" ".join(str(e).split())[:200])
        return 0
    return low
