"""Fixtures shared by the sales tests."""

from __future__ import annotations

import pytest
from salesfakes import SalesEnv, make_env
from salesworld import World, make_world


@pytest.fixture
async def env() -> SalesEnv:
    return await make_env()


@pytest.fixture
async def world() -> World:
    return await make_world()
