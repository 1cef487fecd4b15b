"""How deeply a JSON text nests, measured without recursion (pure).

Python's JSON parser recurses in C once per nesting level, and the Ethereum libraries the node imports raise the
recursion limit to 100,000, so ``[[[[…`` 100,000 deep would overflow the C stack and kill the process without a
line of log. Whatever parses bytes from a client or a peer checks them here first.
"""

from __future__ import annotations

import re

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def nesting_exceeds(text: bytes, limit: int) -> bool:
    """Whether brackets outside JSON strings nest deeper than ``limit``. Iterative: any input is safe.

    Brackets inside strings do not count; an unterminated string's brackets do, which can only refuse a text
    that is malformed anyway.
    """
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    depth = 0
    for c in brackets:
        if c in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
