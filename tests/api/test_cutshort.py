"""The filter that keeps a deliberately cut answer out of uvicorn's error log, and nothing else."""

from __future__ import annotations

import logging

import pytest

from codex_node.api.cutshort import UVICORN_ERROR_LOGGER, AnswerCutShort, CutShortFilter, install, is_cut_short


def record(exc: BaseException | None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    message = "Exception in ASGI application"
    return logging.LogRecord(UVICORN_ERROR_LOGGER, logging.ERROR, __file__, 1, message, (), info)


def raised(exc: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        raise exc from cause
    except BaseException as e:
        return e


def _raise_while_handling(exc: BaseException) -> None:
    try:
        raise exc
    except AnswerCutShort:
        raise KeyError("while handling") from None  # the context is only hidden from display


def test_a_cut_answer_is_found_directly_as_a_cause_as_a_context_and_in_a_group() -> None:
    cut = AnswerCutShort("block changed")
    assert is_cut_short(cut)
    assert is_cut_short(raised(RuntimeError("wrapped"), cut))
    with pytest.raises(KeyError) as handling:
        _raise_while_handling(cut)
    assert handling.value.__context__ is cut
    assert is_cut_short(handling.value)
    assert is_cut_short(BaseExceptionGroup("task group", [ValueError("other"), ExceptionGroup("inner", [cut])]))


def test_every_other_exception_still_reaches_the_log() -> None:
    crash = raised(RuntimeError("a real bug"), ValueError("its cause"))
    assert not is_cut_short(crash)
    assert not is_cut_short(None)
    assert CutShortFilter().filter(record(crash))
    assert CutShortFilter().filter(record(None))
    assert not CutShortFilter().filter(record(AnswerCutShort("cut")))


def test_a_cyclic_or_very_deep_chain_ends_the_search() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert not is_cut_short(a)
    deep: BaseException = AnswerCutShort("at the bottom")
    for i in range(20):
        deep = raised(RuntimeError(f"level {i}"), deep)
    assert not is_cut_short(deep)  # past the bound: logged, as an unknown error would be


def test_install_puts_one_filter_on_uvicorns_error_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(UVICORN_ERROR_LOGGER)
    install()
    install()
    assert sum(isinstance(f, CutShortFilter) for f in logger.filters) == 1
    bug = RuntimeError("a real bug")
    with caplog.at_level(logging.ERROR, logger=UVICORN_ERROR_LOGGER):
        for exc in (AnswerCutShort("cut on purpose"), bug):
            try:
                raise exc
            except Exception:
                logger.exception("Exception in ASGI application")
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == [bug]
