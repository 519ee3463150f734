"""riskprop: privacy-preserving AML risk propagation across banks.

Layers, from the bottom: ``riskprop.core`` (pure maths and data, no I/O beyond reading CSV
files), ``riskprop.protocol`` (sans-I/O session state machines), ``riskprop.node`` (asyncio
drivers and transports) and ``riskprop.cli`` (thin click commands).
"""

__version__ = "0.1.0"
