"""Each REST operation of the node, described once: its method, path, success status and how its answer parses.

Both clients (:mod:`~codex_node.client.sync`, :mod:`~codex_node.client.aio`) run these descriptions; neither
knows a path or a model of its own. A builder function (``space()``, ``get_slot(slot_id)``) returns a
:class:`Call`: the request to send and the parser of its success body. The two operations that stream bytes
(upload, download) are described here too (:data:`UPLOAD`, :data:`DOWNLOAD`), their bodies being moved by the
clients.

**Adding an operation** (storage requests, purchases): add its :class:`Operation` to :data:`OPERATIONS` with the
``operationId`` of ``openapi.yaml``, a builder here, its result model in ``models.py``, and a one-line method of
the same name in both clients. ``tests/client/test_operations.py`` fails until the YAML's every operation has all
of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import quote

import pydantic

from codex_node.client.errors import MalformedResponseError
from codex_node.client.models import (
    Account,
    Alerts,
    Availability,
    BooksCheck,
    DataList,
    Dataset,
    DebugInfo,
    Exists,
    HaveAnswer,
    HealthReport,
    LedgerPage,
    LogLevel,
    NodeCheck,
    PeerList,
    ProofMarginItem,
    Purchase,
    RequestMatch,
    Reservation,
    Sale,
    SalesPage,
    SalesStates,
    Slot,
    SlotSale,
    Space,
    SpaceSample,
    ValidatorState,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Operation:
    """One operation of ``openapi.yaml``: its ``operationId``, HTTP method, path under the API prefix (with
    ``{name}`` parameters), the status that means success, and the client method that runs it."""

    operation_id: str
    method: str
    path: str
    ok: int
    client_method: str


LIST_DATA = Operation("list_data_api_codex_v1_data_get", "GET", "/data", 200, "list_data")
UPLOAD = Operation("upload_api_codex_v1_data_post", "POST", "/data", 200, "upload")
DOWNLOAD = Operation("download_api_codex_v1_data__cid__get", "GET", "/data/{cid}", 200, "download")
DELETE = Operation("delete_api_codex_v1_data__cid__delete", "DELETE", "/data/{cid}", 204, "delete")
EXISTS = Operation("exists_api_codex_v1_data__cid__exists_get", "GET", "/data/{cid}/exists", 200, "exists")
NETWORK_DOWNLOAD = Operation(
    "download_from_network_api_codex_v1_data__cid__network_post",
    "POST",
    "/data/{cid}/network",
    200,
    "download_from_network",
)
NETWORK_STREAM = Operation(
    "stream_from_network_api_codex_v1_data__cid__network_stream_get",
    "GET",
    "/data/{cid}/network/stream",
    200,
    "fetch_from_network",
)
NETWORK_MANIFEST = Operation(
    "manifest_from_network_api_codex_v1_data__cid__network_manifest_get",
    "GET",
    "/data/{cid}/network/manifest",
    200,
    "manifest_from_network",
)
SPACE = Operation("space_api_codex_v1_space_get", "GET", "/space", 200, "space")
LIST_SLOTS = Operation("list_slots_api_codex_v1_sales_slots_get", "GET", "/sales/slots", 200, "list_slots")
GET_SLOT = Operation("get_slot_api_codex_v1_sales_slots__slotId__get", "GET", "/sales/slots/{slotId}", 200, "get_slot")
LIST_AVAILABILITIES = Operation(
    "list_availabilities_api_codex_v1_sales_availability_get", "GET", "/sales/availability", 200, "list_availabilities"
)
CREATE_AVAILABILITY = Operation(
    "create_availability_api_codex_v1_sales_availability_post",
    "POST",
    "/sales/availability",
    201,
    "create_availability",
)
UPDATE_AVAILABILITY = Operation(
    "update_availability_api_codex_v1_sales_availability__id__patch",
    "PATCH",
    "/sales/availability/{id}",
    204,
    "update_availability",
)
LIST_RESERVATIONS = Operation(
    "list_reservations_api_codex_v1_sales_availability__id__reservations_get",
    "GET",
    "/sales/availability/{id}/reservations",
    200,
    "list_reservations",
)
DEBUG_INFO = Operation("debug_info_api_codex_v1_debug_info_get", "GET", "/debug/info", 200, "debug_info")
SET_LOG_LEVEL = Operation(
    "set_log_level_api_codex_v1_debug_chronicles_loglevel_post",
    "POST",
    "/debug/chronicles/loglevel",
    200,
    "set_log_level",
)

DEBUG_BOOKS = Operation("debug_books_api_codex_v1_debug_books_get", "GET", "/debug/books", 200, "debug_books")
HEALTH = Operation("health_api_codex_v1_health_get", "GET", "/health", 200, "health")
ALERTS = Operation("alerts_api_codex_v1_alerts_get", "GET", "/alerts", 200, "alerts")
SPACE_HISTORY = Operation("space_history_api_codex_v1_space_history_get", "GET", "/space/history", 200, "space_history")
PROOF_MARGINS = Operation(
    "proof_margins_api_codex_v1_sales_proof_margins_get", "GET", "/sales/proof-margins", 200, "proof_margins"
)
SALES_STATES = Operation("sales_states_api_codex_v1_sales_states_get", "GET", "/sales/states", 200, "sales_states")
VALIDATOR = Operation("validator_state_api_codex_v1_validator_get", "GET", "/validator", 200, "validator")
ACCOUNT = Operation("get_account_api_codex_v1_account_get", "GET", "/account", 200, "account")
LEDGER = Operation("get_ledger_api_codex_v1_account_ledger_get", "GET", "/account/ledger", 200, "ledger")
SALE_HISTORY = Operation(
    "list_sale_history_api_codex_v1_sales_history_get", "GET", "/sales/history", 200, "sale_history"
)
SALE = Operation(
    "get_sale_history_api_codex_v1_sales_history__saleId__get", "GET", "/sales/history/{saleId}", 200, "sale"
)
MATCH_REQUEST = Operation(
    "match_request_api_codex_v1_sales_requests__requestId__match_get",
    "GET",
    "/sales/requests/{requestId}/match",
    200,
    "match_request",
)
DEBUG_CHECK = Operation("debug_check_api_codex_v1_debug_check_get", "GET", "/debug/check", 200, "debug_check")
REQUEST_STORAGE = Operation(
    "request_storage_api_codex_v1_storage_request__cid__post", "POST", "/storage/request/{cid}", 200, "request_storage"
)
LIST_PURCHASES = Operation(
    "list_purchases_api_codex_v1_storage_purchases_get", "GET", "/storage/purchases", 200, "list_purchases"
)
GET_PURCHASE = Operation(
    "get_purchase_api_codex_v1_storage_purchases__id__get", "GET", "/storage/purchases/{id}", 200, "get_purchase"
)

PEER_ID = Operation("peer_id_api_codex_v1_peerid_get", "GET", "/peerid", 200, "peer_id")
SPR = Operation("spr_api_codex_v1_spr_get", "GET", "/spr", 200, "spr")
CONNECT = Operation("connect_api_codex_v1_connect__peerId__get", "GET", "/connect/{peerId}", 200, "connect")
PEERS = Operation("exchange_api_codex_v1_peers_get", "GET", "/peers", 200, "peers")
HAVE = Operation("have_api_codex_v1_have_get", "GET", "/have", 200, "have")

OPERATIONS: tuple[Operation, ...] = (
    LIST_DATA,
    UPLOAD,
    DOWNLOAD,
    DELETE,
    EXISTS,
    NETWORK_DOWNLOAD,
    NETWORK_STREAM,
    NETWORK_MANIFEST,
    SPACE,
    LIST_SLOTS,
    GET_SLOT,
    LIST_AVAILABILITIES,
    CREATE_AVAILABILITY,
    UPDATE_AVAILABILITY,
    LIST_RESERVATIONS,
    DEBUG_INFO,
    SET_LOG_LEVEL,
    DEBUG_BOOKS,
    ACCOUNT,
    ALERTS,
    DEBUG_CHECK,
    HEALTH,
    LEDGER,
    MATCH_REQUEST,
    PROOF_MARGINS,
    SALE,
    SALE_HISTORY,
    SALES_STATES,
    SPACE_HISTORY,
    VALIDATOR,
    REQUEST_STORAGE,
    LIST_PURCHASES,
    GET_PURCHASE,
    PEER_ID,
    SPR,
    CONNECT,
    PEERS,
    HAVE,
)
"""Every operation the clients run; ``operationId`` → client method is the table the tests check."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request to send (``path`` filled in, relative to the API URL) and the parser of its success body."""

    operation: Operation
    path: str
    parse: Callable[[bytes], T]
    params: Mapping[str, str | list[str]] = field(default_factory=dict)
    json: Mapping[str, object] | None = None


def fill(operation: Operation, **values: str) -> str:
    """``operation.path`` with its parameters; each value is percent-encoded whole, so a CID like ``../space``
    names nothing but itself."""
    path = operation.path
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


# --- parsers ------------------------------------------------------------------------------------------------------


def _json(model: type[T]) -> Callable[[bytes], T]:
    adapter = pydantic.TypeAdapter(model)

    def parse(body: bytes) -> T:
        try:
            return adapter.validate_json(body)
        except pydantic.ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "the body"
            raise MalformedResponseError(
                f"the node's answer is not a valid {_name(model)}: {where}: {first.get('msg', 'invalid')}"
            ) from None

    return parse


def _name(model: object) -> str:
    return getattr(model, "__name__", None) or str(model)


def _nothing(_body: bytes) -> None:
    return None


_PARSE_DATA_LIST = _json(DataList)
_PARSE_EXISTS = _json(Exists)
_PARSE_DATASET = _json(Dataset)
_PARSE_LOG_LEVEL = _json(LogLevel)
_PARSE_SPACE = _json(Space)
_PARSE_SLOTS = _json(list[Slot])
_PARSE_SLOT_SALE = _json(SlotSale)
_PARSE_AVAILABILITIES = _json(list[Availability])
_PARSE_AVAILABILITY = _json(Availability)
_PARSE_RESERVATIONS = _json(list[Reservation])
_PARSE_DEBUG_INFO = _json(DebugInfo)
_PARSE_BOOKS = _json(BooksCheck)
_PARSE_HEALTH = _json(HealthReport)
_PARSE_ALERTS = _json(Alerts)
_PARSE_SPACE_HISTORY = _json(list[SpaceSample])
_PARSE_PROOF_MARGINS = _json(list[ProofMarginItem])
_PARSE_SALES_STATES = _json(SalesStates)
_PARSE_VALIDATOR = _json(ValidatorState)
_PARSE_ACCOUNT = _json(Account)
_PARSE_LEDGER = _json(LedgerPage)
_PARSE_SALES = _json(SalesPage)
_PARSE_SALE = _json(Sale)
_PARSE_MATCH = _json(RequestMatch)
_PARSE_CHECK = _json(NodeCheck)

_PARSE_PURCHASE_IDS = _json(list[str])
_PARSE_PURCHASE = _json(Purchase)
_PURCHASE_ID = re.compile(r"0x[0-9a-f]{64}")


def _purchase_id(body: bytes) -> str:
    text = body.decode("ascii", errors="replace").strip()
    if not _PURCHASE_ID.fullmatch(text):
        raise MalformedResponseError(f"the node's answer is not a purchase id: {text[:80]!r}")
    return text


def _datasets(body: bytes) -> list[Dataset]:
    return _PARSE_DATA_LIST(body).content


def _has(body: bytes) -> bool:
    return _PARSE_EXISTS(body).has


def _level(body: bytes) -> str:
    return _PARSE_LOG_LEVEL(body).level


def _text_starting(prefix: str, what: str) -> Callable[[bytes], str]:
    def parse(body: bytes) -> str:
        text = body.decode("ascii", errors="replace").strip()
        if not text.startswith(prefix) or len(text) > 8192:
            raise MalformedResponseError(f"the node's answer is not {what}: {text[:80]!r}")
        return text

    return parse


_PARSE_PEER_LIST = _json(PeerList)
_PARSE_HAVE = _json(HaveAnswer)


# --- builders -----------------------------------------------------------------------------------------------------


def list_data() -> Call[list[Dataset]]:
    return Call(LIST_DATA, LIST_DATA.path, _datasets)


def delete(cid: str) -> Call[None]:
    return Call(DELETE, fill(DELETE, cid=cid), _nothing)


def exists(cid: str) -> Call[bool]:
    return Call(EXISTS, fill(EXISTS, cid=cid), _has)


def download_from_network(cid: str) -> Call[Dataset]:
    return Call(NETWORK_DOWNLOAD, fill(NETWORK_DOWNLOAD, cid=cid), _PARSE_DATASET)


def manifest_from_network(cid: str) -> Call[Dataset]:
    return Call(NETWORK_MANIFEST, fill(NETWORK_MANIFEST, cid=cid), _PARSE_DATASET)


def space() -> Call[Space]:
    return Call(SPACE, SPACE.path, _PARSE_SPACE)


def list_slots() -> Call[list[Slot]]:
    return Call(LIST_SLOTS, LIST_SLOTS.path, _PARSE_SLOTS)


def get_slot(slot_id: str) -> Call[SlotSale]:
    return Call(GET_SLOT, fill(GET_SLOT, slotId=slot_id), _PARSE_SLOT_SALE)


def list_availabilities() -> Call[list[Availability]]:
    return Call(LIST_AVAILABILITIES, LIST_AVAILABILITIES.path, _PARSE_AVAILABILITIES)


def create_availability(
    *,
    total_size: int,
    duration: int,
    min_price_per_byte_per_second: int,
    total_collateral: int,
    enabled: bool = True,
    until: int = 0,
) -> Call[Availability]:
    body = {
        "totalSize": total_size,
        "duration": duration,
        "minPricePerBytePerSecond": str(min_price_per_byte_per_second),
        "totalCollateral": str(total_collateral),
        "enabled": enabled,
        "until": until,
    }
    return Call(CREATE_AVAILABILITY, CREATE_AVAILABILITY.path, _PARSE_AVAILABILITY, json=body)


def update_availability(
    availability_id: str,
    *,
    total_size: int | None = None,
    duration: int | None = None,
    min_price_per_byte_per_second: int | None = None,
    total_collateral: int | None = None,
    enabled: bool | None = None,
    until: int | None = None,
) -> Call[None]:
    """Only the fields given are sent (the PATCH changes those and no other)."""
    fields: dict[str, object | None] = {
        "totalSize": total_size,
        "duration": duration,
        "minPricePerBytePerSecond": None
        if min_price_per_byte_per_second is None
        else str(min_price_per_byte_per_second),
        "totalCollateral": None if total_collateral is None else str(total_collateral),
        "enabled": enabled,
        "until": until,
    }
    body = {k: v for k, v in fields.items() if v is not None}
    return Call(UPDATE_AVAILABILITY, fill(UPDATE_AVAILABILITY, id=availability_id), _nothing, json=body)


def _decimal(amount: int | None) -> str | None:
    return None if amount is None else str(amount)


def list_reservations(availability_id: str) -> Call[list[Reservation]]:
    return Call(LIST_RESERVATIONS, fill(LIST_RESERVATIONS, id=availability_id), _PARSE_RESERVATIONS)


def debug_info() -> Call[DebugInfo]:
    return Call(DEBUG_INFO, DEBUG_INFO.path, _PARSE_DEBUG_INFO)


def set_log_level(level: str) -> Call[str]:
    return Call(SET_LOG_LEVEL, SET_LOG_LEVEL.path, _level, params={"level": level})


def debug_books() -> Call[BooksCheck]:
    return Call(DEBUG_BOOKS, DEBUG_BOOKS.path, _PARSE_BOOKS)


def health() -> Call[HealthReport]:
    return Call(HEALTH, HEALTH.path, _PARSE_HEALTH)


def alerts() -> Call[Alerts]:
    return Call(ALERTS, ALERTS.path, _PARSE_ALERTS)


def space_history(since: int = 0, limit: int = 1440) -> Call[list[SpaceSample]]:
    return Call(
        SPACE_HISTORY, SPACE_HISTORY.path, _PARSE_SPACE_HISTORY, params={"since": str(since), "limit": str(limit)}
    )


def proof_margins(limit: int = 512) -> Call[list[ProofMarginItem]]:
    return Call(PROOF_MARGINS, PROOF_MARGINS.path, _PARSE_PROOF_MARGINS, params={"limit": str(limit)})


def sales_states() -> Call[SalesStates]:
    return Call(SALES_STATES, SALES_STATES.path, _PARSE_SALES_STATES)


def validator() -> Call[ValidatorState]:
    return Call(VALIDATOR, VALIDATOR.path, _PARSE_VALIDATOR)


def _query(**values: object) -> dict[str, str]:
    """The query parameters given (``None``: not sent); booleans as ``true``/``false``."""
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def account() -> Call[Account]:
    return Call(ACCOUNT, ACCOUNT.path, _PARSE_ACCOUNT)


def ledger(limit: int = 50, before: int | None = None) -> Call[LedgerPage]:
    return Call(LEDGER, LEDGER.path, _PARSE_LEDGER, params=_query(limit=limit, before=before))


def sale_history(
    state: str | None = None, since: int | None = None, before: int | None = None, limit: int = 50
) -> Call[SalesPage]:
    params = _query(state=state, since=since, before=before, limit=limit)
    return Call(SALE_HISTORY, SALE_HISTORY.path, _PARSE_SALES, params=params)


def sale(sale_id: int) -> Call[Sale]:
    return Call(SALE, fill(SALE, saleId=str(sale_id)), _PARSE_SALE)


def match_request(request_id: str) -> Call[RequestMatch]:
    return Call(MATCH_REQUEST, fill(MATCH_REQUEST, requestId=request_id), _PARSE_MATCH)


def debug_check(verify: bool = False) -> Call[NodeCheck]:
    return Call(DEBUG_CHECK, DEBUG_CHECK.path, _PARSE_CHECK, params=_query(verify=verify))


def request_storage(
    cid: str,
    *,
    duration: int,
    price_per_byte_per_second: int,
    proof_probability: int,
    collateral_per_byte: int,
    expiry: int,
    nodes: int = 3,
    tolerance: int = 1,
) -> Call[str]:
    body = {
        "duration": duration,
        "pricePerBytePerSecond": str(price_per_byte_per_second),
        "proofProbability": str(proof_probability),
        "collateralPerByte": str(collateral_per_byte),
        "expiry": expiry,
        "nodes": nodes,
        "tolerance": tolerance,
    }
    return Call(REQUEST_STORAGE, fill(REQUEST_STORAGE, cid=cid), _purchase_id, json=body)


def list_purchases() -> Call[list[str]]:
    return Call(LIST_PURCHASES, LIST_PURCHASES.path, _PARSE_PURCHASE_IDS)


def get_purchase(purchase_id: str) -> Call[Purchase]:
    return Call(GET_PURCHASE, fill(GET_PURCHASE, id=purchase_id), _PARSE_PURCHASE)


# --- peers --------------------------------------------------------------------------------------------------------


def peer_id() -> Call[str]:
    return Call(PEER_ID, PEER_ID.path, _text_starting("", "a peer id"))


def spr() -> Call[str]:
    return Call(SPR, SPR.path, _text_starting("spr:", "a signed peer record"))


def connect(peer_id: str, addrs: list[str] | None = None) -> Call[None]:
    return Call(CONNECT, fill(CONNECT, peerId=peer_id), _nothing, params={"addrs": list(addrs or [])})


def peers(spr: str | None = None) -> Call[list[str]]:
    return Call(
        PEERS, PEERS.path, lambda body: _PARSE_PEER_LIST(body).peers, params={} if spr is None else {"spr": spr}
    )


def have(cid: list[str]) -> Call[list[str]]:
    return Call(HAVE, HAVE.path, lambda body: _PARSE_HAVE(body).have, params={"cid": list(cid)})
