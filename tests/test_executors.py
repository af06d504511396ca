"""One contract suite, run against every executor (the ``test_`` functions taking ``kind``)."""

from __future__ import annotations

import asyncio
import os
import traceback

import pytest

from agentplex.exceptions import ConfigError
from agentplex.executors import BUILTIN_EXECUTORS, create_executor
from tests.helpers import burn, fails, pid_and_square


async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@pytest.fixture(params=sorted(BUILTIN_EXECUTORS))
def kind(request: pytest.FixtureRequest) -> str:
    """The executor under test; tests/test_plugins.py runs these tests on a custom one."""
    return str(request.param)


def test_runs_sync_and_async_callables_and_counts(kind: str) -> None:
    async def main() -> None:
        executor = create_executor(kind, max_workers=2)
        assert await executor.submit(burn, 1000) == sum(i * i for i in range(1000))
        assert await executor.submit(async_double, 21) == 42
        stats = executor.statistics()
        assert (stats.submitted, stats.succeeded, stats.failed, stats.in_flight) == (2, 2, 0, 0)
        await executor.aclose()

    asyncio.run(main())


def test_propagates_exceptions(kind: str) -> None:
    async def main() -> None:
        executor = create_executor(kind, max_workers=1)
        with pytest.raises(ValueError, match="raised in a worker") as info:
            await executor.submit(fails)
        if kind == "process":
            assert "fails" in str(info.value.__cause__)  # remote traceback kept as the cause
        if kind == "dask":  # Dask puts the worker's frames back on the traceback
            assert "in fails" in "".join(traceback.format_tb(info.value.__traceback__))
        assert executor.statistics().failed == 1
        await executor.aclose()

    asyncio.run(main())


def test_runs_where_it_says(kind: str) -> None:
    async def main() -> None:
        executor = create_executor(kind, max_workers=2)
        pid, square = await executor.submit(pid_and_square, 3)
        assert square == 9
        assert (pid == os.getpid()) == (kind not in ("process", "dask"))
        await executor.aclose()

    asyncio.run(main())


def test_submissions_run_concurrently(kind: str) -> None:
    async def main() -> None:
        executor = create_executor(kind, max_workers=4)
        results = await asyncio.gather(*(executor.submit(pid_and_square, i) for i in range(8)))
        assert [r[1] for r in results] == [i * i for i in range(8)]
        await executor.aclose()

    asyncio.run(main())


def test_closed_executor_refuses_work(kind: str) -> None:
    async def main() -> None:
        executor = create_executor(kind)
        await executor.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await executor.submit(burn, 1)

    asyncio.run(main())


def test_unknown_executor_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="inline, thread, process, dask"):
        create_executor("gpu")
