"""Ending a streamed answer early on purpose, without uvicorn logging it as a crash.

Once an answer's headers are out (with a ``Content-Length`` the asker relies on), the only way an ASGI app can
end it early is to raise from its body: the server then closes the connection, and the asker sees the answer cut
short and goes elsewhere. The peer block route does this when a block changed after the answer's length was
announced (``api/routes/blocks.py``). uvicorn logs any such exception as "Exception in ASGI application" with a
traceback, at ERROR: an operator would read a routine, already explained event as a crash.

:class:`AnswerCutShort` marks the deliberate case (whoever raises it has logged why, at the level it deserves);
:class:`CutShortFilter`, on uvicorn's error logger (:func:`install`, done by ``api/server.py``), drops only the
records whose exception is one, found directly, as a cause or context, or inside an exception group. Every other
exception is logged as before.
"""

from __future__ import annotations

import logging

UVICORN_ERROR_LOGGER = "uvicorn.error"
_MAX_DEPTH = 8
"""Links followed through causes, contexts and groups (a hostile or cyclic chain cannot make it loop)."""


class AnswerCutShort(Exception):  # noqa: N818 - a signal to the ASGI server, not an error of the node
    """Raised from a streaming body to close the connection mid-answer; the reason was logged already."""


def is_cut_short(exc: BaseException | None, depth: int = 0) -> bool:
    """Whether ``exc`` is, wraps or was caused by an :class:`AnswerCutShort`."""
    if exc is None or depth > _MAX_DEPTH:
        return False
    if isinstance(exc, AnswerCutShort):
        return True
    if isinstance(exc, BaseExceptionGroup) and any(is_cut_short(e, depth + 1) for e in exc.exceptions):
        return True
    return is_cut_short(exc.__cause__ or exc.__context__, depth + 1)


class CutShortFilter(logging.Filter):
    """Drops log records whose exception is a deliberate :class:`AnswerCutShort`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info is not None and is_cut_short(record.exc_info[1]))


def install() -> None:
    """Put the filter on uvicorn's error logger, once per process."""
    logger = logging.getLogger(UVICORN_ERROR_LOGGER)
    if not any(isinstance(f, CutShortFilter) for f in logger.filters):
        logger.addFilter(CutShortFilter())
