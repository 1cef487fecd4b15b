"""Taking bytes off the front of a queue of buffer views (pure: no I/O)."""

from __future__ import annotations

from collections import deque


def pop_views(queue: deque[memoryview], n: int) -> list[memoryview]:
    """Remove the first ``n`` bytes from ``queue`` (which holds at least that many) and return them as views, in
    order: whole views popped, the last one split if it holds more. No byte is copied."""
    parts: list[memoryview] = []
    left = n
    while left:
        head = queue[0]
        if len(head) <= left:
            parts.append(queue.popleft())
            left -= len(head)
        else:
            parts.append(head[:left])
            queue[0] = head[left:]
            left = 0
    return parts
