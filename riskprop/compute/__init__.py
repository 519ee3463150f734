"""Executors for the heavy batches of a secure run: in-process and a local process pool
(docs/design-compute.md). They implement ``riskprop.core.batches.Executor``."""

from riskprop.compute.executors import (
    ProcessExecutor,
    SerialExecutor,
    default_workers,
    make_executor,
)

__all__ = ["ProcessExecutor", "SerialExecutor", "default_workers", "make_executor"]
