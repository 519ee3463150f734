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
def montgomery(values: bytes, modulus: bytes, r2: bytes, k0: int, /) -> bytes: ...
def comb(
    table: bytes,
    positions: bytes,
    per_value: int,
    blocks: int,
    modulus: bytes,
    k0: int,
    /,
) -> bytes: ...
