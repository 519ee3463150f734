"""Builds the optional native modules; all other metadata lives in pyproject.toml.

``riskprop.core._mbx`` (AVX-512 IFMA multi-buffer modular exponentiation) needs a C compiler
and the Python headers; ``riskprop.core._mpn`` (constant-time exponentiation over GMP's mpn
functions, for CPUs without IFMA) also needs GMP's shared library, ``libgmp.so.10`` (present
wherever GCC is: the compiler itself uses it; its header is not needed). If one cannot be
built, installation continues and riskprop uses gmpy2 for the same arithmetic
(``riskprop.core.modexp.describe()`` tells which code runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "riskprop.core._mbx",
            ["riskprop/core/_mbx.c"],
            depends=["riskprop/core/_trace.h"],
            optional=True,
        ),
        Extension(
            "riskprop.core._mpn",
            ["riskprop/core/_mpn.c"],
            depends=["riskprop/core/_trace.h"],
            extra_link_args=["-l:libgmp.so.10"],
            optional=True,
        ),
    ],
)
