"""Types of the native AVX-512 IFMA kernel (riskprop/core/_mbx.c); see modexp.py."""

def available() -> bool: ...
def powmod(
    bases: bytes,
    exponent: bytes,
    modulus: bytes,
    r2: bytes,
    k0: int,
    window: int,
    secret: bool,
    /,
) -> bytes: ...
def powmod_traced(
    bases: bytes,
    exponent: bytes,
    modulus: bytes,
    r2: bytes,
    k0: int,
    window: int,
    secret: bool,
    /,
) -> tuple[bytes, bytes, int]: ...
def montgomery(values: bytes, modulus: bytes, r2: bytes, k0: int, /) -> bytes: ...
def powers(values: bytes, modulus: bytes, r2: bytes, k0: int, count: int, /) -> bytes: ...
def comb(
    table: bytes,
    positions: bytes,
    per_value: int,
    blocks: int,
    modulus: bytes,
    k0: int,
    subtable: int = 0,
    squarings: int = 1,
    /,
) -> bytes: ...
def comb_traced(
    table: bytes,
    positions: bytes,
    per_value: int,
    blocks: int,
    modulus: bytes,
    k0: int,
    subtable: int = 0,
    squarings: int = 1,
    /,
) -> tuple[bytes, bytes, int]: ...
def multiexp(
    bases: bytes,
    exponents: bytes,
    bits: int,
    modulus: bytes,
    r2: bytes,
    k0: int,
    window: int,
    /,
) -> bytes: ...
