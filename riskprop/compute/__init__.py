"""Executors for the heavy batches of a secure run: in-process, a local process pool and a
Dask cluster (docs/design-compute.md). They implement ``riskprop.core.batches.Executor``.
``riskprop.compute.dask`` (``DaskExecutor``) is imported only where a run asks for Dask, so
that riskprop starts without ``distributed`` (an optional dependency: ``riskprop[dask]``)."""

from riskprop.compute.executors import (
    ProcessExecutor,
    SerialExecutor,
    default_workers,
    make_executor,
)

__all__ = ["ProcessExecutor", "SerialExecutor", "default_workers", "make_executor"]
