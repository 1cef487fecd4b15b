"""Contract reverts → our typed errors: find the revert data in whatever a chain client raised, name it.

Two halves:

- :func:`revert_data` digs the raw revert bytes out of an exception raised by web3.py (``ContractLogicError`` from
  a JSON-RPC node such as Hardhat, ``Web3RPCError`` when a node refuses a reverting transaction outright) or by
  eth-tester (``TransactionFailed``, whose message carries the bytes' ``repr``). It answers ``None`` for anything
  that is not a revert (a dropped connection, a refused nonce), so callers never mistake transport trouble for
  a contract's verdict.
- :class:`ErrorDecoder` names revert data by its 4-byte selector against the ``error`` entries of contract ABIs
  (``Error(string)`` and ``Panic(uint256)`` are built in) and turns it into the exception every Market
  implementation raises for that name (:func:`codex_node.market.market.revert_error`).

Pure apart from reading exception attributes; no I/O. Must never let a web3 or eth-tester type escape.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_tester.exceptions import TransactionFailed
from eth_utils.abi import abi_to_signature, collapse_if_tuple
from eth_utils.crypto import keccak
from web3.exceptions import ContractLogicError, Web3RPCError

from codex_node.errors import CodexError
from codex_node.market.market import revert_error

ERROR_STRING_SELECTOR: Final = bytes.fromhex("08c379a0")
"""``Error(string)``: ``require(cond, "reason")`` and ``revert("reason")``."""
PANIC_SELECTOR: Final = bytes.fromhex("4e487b71")
"""``Panic(uint256)``: failed ``assert``, arithmetic overflow, …"""

_HEX_DATA = re.compile(r"return data: (0x[0-9a-fA-F]*)")


@dataclass(frozen=True, slots=True)
class Revert:
    """A decoded revert: the Solidity error's name (``Error``/``Panic`` for the built-ins) and a readable detail."""

    name: str
    detail: str = ""

    def to_error(self) -> CodexError:
        return revert_error(self.name, self.detail)


def _hex_to_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return None
    return None


def _data_from_rpc_error(error: object) -> bytes | None:
    """Revert data inside a JSON-RPC error object: ``data`` is the hex itself or an object holding it.

    Empty data counts only when the message says it was a revert: Hardhat also answers ``"0x"`` for a transaction
    that ran out of gas, which is not the contract's verdict.
    """
    if not isinstance(error, Mapping):
        return None
    data = error.get("data")
    messages = [error.get("message"), data.get("message") if isinstance(data, Mapping) else None]
    text = " ".join(m for m in messages if isinstance(m, str))
    found = _hex_to_bytes(data.get("data") if isinstance(data, Mapping) else data)
    if found is None and (match := _HEX_DATA.search(text)):  # some nodes only spell the data out in the message
        found = bytes.fromhex(match.group(1)[2:])
    if found is None or (not found and "revert" not in text.lower()):
        return None
    return found


def revert_data(exc: BaseException) -> bytes | None:
    """The revert data ``exc`` carries, ``b""`` for a revert without data, ``None`` if ``exc`` is not a revert.

    An ``Error(string)`` that eth-tester already decoded to its text comes back re-encoded as ``Error(string)``.
    """
    if isinstance(exc, ContractLogicError):
        data = exc.data
        if isinstance(data, Mapping):
            data = data.get("data")
        found = _hex_to_bytes(data)
        return found if found is not None else b""
    if isinstance(exc, Web3RPCError):
        response = exc.rpc_response or {}
        error = response.get("error") if isinstance(response, Mapping) else None
        found = _data_from_rpc_error(error)
        if found is not None:
            return found
        message = str(error.get("message", "")) if isinstance(error, Mapping) else str(exc)
        return b"" if "reverted" in message.lower() and "out of gas" not in message.lower() else None
    if isinstance(exc, TransactionFailed):
        return _data_from_eth_tester(exc)
    return None


def _data_from_eth_tester(exc: BaseException) -> bytes:
    message: object = exc.args[0] if exc.args else ""
    while isinstance(message, BaseException):  # eth-tester sometimes wraps the EVM's exception
        message = message.args[0] if message.args else ""
    if isinstance(message, bytes):
        return message
    text = str(message).removeprefix("execution reverted: ")
    if text.startswith(("b'", 'b"')):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, bytes):
            return value
    # eth-tester decoded an Error(string) to its reason: give the caller the same bytes a node would.
    return ERROR_STRING_SELECTOR + abi_encode(["string"], [text])


class ErrorDecoder:
    """Names revert data by selector, from the ``error`` entries of one or more contract ABIs."""

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str]]] = {}
        for abi in abis:
            for entry in abi:
                if entry.get("type") != "error":
                    continue
                signature = abi_to_signature(entry)  # type: ignore[arg-type]
                types = [collapse_if_tuple(i) for i in entry.get("inputs", [])]
                self._errors[keccak(text=signature)[:4]] = (str(entry["name"]), types)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self._errors.values())

    def decode(self, data: bytes) -> Revert:
        selector, args = data[:4], data[4:]
        if not data:
            return Revert("Revert", "no revert data")
        if selector == ERROR_STRING_SELECTOR:
            return Revert("Error", str(self._decode_args(["string"], args, default=("?",))[0]))
        if selector == PANIC_SELECTOR:
            code = self._decode_args(["uint256"], args, default=(-1,))[0]
            return Revert("Panic", f"code 0x{code:02x}" if isinstance(code, int) and code >= 0 else "")
        known = self._errors.get(selector)
        if known is None:
            return Revert("UnknownError", f"selector 0x{selector.hex()}")
        name, types = known
        if not types:
            return Revert(name)
        values = self._decode_args(types, args, default=None)
        detail = ", ".join(_show(v) for v in values) if values is not None else f"undecodable 0x{args.hex()}"
        return Revert(name, detail)

    def error_for(self, exc: BaseException) -> CodexError | None:
        """Our exception for a revert ``exc`` reports, or ``None`` when ``exc`` is not a revert."""
        data = revert_data(exc)
        return None if data is None else self.decode(data).to_error()

    @staticmethod
    def _decode_args(types: list[str], args: bytes, default: Any) -> Any:
        try:
            return abi_decode(types, args)
        except (DecodingError, ValueError, OverflowError):
            return default


def _show(value: object) -> str:
    return f"0x{value.hex()}" if isinstance(value, bytes) else str(value)
