from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.contracts import CONTRACTS, require

REPO = Path(__file__).resolve().parents[2]
# tests/conftest.py puts tests/ on sys.path, where this folder would pass for a namespace package
# named "sandbox" and hide the real one; the repository root must be importable first. (pytest's
# ``pythonpath = ["."]`` in pyproject.toml does the same for every test folder.)
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The vendor contracts live beside the repository, never inside it.

Serve = Callable[[web.Application], Awaitable[TestClient]]


class FakeClock:
    """A hand-driven clock for rate-limit tests (monotonic and wall clock alike)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def contracts() -> Path:
    return require(CONTRACTS)


@pytest.fixture
def contract(contracts: Path) -> Callable[[str], Any]:
    """Load a contract file by its path under ../shared/contracts."""
    return lambda relative: json.loads((contracts / relative).read_bytes())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve an app on a free port; returns its aiohttp test client."""
    clients: list[TestClient] = []

    async def _serve(app: web.Application) -> TestClient:
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield _serve
    for client in clients:
        await client.close()
