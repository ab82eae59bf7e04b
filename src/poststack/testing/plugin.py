"""The pytest plugin (entry point ``pytest11``): options, markers and the database fixtures.

Fixtures hold no logic of their own: servers and databases come from ``poststack.testing.server``, so a
benchmark or a user's script gets exactly what a test gets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from poststack.testing import server as test_server

MARKERS = {
    "integration": "test that talks to a real PostgreSQL through poststack's fixtures",
    "database": "test that needs a database (a fresh one per test)",
    "slow": "long-running test; selected with --run-slow or -m slow",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("poststack")
    group.addoption("--poststack-database-url", default=None,
                    help="run database tests on this server instead of an embedded PostgreSQL "
                         "(also POSTSTACK_TEST_DATABASE_URL)")
    group.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # An explicit -m expression decides for itself; otherwise slow tests need --run-slow.
    if config.getoption("--run-slow") or config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _shared_dir(factory: pytest.TempPathFactory, worker: str) -> Path:
    # Under xdist every worker's basetemp sits in one run directory: the server lives there, shared.
    base = factory.getbasetemp()
    return (base.parent if worker != "master" else base) / "poststack-server"


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> test_server.TestServer:
    """The PostgreSQL server of this test session: external when a URL is given, else embedded."""
    url = request.config.getoption("--poststack-database-url") or os.environ.get("POSTSTACK_TEST_DATABASE_URL")
    if url:
        return test_server.external(url)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "master")
    return test_server.start_embedded(_shared_dir(tmp_path_factory, worker))


@pytest.fixture
def database_url(postgres_server: test_server.TestServer) -> Iterator[str]:
    """A fresh, empty database for this test, dropped afterwards even when the test failed."""
    with test_server.scratch_database(postgres_server) as url:
        yield url
