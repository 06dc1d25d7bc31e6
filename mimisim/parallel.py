"""Run many independent simulations: serially, on local worker processes,
or on a Dask cluster. Shared by ``mimisim sweep`` and ``mimisim check``.

Each task is a picklable value and ``fn`` a module-level function, so the
same call works in a ``ProcessPoolExecutor`` and on Dask workers. Results
come back **in task order**, whatever order the workers finish in, so a
parallel run gives the same table as a serial one. Why not Dask alone:
local processes need no extra service and start in well under a second;
Dask is used when a scheduler address is given (``--dask tcp://...``), or a
``dask.distributed.Client`` is passed in (a ``LocalCluster`` in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler address is malformed or nothing answers there (a
    user error: the CLI prints the one line and exits 2)."""


def connect(address: str) -> Any:
    """A ``distributed.Client`` for ``address``, or :class:`SchedulerUnreachable`
    with a one-line reason (a command connects before it prints anything, so a
    bad address gives exactly one line)."""
    from dask.distributed import Client

    try:
        return Client(address, timeout="10s")
    except (OSError, ValueError, TimeoutError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SchedulerUnreachable(f"--dask {address}: cannot reach a Dask scheduler there ({reason})") from None


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    workers: int | None = 1,
    dask: str | Any | None = None,
    progress: bool | None = None,
    desc: str = "runs",
    on_result: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``[fn(t) for t in tasks]``, possibly in parallel. ``workers``: local
    processes (1 = in this process; None = one per CPU). ``dask``: a scheduler
    address or a ``distributed.Client``; it wins over ``workers``.
    ``progress``: a tqdm bar (None: only if the runs take more than 2 s).
    ``on_result(i, r)`` is called as each result arrives (e.g. to save it)."""
    from tqdm import tqdm

    if dask is None and workers is not None and workers < 1:
        raise ValueError(f"workers must be None (one per CPU) or at least 1, got {workers}")
    n = len(tasks)
    results: list[Any] = [None] * n
    bar = tqdm(total=n, desc=desc, unit="run", disable=progress is False, delay=0 if progress else 2.0,
               leave=False)

    def done(i: int, r: Any) -> None:
        results[i] = r
        if on_result is not None:
            on_result(i, r)
        bar.update(1)

    try:
        if dask is not None:
            from dask.distributed import Client
            from dask.distributed import as_completed as dask_completed

            client = dask if isinstance(dask, Client) else connect(str(dask))
            try:
                futures = client.map(fn, list(tasks), pure=False)
                index = {f.key: i for i, f in enumerate(futures)}
                for fut in dask_completed(futures):
                    done(index[fut.key], fut.result())
            finally:
                if not isinstance(dask, Client):
                    client.close()
        elif workers == 1 or n <= 1:
            for i, t in enumerate(tasks):
                done(i, fn(t))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futs = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
                for fut in as_completed(futs):
                    done(futs[fut], fut.result())
    finally:
        bar.close()
    return results


def chunks(items: Iterable[T], size: int) -> list[list[T]]:
    out: list[list[T]] = []
    cur: list[T] = []
    for x in items:
        cur.append(x)
        if len(cur) == size:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out
