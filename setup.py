"""Builds the optional native kernel; all other metadata lives in pyproject.toml.

``riskprop.core._mbx`` (AVX-512 IFMA multi-buffer modular exponentiation) needs a C compiler
and the Python headers. If it cannot be built, installation continues and riskprop uses gmpy2
for the same arithmetic (``riskprop.core.modexp.backend()`` tells which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[Extension("riskprop.core._mbx", ["riskprop/core/_mbx.c"], optional=True)],
)
