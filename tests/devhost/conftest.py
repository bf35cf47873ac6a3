"""Fixtures for the devhost tests: the test app and engines on temporary folders."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from devhost_testapp import function_app as testapp_module  # noqa: E402

from devhost import Clock, Engine, VirtualClock  # noqa: E402

EngineFactory = Callable[..., Engine]


@pytest.fixture
def testapp():
    """The test app module with its call counters and switches reset."""
    testapp_module.CALLS.clear()
    testapp_module.USE_SECOND_ACTIVITY = False
    yield testapp_module
    testapp_module.USE_SECOND_ACTIVITY = False


@pytest.fixture
def make_engine(tmp_path: Path, testapp) -> Iterator[EngineFactory]:
    """Open engines on the test app; every engine is closed at teardown."""
    engines: list[Engine] = []

    def factory(
        data_dir: Path | None = None, clock: Clock | None = None, workers: int = 4
    ) -> Engine:
        engine = Engine(
            testapp,
            data_dir or tmp_path / "data",
            clock=clock or VirtualClock(),
            workers=workers,
        )
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.close(timeout=5)


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine()
