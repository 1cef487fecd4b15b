"""The one exception tree of codex-node.

Every error the node raises on purpose derives from :class:`CodexError`. API handlers map these types to HTTP
status codes in one place (``api/errors.py``); the CLI maps :class:`ConfigError` to exit code 2. Nothing here
may carry a web3, plyvel or FastAPI type: callers catch our types, never a library's.

::

    CodexError
    ├── ConfigError                      bad flag / env var / config file value (CLI exits 2)
    ├── InvalidInputError                bad user input (API answers 400 or 422)
    │   ├── InvalidCidError              not a parsable CID (400)
    │   └── ValidationError              well-formed but not acceptable (422)
    ├── NotFoundError                    unknown CID, availability, slot, purchase (404)
    ├── StoreError                       block store and metadata store
    │   ├── QuotaNotEnoughError          a reservation or a block would exceed the quota (422)
    │   ├── DiskFullError                the data dir's disk has no room for the bytes (507)
    │   ├── BlockNotFoundError           (also a NotFoundError)
    │   ├── CorruptBlockError            data on disk does not match its CID
    │   ├── KVError                      LevelDB failed (open, write, read)
    │   └── QuotaUnderflowError          releasing more quota than is held (a bookkeeping bug)
    ├── ChainError                       talking to the chain
    │   ├── ChainMismatchError           data dir belongs to another chain
    │   ├── DeploymentFileError          a deployment JSON is unreadable or malformed (names file and field)
    │   ├── TransactionError             a transaction could not be sent or was not mined
    │   └── ContractRevertError          the contract reverted; ``.error_name`` is the Solidity error's name
    ├── MarketError                      market-level failures, independent of transport
    │   ├── SlotStateMismatchError       the slot is not in the state the call needs (SlotNotFree, …)
    │   ├── SlotReservationNotAllowedError
    │   ├── ProofInvalidError
    │   └── MarketUnavailableError       the node runs without a marketplace (503)
    ├── SalesError                       sales bookkeeping
    │   ├── ReservationsError            availabilities and reservations
    │   │   ├── BytesOutOfBoundsError    a reservation or availability would go below zero / above its size
    │   │   ├── UntilOutOfBoundsError    ``until`` before a hosted slot's end
    │   │   ├── CollateralOutOfBoundsError
    │   │   │   └── WalletBalanceError   the wallet's tokens cannot cover the collateral offered or a slot's fill
    │   │   ├── AvailabilityNotFoundError (also a NotFoundError)
    │   │   └── ReservationNotFoundError (also a NotFoundError)
    │   ├── SlotQueueError
    │   │   ├── SlotQueueItemExistsError
    │   │   ├── SlotQueueItemNotExistsError
    │   │   ├── SlotsOutOfRangeError
    │   │   └── QueueNotRunningError
    │   └── SaleError                    a sale cannot continue (host mismatch, slot freed, …)
    │       └── SlotDataError            the slot's data is not in the repo or does not fit the request
    ├── ErasureError                     erasure coding (``data/erasure.py``) and protected manifests
    │   ├── ErasureParamsError           nodes/tolerance break the erasure-code rules (also a ValidationError)
    │   ├── InsufficientBlocksError      an empty dataset cannot be erasure-coded (also a ValidationError)
    │   ├── InvalidProtectedManifestError   unparsable, not canonical, or its fields do not add up
    │   └── ErasureDataError             dataset or slot blocks of the wrong size or count, fewer than K slots
    │       └── SlotRootMismatchError    decoded slot data does not hash to the manifest's slot root
    ├── NodeApiError                     a CLI command could not reach a running node, or it refused the request
    └── ProofError                       building or checking a storage proof
        ├── InvalidProofError            a proof does not prove its target; ``.contract_error`` names the revert
        │   ├── InvalidProofShapeError   wrong number of cells or paths, a cell of the wrong length
        │   ├── InvalidCellProofError    a cell and its path do not reach the slot root
        │   └── InvalidSlotProofError    the slot root and its path do not reach the dataset root
        └── ProofDataError               the prover lacks a slot's data, or the data does not match the request

The client's errors (``client/errors.py``: ``ClientError`` and one type per error status the node answers) are a
branch of this tree too, kept in the client package so it imports nothing of the server.
"""

from __future__ import annotations


class CodexError(Exception):
    """Root of every error codex-node raises on purpose."""


# --- configuration and input ---------------------------------------------------------------------------------


class ConfigError(CodexError):
    """A configuration value is invalid. ``flag`` names the CLI flag so the message can point at it."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag
        self.reason = message


class InvalidInputError(CodexError):
    """User input that cannot be accepted (maps to 400 unless a subclass says otherwise)."""


class InvalidCidError(InvalidInputError):
    """A string that does not parse as a CID."""


class ValidationError(InvalidInputError):
    """Well-formed input that breaks a rule (maps to 422)."""


class DatasetInUseError(ValidationError):
    """The dataset holds slot data of sales that have not ended; deleting it would fail their proofs (409)."""


class NotFoundError(CodexError):
    """The thing asked for does not exist here (maps to 404)."""


# --- stores ---------------------------------------------------------------------------------------------------


class StoreError(CodexError):
    """The block store or the metadata store failed."""


class QuotaNotEnoughError(StoreError):
    """Storing or reserving these bytes would exceed the storage quota."""


class DiskFullError(StoreError):
    """The data dir's file system has no room for these bytes (ENOSPC): nothing of them was stored."""


class BlockNotFoundError(StoreError, NotFoundError):
    """No block with this CID is stored."""


class CorruptBlockError(StoreError):
    """A block's bytes on disk do not hash to its CID."""


class KVError(StoreError):
    """The LevelDB metadata store failed."""


# --- stores: additions by the repo store (data/, stores/repostore.py) ---


class QuotaUnderflowError(StoreError):
    """Releasing more used or reserved bytes than the quota holds; refused whole."""


# --- chain ----------------------------------------------------------------------------------------------------


class ChainError(CodexError):
    """Talking to the chain failed."""


class ChainMismatchError(ChainError):
    """The data dir was used with another chain (chain id or genesis hash differ)."""


class DeploymentFileError(ChainError):
    """A deployment JSON file is unreadable or malformed; the message names the file and the field."""


class TransactionError(ChainError):
    """A transaction could not be sent, or was not mined."""


class ContractRevertError(ChainError):
    """The contract reverted. ``error_name`` is the Solidity custom error's name (or ``"Error"``/``"Panic"``)."""

    def __init__(self, error_name: str, message: str = "") -> None:
        super().__init__(f"contract reverted: {error_name}" + (f" ({message})" if message else ""))
        self.error_name = error_name


# --- market ---------------------------------------------------------------------------------------------------


class MarketError(CodexError):
    """A marketplace operation failed."""


class SlotStateMismatchError(MarketError):
    """The slot is not in the state the operation needs (e.g. ``SlotNotFree``)."""


class SlotReservationNotAllowedError(MarketError):
    """The contract does not allow this host to reserve the slot."""


class ProofInvalidError(MarketError):
    """The contract refused a storage proof."""


class MarketUnavailableError(MarketError):
    """The node runs without a marketplace (maps to 503)."""


# --- sales ----------------------------------------------------------------------------------------------------


class SalesError(CodexError):
    """Sales bookkeeping failed."""


class ReservationsError(SalesError):
    """Availabilities and reservations."""


class BytesOutOfBoundsError(ReservationsError):
    """An availability or reservation would hold fewer than zero or more than its total bytes."""


class UntilOutOfBoundsError(ReservationsError):
    """``until`` would end before a slot the availability hosts."""


class CollateralOutOfBoundsError(ReservationsError):
    """Not enough remaining collateral, or collateral would go negative."""


class WalletBalanceError(CollateralOutOfBoundsError):
    """The node's wallet holds fewer tokens than the collateral offered (or a slot's fill) needs."""


class SlotQueueError(SalesError):
    """The slot queue refused an operation."""


class SlotQueueItemExistsError(SlotQueueError):
    """An item for this (requestId, slotIndex) is already queued."""


class SlotQueueItemNotExistsError(SlotQueueError):
    """No item for this (requestId, slotIndex) is queued."""


class SlotsOutOfRangeError(SlotQueueError):
    """A request has more slots than the queue can index."""


class QueueNotRunningError(SlotQueueError):
    """The queue is stopped."""


class SaleError(SalesError):
    """A sale cannot continue (host mismatch, slot freed, unexpected slot state)."""


class SlotDataError(SaleError):
    """The slot's data cannot be secured: manifest or block missing, or the dataset does not fit the request."""


# --- sales: additions by the reservations book (sales/reservations.py) ---


class AvailabilityNotFoundError(ReservationsError, NotFoundError):
    """No availability with this id (404)."""


class ReservationNotFoundError(ReservationsError, NotFoundError):
    """No reservation with this id in this availability (404)."""


# --- erasure coding (data/erasure.py, data/protected.py) -------------------------------------------------------


class NodeApiError(CodexError):
    """A command talking to a running node's API (``codex-node status``) could not reach it or got an error."""


class ErasureError(CodexError):
    """Erasure coding a dataset, decoding it, or reading a protected manifest failed."""


class ErasureParamsError(ErasureError, ValidationError):
    """``nodes``/``tolerance`` (K = nodes - tolerance, M = tolerance) break the erasure-code rules (422)."""


class InsufficientBlocksError(ErasureError, ValidationError):
    """The dataset has no block to encode (422; nim-codex's name for a dataset too small to protect)."""


class InvalidProtectedManifestError(ErasureError):
    """A protected manifest that does not parse, is not in canonical form, or whose fields do not add up."""


class ErasureDataError(ErasureError):
    """Dataset or slot blocks of the wrong size or count, or fewer than K slots to decode from."""


class SlotRootMismatchError(ErasureDataError):
    """Slot data read while decoding does not hash to the slot root the protected manifest commits to."""


# --- proofs ---------------------------------------------------------------------------------------------------


class ProofError(CodexError):
    """Building or checking a storage proof failed."""


# --- proofs: additions by the proof maths (proofs/) ---


class InvalidProofError(ProofError):
    """A storage proof does not prove its target. ``contract_error`` is the name the contract reverts with."""

    contract_error: str


class InvalidProofShapeError(InvalidProofError):
    """Wrong number of cells or cell paths, or a cell that is not exactly one cell long."""

    contract_error = "InvalidProofShape"


class InvalidCellProofError(InvalidProofError):
    """A sampled cell and its path do not lead to the proof's slot root."""

    contract_error = "InvalidCellProof"


class InvalidSlotProofError(InvalidProofError):
    """The proof's slot root and its path do not lead to the request's dataset root."""

    contract_error = "InvalidSlotProof"


class ProofDataError(ProofError):
    """A proof cannot be built: blocks of the dataset are missing here, or they do not hash to the request's root."""


# --- the network: peers, block exchange, repair, validation ---------------------------------------------------


class NetworkError(CodexError):
    """Talking to other nodes failed: a peer record, a peer's answer, a block fetch or a slot repair."""


class PeerRecordError(NetworkError, InvalidInputError):
    """A signed peer record (or a peer id) is malformed, too large, or its signature does not verify."""


class PeerError(NetworkError):
    """A peer could not be reached, answered an error, or answered something it should not have."""


class PeerAnswerError(PeerError):
    """A peer answered, but not what the protocol allows (too large, malformed, a record of another peer)."""


class BlocksUnavailableError(NetworkError, NotFoundError):
    """Some blocks could be found neither in the repo nor at any peer that was asked."""


class NetworkUnavailableError(NetworkError):
    """The node runs without the block exchange (no marketplace, or no peers part): maps to 503."""


class RepairError(NetworkError):
    """A lost slot could not be rebuilt from the other slots (too few reachable, or a mismatch with its root)."""


class ValidationFailedError(CodexError):
    """The validator could not mark a missing proof (the chain refused it or could not be reached)."""
