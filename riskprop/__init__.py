"""riskprop: privacy-preserving AML risk propagation across banks.

The public Python API is :mod:`riskprop.api`. Packages, from the bottom (each imports only
those below it; a test checks): ``core`` (pure maths and data), ``files`` (every file format),
``protocol`` (sans-I/O sessions and messages), ``config`` (YAML to validated settings), ``node``
(asyncio drivers and transports), ``lab`` (the researcher's tools), ``localnet`` (real node
processes on one machine) and ``cli`` (thin click commands).
"""

__version__ = "0.1.0"
