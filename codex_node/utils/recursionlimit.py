"""Put Python's recursion limit back to what the embedded EVM needs, after ``py_ecc`` raised it to 100,000.

``py_ecc`` (imported by the Ethereum stack) sets the process-wide limit to 100,000 when imported. Recursion in C
code (the ``json`` parser, ``repr`` of nested containers, pickling) is then stopped by the C stack instead of a
``RecursionError``: a segfault, without a log line. py-evm asks for 1024 nested calls × 12 frames (its
``EVM_RECURSION_LIMIT``); ``py_ecc``'s deepest recursion (``FQ12.__pow__`` in the pairing's final exponentiation)
is about 2,800 levels. So the node runs with py-evm's limit: enough for both, and a C recursion that deep still
fits the main thread's stack, so it raises instead of crashing.

The API refuses deeply nested bodies before parsing them (``api/bodylimit.py``); this is the second line, for
any other parser that meets hostile input (a remote JSON-RPC provider's answers, for one).
"""

from __future__ import annotations

import sys

EVM_RECURSION_LIMIT = 1024 * 12


def bound_recursion_limit(limit: int = EVM_RECURSION_LIMIT) -> None:
    """Lower the recursion limit to ``limit`` if something raised it higher (never raises it)."""
    if sys.getrecursionlimit() > limit:
        sys.setrecursionlimit(limit)
