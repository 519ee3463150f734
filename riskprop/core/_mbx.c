/* Multi-buffer modular exponentiation: eight bases, one exponent, one odd modulus.
 *
 * Numbers are held in radix 2^52, "vertically": vector j holds limb j of the eight bases, so one
 * AVX-512 IFMA instruction (vpmadd52luq / vpmadd52huq: the low / high 52 bits of a 52x52-bit
 * product, added to a 64-bit accumulator) does one limb product for all eight lanes.  Because the
 * modulus and the exponent are the same in every lane, the lanes follow one control flow.
 *
 * Montgomery multiplication, word by word (the almost-Montgomery variant of Gueron and Krasnov,
 * "Accelerating big integer arithmetic using Intel IFMA extensions", ARITH 2016):
 *
 *     R = 2^(52 n) with 4 M < R,  k0 = -M^-1 mod 2^52
 *     amm(a, b) = (a b + m M) / R  for the m < R that makes the division exact
 *     a, b < 2 M  =>  amm(a, b) < (4 M^2 + R M) / R < 2 M
 *
 * so results stay below 2M and need no final subtraction until the caller reduces mod M.
 * Accumulator limbs gather at most 4 products of 52 bits per step and n steps in all, so they
 * stay below 4 n 2^52 < 2^64 for n < 2^10 (moduli up to 53,000 bits); carries are propagated
 * once per multiplication.  A squaring (ams) gives the same result with about three quarters
 * of the products: column by column, each a_i a_j (i < j) once and doubled, the reduction's
 * m M in the same column, four independent accumulators per column.
 *
 * Exponentiation is left-to-right with a fixed window of w bits and a table of base^k R for
 * k < 2^w.  For a public exponent the table is indexed by the digit and zero windows are skipped.
 * For a secret exponent the operations and the memory they touch do not depend on its bits, only
 * on its length in bytes: every window squares w times and multiplies (also by base^0 R), and
 * the factor is found by a scan, which reads every table entry in the same order with the same
 * full-width loads and keeps the one whose index equals the digit by and/or with a mask made by
 * a vector comparison (scan_vectors).  No branch and no address depends on the digit.
 *
 * The comb (comb_products) multiplies table entries chosen per lane, squaring the accumulator
 * a fixed number of times between blocks of products.  Given positions it gathers them, so
 * which cache lines it touches depends on them; given a sub-table size s (a power of two) it
 * instead scans, for each product, the aligned run of s entries that holds every lane's entry
 * (the run is public: it is the same in all lanes), as above but with a mask per lane.  Over a
 * table of the powers b^0 .. b^(2^w - 1) of each base (power_table), with w squarings between
 * blocks, it is a fixed-window multi-exponentiation of eight rows at once (public exponents).
 *
 * The multi-exponentiation (multiexp_windows: prod_j b_j^e_j for public e_j) is Pippenger's
 * bucket method with the lanes on different windows of the exponents: lane l keeps its own
 * buckets and multiplies the base, broadcast, into the bucket its digit names, gathered and
 * scattered per lane.  Which buckets it touches follows the exponents' digits: public only.
 *
 * For tests, the *_traced entry points also return the sequence of operations (one code per
 * Montgomery product) and the number of table entries read; the arithmetic is the same code.
 *
 * The kernel is compiled for AVX-512 IFMA by a function attribute and only called after the
 * CPU reports the feature; elsewhere the module builds and `available()` returns False.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(MBX_PORTABLE)
#include <immintrin.h>
#define MBX_X86 1
#define MBX_TARGET __attribute__((target("avx512f,avx512ifma")))
#endif

#define LANES 8
#define RADIX 52
#define MASK52 ((UINT64_C(1) << RADIX) - 1)
#define MAX_WINDOW 8
#define MAX_MULTI_WINDOW 16 /* multiexp: 8 2^16 buckets */
#define MAX_LIMBS 1000
#define CHUNK 8 /* limbs a scan holds in registers */

#include "_trace.h"

#ifdef MBX_X86
#define INLINE inline __attribute__((always_inline))

/* r = amm(a, b) in every lane.  a, b: n normalised limbs (< 2^52); mod: n limbs of M;
 * t: n + 1 vectors of scratch.  r may alias a or b: it is written only at the end. */
MBX_TARGET static void amm(__m512i *r, const __m512i *a, const __m512i *b, const uint64_t *mod,
                           uint64_t k0, int n, __m512i *t)
{
    const __m512i zero = _mm512_setzero_si512();
    const __m512i mask = _mm512_set1_epi64((long long)MASK52);
    const __m512i k0v = _mm512_set1_epi64((long long)k0);
    for (int j = 0; j <= n; j++) t[j] = zero;
    for (int i = 0; i < n; i++) {
        /* t = (t + a_i b + m M) / 2^52, with m chosen so that the low limb vanishes */
        const __m512i ai = a[i];
        __m512i low = _mm512_madd52lo_epu64(t[0], ai, b[0]);
        const __m512i m = _mm512_madd52lo_epu64(zero, low, k0v);
        __m512i mod_j = _mm512_set1_epi64((long long)mod[0]);
        low = _mm512_madd52lo_epu64(low, m, mod_j);
        const __m512i carry = _mm512_srli_epi64(low, RADIX);
        __m512i b_prev = b[0], mod_prev = mod_j;
        for (int j = 1; j < n; j++) {
            const __m512i b_j = b[j];
            mod_j = _mm512_set1_epi64((long long)mod[j]);
            __m512i x = t[j];
            x = _mm512_madd52lo_epu64(x, ai, b_j);
            x = _mm512_madd52lo_epu64(x, m, mod_j);
            x = _mm512_madd52hi_epu64(x, ai, b_prev);
            x = _mm512_madd52hi_epu64(x, m, mod_prev);
            t[j - 1] = x;
            b_prev = b_j;
            mod_prev = mod_j;
        }
        const __m512i top = _mm512_madd52hi_epu64(zero, ai, b_prev);
        t[n - 1] = _mm512_madd52hi_epu64(top, m, mod_prev);
        t[0] = _mm512_add_epi64(t[0], carry);
    }
    __m512i c = zero;
    for (int j = 0; j < n; j++) {
        const __m512i x = _mm512_add_epi64(t[j], c);
        r[j] = _mm512_and_si512(x, mask);
        c = _mm512_srli_epi64(x, RADIX);
    }
}

/* Column k of ams: the square's column (products a_i a_j with i < j once, doubled, and the
 * diagonal) and the reduction's (m_j M_{k - j}), plus the carry from column k - 1; sets m_k
 * while k < n. */
MBX_TARGET static INLINE __m512i ams_column(const __m512i *a, __m512i *m, const uint64_t *mod,
                                            __m512i k0v, int n, int k, __m512i carry)
{
    const __m512i zero = _mm512_setzero_si512();
    /* lo(a_i a_{k-i}) for l0 <= i < k / 2 (and i = k / 2 when k is odd and k / 2 + 1 < n);
     * hi(a_i a_{k-1-i}) for k - n <= i < k / 2: the same range with one more term below */
    const int l0 = k - n + 1 > 0 ? k - n + 1 : 0, half = k / 2;
    __m512i o0 = zero, o1 = zero, o2 = zero, o3 = zero;
    if (k >= n && k < 2 * n - 1) o2 = _mm512_madd52hi_epu64(o2, a[k - n], a[n - 1]);
    int i = l0;
    for (; i + 1 < half; i += 2) { /* four independent chains keep the multiplier busy */
        o0 = _mm512_madd52lo_epu64(o0, a[i], a[k - i]);
        o1 = _mm512_madd52lo_epu64(o1, a[i + 1], a[k - i - 1]);
        o2 = _mm512_madd52hi_epu64(o2, a[i], a[k - 1 - i]);
        o3 = _mm512_madd52hi_epu64(o3, a[i + 1], a[k - 2 - i]);
    }
    if (i < half) {
        o0 = _mm512_madd52lo_epu64(o0, a[i], a[k - i]);
        o2 = _mm512_madd52hi_epu64(o2, a[i], a[k - 1 - i]);
    }
    if ((k & 1) && half + 1 < n) o1 = _mm512_madd52lo_epu64(o1, a[half], a[half + 1]);
    const __m512i off = _mm512_add_epi64(_mm512_add_epi64(o0, o1), _mm512_add_epi64(o2, o3));
    __m512i acc = _mm512_add_epi64(carry, _mm512_add_epi64(off, off));
    if (k & 1)
        acc = _mm512_madd52hi_epu64(acc, a[half], a[half]);
    else if (half < n)
        acc = _mm512_madd52lo_epu64(acc, a[half], a[half]);
    /* lo(m_j M_{k-j}) for l0 <= j < min(k, n); hi(m_j M_{k-1-j}) from k - n (if >= 0) */
    const int end = k < n ? k : n;
    __m512i r0 = zero, r1 = zero, r2 = zero, r3 = zero;
    if (k >= n) r2 = _mm512_madd52hi_epu64(r2, m[k - n], _mm512_set1_epi64((long long)mod[n - 1]));
    int j = l0;
    for (; j + 1 < end; j += 2) {
        r0 = _mm512_madd52lo_epu64(r0, m[j], _mm512_set1_epi64((long long)mod[k - j]));
        r1 = _mm512_madd52lo_epu64(r1, m[j + 1], _mm512_set1_epi64((long long)mod[k - j - 1]));
        r2 = _mm512_madd52hi_epu64(r2, m[j], _mm512_set1_epi64((long long)mod[k - 1 - j]));
        r3 = _mm512_madd52hi_epu64(r3, m[j + 1], _mm512_set1_epi64((long long)mod[k - 2 - j]));
    }
    if (j < end) {
        r0 = _mm512_madd52lo_epu64(r0, m[j], _mm512_set1_epi64((long long)mod[k - j]));
        r2 = _mm512_madd52hi_epu64(r2, m[j], _mm512_set1_epi64((long long)mod[k - 1 - j]));
    }
    acc = _mm512_add_epi64(acc, _mm512_add_epi64(_mm512_add_epi64(r0, r1),
                                                 _mm512_add_epi64(r2, r3)));
    if (k < n) { /* the m that clears this column's low 52 bits */
        m[k] = _mm512_madd52lo_epu64(zero, acc, k0v);
        acc = _mm512_madd52lo_epu64(acc, m[k], _mm512_set1_epi64((long long)mod[0]));
    }
    return acc;
}

/* r = amm(a, a), the almost-Montgomery square, with about 3/4 of amm's IFMA products: the
 * square and its reduction column by column (product scanning), a_i a_j (i < j) computed once
 * and doubled.  Column sums stay below (4 n + 4) 2^52 + 2^12 < 2^64 for n <= 1022.  r may
 * alias a: r_{k-n} is written after column k, and later columns read a_i for i > k - n only.
 * m: n vectors of scratch.  The same result as amm(a, a) in every lane, bit for bit. */
MBX_TARGET static void ams(__m512i *r, const __m512i *a, const uint64_t *mod, uint64_t k0, int n,
                           __m512i *m)
{
    const __m512i mask = _mm512_set1_epi64((long long)MASK52);
    const __m512i k0v = _mm512_set1_epi64((long long)k0);
    __m512i carry = _mm512_setzero_si512();
    for (int k = 0; k < n; k++)
        carry = _mm512_srli_epi64(ams_column(a, m, mod, k0v, n, k, carry), RADIX);
    for (int k = n; k < 2 * n; k++) {
        const __m512i acc = ams_column(a, m, mod, k0v, n, k, carry);
        r[k - n] = _mm512_and_si512(acc, mask);
        carry = _mm512_srli_epi64(acc, RADIX);
    }
}

/* all-ones in the lanes where a == b, zero elsewhere */
MBX_TARGET static INLINE __m512i lanes_equal(__m512i a, __m512i b)
{
    return _mm512_maskz_set1_epi64(_mm512_cmpeq_epi64_mask(a, b), -1);
}

/* One pass of a scan over limbs j0 .. j0 + width - 1 (width <= CHUNK, kept in registers): for
 * every entry e < size in order, limb j of entry e in all lanes (a vector of the table, or a
 * number of a shared table broadcast), and-ed with the lanes where digit == e, or-ed into
 * dst[j].  Adds the entries read to *read on the pass that starts at limb 0. */
MBX_TARGET static INLINE void scan_pass(__m512i *dst, const void *table, int shared,
                                        Py_ssize_t size, int n, int j0, int width, __m512i digit,
                                        Py_ssize_t *read)
{
    const __m512i step = _mm512_set1_epi64(1);
    __m512i r[CHUNK], k = _mm512_setzero_si512();
    for (int i = 0; i < width; i++) r[i] = _mm512_setzero_si512();
    for (Py_ssize_t e = 0; e < size; e++, k = _mm512_add_epi64(k, step)) {
        *read += j0 == 0;
        const __m512i hit = lanes_equal(digit, k);
        for (int i = 0; i < width; i++) {
            const Py_ssize_t at = e * n + j0 + i;
            const __m512i x = shared ? _mm512_set1_epi64((long long)((const uint64_t *)table)[at])
                                     : _mm512_load_si512((const __m512i *)table + at);
            r[i] = _mm512_or_si512(r[i], _mm512_and_si512(hit, x));
        }
    }
    for (int i = 0; i < width; i++) dst[j0 + i] = r[i];
}

/* dst = entry digit_l of the table in lane l (n limbs each), by a scan of all size entries:
 * the same loads in the same order, whatever the digits; returns the entries read. */
MBX_TARGET static INLINE Py_ssize_t scan(__m512i *dst, const void *table, int shared,
                                         Py_ssize_t size, int n, __m512i digit)
{
    Py_ssize_t read = 0;
    if (n < CHUNK) {
        for (int j = 0; j < n; j++) scan_pass(dst, table, shared, size, n, j, 1, digit, &read);
        return read;
    }
    for (int j0 = 0;; j0 += CHUNK) {
        if (j0 > n - CHUNK) j0 = n - CHUNK; /* the last chunk overlaps the one before */
        scan_pass(dst, table, shared, size, n, j0, CHUNK, digit, &read);
        if (j0 == n - CHUNK) return read;
    }
}

/* a table of numbers per lane: entry e is n vectors */
MBX_TARGET static Py_ssize_t scan_vectors(__m512i *dst, const __m512i *table, Py_ssize_t size,
                                          int n, __m512i digit)
{
    return scan(dst, table, 0, size, n, digit);
}

/* a table of numbers shared by the lanes: entry e is n uint64 limbs, broadcast */
MBX_TARGET static Py_ssize_t scan_scalars(__m512i *dst, const uint64_t *table, Py_ssize_t size,
                                          int n, __m512i digit)
{
    return scan(dst, table, 1, size, n, digit);
}

static int exponent_bit(const unsigned char *e, Py_ssize_t bit)
{
    return (e[bit >> 3] >> (bit & 7)) & 1;
}

typedef struct {
    int n;                 /* limbs per number */
    int w;                 /* window bits */
    int secret;            /* fixed operations: multiply on every window, scan the table */
    uint64_t k0;           /* -M^-1 mod 2^52 */
    const uint64_t *mod;   /* n limbs of M */
    const __m512i *r2;     /* R^2 mod M, broadcast to all lanes */
    const unsigned char *e;
    Py_ssize_t ebits;      /* exponent bits: 8 per byte if secret, else no leading zeros */
    __m512i *table;        /* 2^w numbers */
    __m512i *acc, *one, *entry, *t;
    Trace *trace;
} Plan;

/* out = base^e mod M (almost reduced, < 2M) in all lanes; base < 2^(52 n). */
MBX_TARGET static void powmod8(const Plan *p, __m512i *out, const __m512i *base)
{
    const int n = p->n, w = p->w;
    const Py_ssize_t size = (Py_ssize_t)1 << w;
    __m512i *table = p->table, *acc = p->acc, *t = p->t;
    Trace *tr = p->trace;
    amm(table, p->r2, p->one, p->mod, p->k0, n, t);   /* R mod M: one, Montgomery form */
    traced_op(tr, OP_CONVERT);
    amm(table + n, base, p->r2, p->mod, p->k0, n, t); /* base R mod M */
    traced_op(tr, OP_CONVERT);
    for (Py_ssize_t k = 2; k < size; k++) {
        amm(table + k * n, table + (k - 1) * n, table + n, p->mod, p->k0, n, t);
        traced_op(tr, OP_TABLE);
    }
    memcpy(acc, table, sizeof(__m512i) * (size_t)n);
    const Py_ssize_t top = (p->ebits + w - 1) / w * w;
    for (Py_ssize_t pos = top - w; pos >= 0; pos -= w) {
        if (pos != top - w)
            for (int s = 0; s < w; s++) {
                ams(acc, acc, p->mod, p->k0, n, t);
                traced_op(tr, OP_SQUARE);
            }
        uint64_t digit = 0;
        for (int s = w - 1; s >= 0; s--) {
            const Py_ssize_t bit = pos + s;
            digit = (digit << 1) | (uint64_t)(bit < p->ebits ? exponent_bit(p->e, bit) : 0);
        }
        if (p->secret) {
            const __m512i lanes = _mm512_set1_epi64((long long)digit);
            traced_reads(tr, (uint64_t)scan_vectors(p->entry, table, size, n, lanes));
            amm(acc, acc, p->entry, p->mod, p->k0, n, t);
            traced_op(tr, OP_SCAN);
        } else if (digit) {
            traced_reads(tr, 1);
            amm(acc, acc, table + (Py_ssize_t)digit * n, p->mod, p->k0, n, t);
            traced_op(tr, OP_DIRECT);
        }
    }
    amm(out, acc, p->one, p->mod, p->k0, n, t); /* leave Montgomery form */
    traced_op(tr, OP_CONVERT);
}

/* limb j of a little-endian number of nbytes bytes; the buffer has 8 bytes of zero padding */
static uint64_t limb(const unsigned char *padded, int j)
{
    const size_t bit = (size_t)j * RADIX;
    uint64_t word;
    memcpy(&word, padded + (bit >> 3), sizeof word);
    return (word >> (bit & 7)) & MASK52;
}

/* writes limbs (a number < 2^(8 nbytes)) as nbytes little-endian bytes */
static void store(unsigned char *bytes, Py_ssize_t nbytes, const uint64_t *limbs, int n)
{
    memset(bytes, 0, (size_t)nbytes);
    for (int j = 0; j < n; j++) {
        const size_t bit = (size_t)j * RADIX;
        const uint64_t v = limbs[j] << (bit & 7); /* < 2^56 */
        for (size_t k = 0; k < 8 && (bit >> 3) + k < (size_t)nbytes; k++)
            bytes[(bit >> 3) + k] |= (unsigned char)(v >> (8 * k));
    }
}

/* dst = numbers g .. g + 7 of src (count numbers of nbytes each; missing lanes 0), vertically */
MBX_TARGET static void load_lanes(__m512i *dst, const unsigned char *src, Py_ssize_t g,
                                  Py_ssize_t count, Py_ssize_t nbytes, int n,
                                  unsigned char *padded, uint64_t *lanes)
{
    for (int l = 0; l < LANES; l++) {
        memset(padded, 0, (size_t)nbytes + 8);
        if (g + l < count) memcpy(padded, src + (g + l) * nbytes, (size_t)nbytes);
        for (int j = 0; j < n; j++) lanes[(size_t)j * LANES + l] = limb(padded, j);
    }
    for (int j = 0; j < n; j++) dst[j] = _mm512_loadu_si512(lanes + (size_t)j * LANES);
}

/* lanes = src transposed: lanes[j * 8 + l] is limb j of lane l */
MBX_TARGET static void spill_lanes(uint64_t *lanes, const __m512i *src, int n)
{
    for (int j = 0; j < n; j++) _mm512_storeu_si512(lanes + (size_t)j * LANES, src[j]);
}

/* numbers g .. min(g + 8, count) - 1 of out (nbytes each) = the lanes of src */
MBX_TARGET static void store_lanes(unsigned char *out, const __m512i *src, Py_ssize_t g,
                                   Py_ssize_t count, Py_ssize_t nbytes, int n, uint64_t *lanes)
{
    spill_lanes(lanes, src, n);
    for (int l = 0; l < LANES && g + l < count; l++) {
        uint64_t limbs[MAX_LIMBS];
        for (int j = 0; j < n; j++) limbs[j] = lanes[(size_t)j * LANES + l];
        store(out + (g + l) * nbytes, nbytes, limbs, n);
    }
}

/* dst[j] = limb j of the nbytes-byte number src, in every lane */
MBX_TARGET static void broadcast(__m512i *dst, const unsigned char *src, Py_ssize_t nbytes, int n,
                                 unsigned char *padded)
{
    memset(padded, 0, (size_t)nbytes + 8);
    memcpy(padded, src, (size_t)nbytes);
    for (int j = 0; j < n; j++) dst[j] = _mm512_set1_epi64((long long)limb(padded, j));
}

/* bases: count numbers of nbytes each; out: the same layout.  scratch: see powmod(). */
MBX_TARGET static void run(Plan *p, unsigned char *out, const unsigned char *bases, Py_ssize_t count,
                           Py_ssize_t nbytes, const unsigned char *r2, unsigned char *padded,
                           uint64_t *lanes, __m512i *vectors)
{
    const int n = p->n;
    __m512i *base = vectors, *result = vectors + n, *r2v = vectors + 2 * n;
    p->one = vectors + 3 * n;
    p->acc = vectors + 4 * n;
    p->entry = vectors + 5 * n;
    p->t = vectors + 6 * n;            /* n + 1 */
    p->table = vectors + 7 * n + 1;    /* 2^w n */
    broadcast(r2v, r2, nbytes, n, padded);
    for (int j = 0; j < n; j++) p->one[j] = _mm512_setzero_si512();
    p->one[0] = _mm512_set1_epi64(1);
    p->r2 = r2v;
    for (Py_ssize_t g = 0; g < count; g += LANES) {
        load_lanes(base, bases, g, count, nbytes, n, padded, lanes);
        powmod8(p, result, base);
        store_lanes(out, result, g, count, nbytes, n, lanes);
    }
}

/* Montgomery form of count values (nbytes each): table[k] = value_k R mod M as n limbs. */
MBX_TARGET static void to_montgomery(uint64_t *table, const unsigned char *values, Py_ssize_t count,
                                     Py_ssize_t nbytes, int n, const uint64_t *mod, uint64_t k0,
                                     const unsigned char *r2, unsigned char *padded,
                                     uint64_t *lanes, __m512i *vectors)
{
    __m512i *x = vectors, *r2v = vectors + n, *t = vectors + 2 * n; /* t: n + 1 */
    broadcast(r2v, r2, nbytes, n, padded);
    for (Py_ssize_t g = 0; g < count; g += LANES) {
        load_lanes(x, values, g, count, nbytes, n, padded, lanes);
        amm(x, x, r2v, mod, k0, n, t);
        spill_lanes(lanes, x, n);
        for (int l = 0; l < LANES && g + l < count; l++)
            for (int j = 0; j < n; j++) table[(size_t)(g + l) * n + j] = lanes[(size_t)j * LANES + l];
    }
}

/* table[(v count + k) n ...] = values[v]^k R mod M (< 2M, n limbs) for k < count: the powers
 * 0 .. count - 1 of each value in Montgomery form, eight values at a time, count - 2 products
 * and one conversion each.  vectors: 4 n + 1. */
MBX_TARGET static void power_table(uint64_t *table, const unsigned char *values, Py_ssize_t nvalues,
                                   Py_ssize_t count, Py_ssize_t nbytes, int n, const uint64_t *mod,
                                   uint64_t k0, const unsigned char *r2, unsigned char *padded,
                                   uint64_t *lanes, __m512i *vectors)
{
    __m512i *x = vectors, *p = vectors + n, *r2v = vectors + 2 * n, *one_r = vectors + 3 * n;
    __m512i *t = vectors + 4 * n; /* n + 1 */
    broadcast(r2v, r2, nbytes, n, padded);
    for (int j = 0; j < n; j++) one_r[j] = _mm512_setzero_si512();
    one_r[0] = _mm512_set1_epi64(1);
    amm(one_r, one_r, r2v, mod, k0, n, t); /* R mod M: one in Montgomery form */
    for (Py_ssize_t g = 0; g < nvalues; g += LANES) {
        load_lanes(x, values, g, nvalues, nbytes, n, padded, lanes);
        amm(x, x, r2v, mod, k0, n, t);
        for (Py_ssize_t k = 0; k < count; k++) {
            const __m512i *v = k == 0 ? one_r : (k == 1 ? x : p);
            if (k == 2) ams(p, x, mod, k0, n, t);
            if (k > 2) amm(p, p, x, mod, k0, n, t);
            spill_lanes(lanes, v, n);
            for (int l = 0; l < LANES && g + l < nvalues; l++) {
                uint64_t *entry = table + ((size_t)(g + l) * (size_t)count + (size_t)k) * (size_t)n;
                for (int j = 0; j < n; j++) entry[j] = lanes[(size_t)j * LANES + l];
            }
        }
    }
}

/* Products along one schedule, eight at a time: for each value, with p its per_value table
 * positions, acc = T[p_0]; for k >= 1: square acc `squarings` times when k is a multiple of
 * blocks, then acc = acc T[p_k].  Lanes read different entries but do the same products.  sub = 0: each
 * lane's entry is gathered.  sub > 0 (a power of two): position k of the eight values lies in
 * one aligned run of sub entries, which is scanned whole (see scan_scalars). */
MBX_TARGET static void comb_products(unsigned char *out, Py_ssize_t count, Py_ssize_t nbytes,
                                     int n, const uint64_t *table, const uint32_t *positions,
                                     Py_ssize_t per_value, Py_ssize_t blocks, Py_ssize_t sub,
                                     Py_ssize_t squarings, const uint64_t *mod, uint64_t k0,
                                     uint64_t *lanes, __m512i *vectors, Trace *tr)
{
    __m512i *acc = vectors, *entry = vectors + n, *one = vectors + 2 * n;
    __m512i *t = vectors + 3 * n; /* n + 1 */
    const uint32_t low = (uint32_t)(sub - 1);
    for (int j = 0; j < n; j++) one[j] = _mm512_setzero_si512();
    one[0] = _mm512_set1_epi64(1);
    for (Py_ssize_t g = 0; g < count; g += LANES) {
        for (Py_ssize_t k = 0; k < per_value; k++) {
            long long index[LANES];
            __m512i *dst = k == 0 ? acc : entry;
            if (sub) {
                /* the run: position k of the group's first value without its low bits */
                const size_t first = positions[g * per_value + k] & ~low;
                const uint64_t *run = table + first * (size_t)n;
                for (int l = 0; l < LANES; l++)
                    index[l] = g + l < count ? (long long)(positions[(g + l) * per_value + k] & low)
                                             : 0;
                traced_reads(tr, (uint64_t)scan_scalars(dst, run, sub, n,
                                                        _mm512_loadu_si512(index)));
            } else {
                for (int l = 0; l < LANES; l++)
                    index[l] =
                        g + l < count ? (long long)positions[(g + l) * per_value + k] * n : 0;
                const __m512i vindex = _mm512_loadu_si512(index);
                for (int j = 0; j < n; j++)
                    dst[j] = _mm512_i64gather_epi64(vindex, (const void *)(table + j), 8);
                traced_reads(tr, 1);
            }
            if (k == 0) continue;
            if (k % blocks == 0)
                for (Py_ssize_t q = 0; q < squarings; q++) {
                    ams(acc, acc, mod, k0, n, t);
                    traced_op(tr, OP_SQUARE);
                }
            amm(acc, acc, entry, mod, k0, n, t);
            traced_op(tr, sub ? OP_SCAN : OP_GATHER);
        }
        amm(acc, acc, one, mod, k0, n, t);
        traced_op(tr, OP_CONVERT);
        store_lanes(out, acc, g, count, nbytes, n, lanes);
    }
}

/* bits pos .. pos + c - 1 (c <= 16) of the little-endian number e of ebytes bytes; zero beyond */
static uint32_t window_digit(const unsigned char *e, Py_ssize_t ebytes, Py_ssize_t pos, int c)
{
    const Py_ssize_t first = pos >> 3;
    uint32_t v = 0;
    for (int k = 0; k < 3 && first + k < ebytes; k++) v |= (uint32_t)e[first + k] << (8 * k);
    return (v >> (pos & 7)) & ((UINT32_C(1) << c) - 1);
}

/* Window sums of a multi-exponentiation (Pippenger's bucket method), eight windows at once.
 * bases: count numbers in Montgomery form (n limbs each); exponents: ebytes little-endian bytes
 * each, read in windows of c bits.  Lane l of a pass owns window w = first + l and its buckets
 * 1 .. 2^c - 1 (bucket 0 takes the products of zero digits and is never read): for every base,
 * each lane gathers its bucket at the base's digit, one vector product multiplies the base
 * (broadcast) into all eight, and they are scattered back.  Then, the same in every lane, the
 * running product over d = 2^c - 1 .. 1 gives S_w = prod_d bucket_d^d = prod_j b_j^digit_{j,w}.
 * out: the windows' S_w (nbytes each, at most M).  buckets: 8 2^c n limbs; vectors: 5 n + 1. */
MBX_TARGET static void multiexp_windows(unsigned char *out, const uint64_t *bases,
                                        Py_ssize_t count, const unsigned char *exps,
                                        Py_ssize_t ebytes,
                                        Py_ssize_t windows, int c, Py_ssize_t nbytes, int n,
                                        const uint64_t *mod, uint64_t k0, const __m512i *one_r,
                                        uint64_t *buckets, uint64_t *lanes, __m512i *vectors)
{
    __m512i *x = vectors, *b = vectors + n, *running = vectors + 2 * n, *one = vectors + 3 * n;
    __m512i *t = vectors + 4 * n; /* n + 1 */
    const Py_ssize_t size = (Py_ssize_t)1 << c, stride = size * n; /* one lane's buckets */
    for (int j = 0; j < n; j++) one[j] = _mm512_setzero_si512();
    one[0] = _mm512_set1_epi64(1);
    for (Py_ssize_t first = 0; first < windows; first += LANES) {
        /* every bucket of every lane starts at R mod M (one, in Montgomery form) */
        spill_lanes(lanes, one_r, n);
        for (int j = 0; j < n; j++) buckets[j] = lanes[(size_t)j * LANES];
        for (Py_ssize_t e = 1; e < LANES * size; e++)
            memcpy(buckets + e * n, buckets, sizeof(uint64_t) * (size_t)n);
        for (Py_ssize_t i = 0; i < count; i++) {
            long long index[LANES];
            uint32_t any = 0;
            for (int l = 0; l < LANES; l++) {
                const Py_ssize_t w = first + l;
                const uint32_t d = w < windows ? window_digit(exps + i * ebytes, ebytes, w * c, c)
                                               : 0;
                any |= d;
                index[l] = (long long)(l * stride + (Py_ssize_t)d * n);
            }
            if (!any) continue;
            const __m512i vindex = _mm512_loadu_si512(index);
            const uint64_t *base = bases + i * n;
            for (int j = 0; j < n; j++) {
                x[j] = _mm512_i64gather_epi64(vindex, (const void *)(buckets + j), 8);
                b[j] = _mm512_set1_epi64((long long)base[j]);
            }
            amm(x, x, b, mod, k0, n, t);
            for (int j = 0; j < n; j++)
                _mm512_i64scatter_epi64((void *)(buckets + j), vindex, x[j], 8);
        }
        /* running = prod_{d' >= d} bucket_d'; x (the sum) = prod_d running_d */
        for (Py_ssize_t d = size - 1; d >= 1; d--) {
            long long index[LANES];
            for (int l = 0; l < LANES; l++) index[l] = (long long)(l * stride + d * n);
            const __m512i vindex = _mm512_loadu_si512(index);
            __m512i *dst = d == size - 1 ? running : b;
            for (int j = 0; j < n; j++)
                dst[j] = _mm512_i64gather_epi64(vindex, (const void *)(buckets + j), 8);
            if (d == size - 1) {
                memcpy(x, running, sizeof(__m512i) * (size_t)n);
                continue;
            }
            amm(running, running, b, mod, k0, n, t);
            amm(x, x, running, mod, k0, n, t);
        }
        amm(x, x, one, mod, k0, n, t); /* leave Montgomery form */
        store_lanes(out, x, first, windows, nbytes, n, lanes);
    }
}

/* multiexp_windows for count bases of nbytes bytes each (< M); table: count n limbs, for their
 * Montgomery form; vectors: 7 n + 1. */
MBX_TARGET static void multiexp_run(unsigned char *out, const unsigned char *values,
                                    Py_ssize_t count, const unsigned char *exps, Py_ssize_t ebytes,
                                    Py_ssize_t windows, int c, Py_ssize_t nbytes, int n,
                                    const uint64_t *mod, uint64_t k0, const unsigned char *r2,
                                    uint64_t *table, uint64_t *buckets, unsigned char *padded,
                                    uint64_t *lanes, __m512i *vectors)
{
    __m512i *r2v = vectors, *one_r = vectors + n, *rest = vectors + 2 * n; /* rest: 5 n + 1 */
    to_montgomery(table, values, count, nbytes, n, mod, k0, r2, padded, lanes, rest);
    broadcast(r2v, r2, nbytes, n, padded);
    for (int j = 0; j < n; j++) one_r[j] = _mm512_setzero_si512();
    one_r[0] = _mm512_set1_epi64(1);
    amm(one_r, one_r, r2v, mod, k0, n, rest); /* R mod M: one in Montgomery form */
    multiexp_windows(out, table, count, exps, ebytes, windows, c, nbytes, n, mod, k0, one_r,
                     buckets, lanes, rest);
}

#endif /* MBX_X86 */

static PyObject *available(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
#ifdef MBX_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512ifma")) Py_RETURN_TRUE;
#endif
    Py_RETURN_FALSE;
}

#ifdef MBX_X86
/* limbs of the modulus; returns n, or 0 with an exception set */
static int modulus_limbs(const Py_buffer *modulus, uint64_t **mod)
{
    const Py_ssize_t nbytes = modulus->len;
    const int n = (int)((nbytes * 8 + 2 + RADIX - 1) / RADIX); /* 4 M < 2^(52 n) */
    if (nbytes == 0 || n > MAX_LIMBS || !(((const unsigned char *)modulus->buf)[0] & 1)) {
        PyErr_SetString(PyExc_ValueError, "bad modulus");
        return 0;
    }
    unsigned char *padded = calloc((size_t)nbytes + 8, 1);
    *mod = calloc((size_t)n, sizeof(uint64_t));
    if (!padded || !*mod) {
        free(padded);
        free(*mod);
        *mod = NULL;
        PyErr_NoMemory();
        return 0;
    }
    memcpy(padded, modulus->buf, (size_t)nbytes);
    for (int j = 0; j < n; j++) (*mod)[j] = limb(padded, j);
    free(padded);
    return n;
}

/* What a call computes in: a zero-padded copy of one number (nbytes + 8 bytes), the lanes'
 * limbs transposed (n x 8) and `vectors` 64-byte-aligned vectors of scratch. */
typedef struct {
    unsigned char *padded;
    uint64_t *lanes;
    void *scratch;
} Work;

static void work_free(Work *w)
{
    free(w->padded);
    free(w->lanes);
    free(w->scratch);
}

/* 1 with all of it allocated; else 0, nothing held and MemoryError set */
static int work_alloc(Work *w, Py_ssize_t nbytes, int n, size_t vectors)
{
    w->padded = calloc((size_t)nbytes + 8, 1);
    w->lanes = calloc((size_t)n * LANES, sizeof(uint64_t));
    w->scratch = aligned_alloc(64, vectors * 64);
    if (w->padded && w->lanes && w->scratch) return 1;
    work_free(w);
    PyErr_NoMemory();
    return 0;
}
#endif

/* powmod(bases, exponent, modulus, r2, k0, window, secret) -> bytes; see riskprop/core/modexp.py.
 * A secret exponent's bits all count (leading zero bytes too); a public one's from its top bit. */
static PyObject *powmod_call(PyObject *args, int traced)
{
    Py_buffer bases, exponent, modulus, r2;
    unsigned long long k0;
    int w, secret;
    if (!PyArg_ParseTuple(args, "y*y*y*y*Kip", &bases, &exponent, &modulus, &r2, &k0, &w, &secret))
        return NULL;
    PyObject *result = NULL;
    uint64_t *mod = NULL;
    Trace trace = {0}, *tr = traced ? &trace : NULL;
#ifdef MBX_X86
    const Py_ssize_t nbytes = modulus.len;
    const int n = modulus_limbs(&modulus, &mod);
    if (!n) goto done;
    if (bases.len % nbytes || r2.len != nbytes || w < 1 || w > MAX_WINDOW) {
        PyErr_SetString(PyExc_ValueError, "powmod: bad modulus, window or buffer lengths");
        goto done;
    }
    const Py_ssize_t count = bases.len / nbytes;
    result = PyBytes_FromStringAndSize(NULL, bases.len);
    if (!result) goto done;
    Work work;
    if (!work_alloc(&work, nbytes, n, (size_t)n * (7 + ((size_t)1 << w)) + 1)) {
        Py_CLEAR(result);
        goto done;
    }
    Plan plan = {.n = n, .w = w, .secret = secret, .k0 = k0, .mod = mod, .e = exponent.buf,
                 .trace = tr};
    plan.ebits = exponent.len * 8;
    while (!secret && plan.ebits > 0 && !exponent_bit(plan.e, plan.ebits - 1)) plan.ebits--;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    run(&plan, out, bases.buf, count, nbytes, r2.buf, work.padded, work.lanes, work.scratch);
    Py_END_ALLOW_THREADS
    work_free(&work);
#else
    (void)k0;
    (void)w;
    (void)secret;
    PyErr_SetString(PyExc_RuntimeError, "powmod: built without the AVX-512 IFMA kernel");
    goto done;
#endif
done:
    free(mod);
    PyBuffer_Release(&bases);
    PyBuffer_Release(&exponent);
    PyBuffer_Release(&modulus);
    PyBuffer_Release(&r2);
    return finish(result, tr);
}

static PyObject *powmod(PyObject *self, PyObject *args)
{
    (void)self;
    return powmod_call(args, 0);
}

static PyObject *powmod_traced(PyObject *self, PyObject *args)
{
    (void)self;
    return powmod_call(args, 1);
}

/* montgomery(values, modulus, r2, k0) -> bytes: n little-endian uint64 limbs per value */
static PyObject *montgomery(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer values, modulus, r2;
    unsigned long long k0;
    if (!PyArg_ParseTuple(args, "y*y*y*K", &values, &modulus, &r2, &k0)) return NULL;
    PyObject *result = NULL;
    uint64_t *mod = NULL;
#ifdef MBX_X86
    const Py_ssize_t nbytes = modulus.len;
    const int n = modulus_limbs(&modulus, &mod);
    if (!n) goto done;
    if (values.len % nbytes || r2.len != nbytes) {
        PyErr_SetString(PyExc_ValueError, "montgomery: bad buffer lengths");
        goto done;
    }
    const Py_ssize_t count = values.len / nbytes;
    result = PyBytes_FromStringAndSize(NULL, count * n * (Py_ssize_t)sizeof(uint64_t));
    if (!result) goto done;
    Work work;
    if (!work_alloc(&work, nbytes, n, (size_t)(3 * n + 1))) {
        Py_CLEAR(result);
        goto done;
    }
    uint64_t *table = (uint64_t *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    to_montgomery(table, values.buf, count, nbytes, n, mod, k0, r2.buf, work.padded, work.lanes,
                  work.scratch);
    Py_END_ALLOW_THREADS
    work_free(&work);
#else
    (void)k0;
    PyErr_SetString(PyExc_RuntimeError, "montgomery: built without the AVX-512 IFMA kernel");
    goto done;
#endif
done:
    free(mod);
    PyBuffer_Release(&values);
    PyBuffer_Release(&modulus);
    PyBuffer_Release(&r2);
    return result;
}

/* powers(values, modulus, r2, k0, count) -> bytes: for each value (len(modulus) bytes, < M) the
 * Montgomery forms of its powers 0 .. count - 1, n little-endian uint64 limbs each: a table for
 * comb() in which entry v count + d is values[v]^d. */
static PyObject *powers(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer values, modulus, r2;
    unsigned long long k0;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*y*y*Kn", &values, &modulus, &r2, &k0, &count)) return NULL;
    PyObject *result = NULL;
    uint64_t *mod = NULL;
#ifdef MBX_X86
    const Py_ssize_t nbytes = modulus.len;
    const int n = modulus_limbs(&modulus, &mod);
    if (!n) goto done;
    if (values.len % nbytes || r2.len != nbytes || count < 1 || count > (1 << 16)) {
        PyErr_SetString(PyExc_ValueError, "powers: bad buffer lengths or count");
        goto done;
    }
    const Py_ssize_t nvalues = values.len / nbytes;
    if (nvalues > PY_SSIZE_T_MAX / count / n / (Py_ssize_t)sizeof(uint64_t)) {
        PyErr_SetString(PyExc_OverflowError, "powers: table too large");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, nvalues * count * n * (Py_ssize_t)sizeof(uint64_t));
    if (!result) goto done;
    Work work;
    if (!work_alloc(&work, nbytes, n, (size_t)(5 * n + 1))) {
        Py_CLEAR(result);
        goto done;
    }
    uint64_t *table = (uint64_t *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    power_table(table, values.buf, nvalues, count, nbytes, n, mod, k0, r2.buf, work.padded,
                work.lanes, work.scratch);
    Py_END_ALLOW_THREADS
    work_free(&work);
#else
    (void)k0;
    (void)count;
    PyErr_SetString(PyExc_RuntimeError, "powers: built without the AVX-512 IFMA kernel");
    goto done;
#endif
done:
    free(mod);
    PyBuffer_Release(&values);
    PyBuffer_Release(&modulus);
    PyBuffer_Release(&r2);
    return result;
}

/* comb(table, positions, per_value, blocks, modulus, k0, subtable=0, squarings=1) -> bytes:
 * len(positions) / (4 per_value) products (len(modulus) little-endian bytes each), at most M;
 * see modexp.py.  subtable > 0: position k of every value must lie in the same aligned run of
 * subtable entries. */
static PyObject *comb_call(PyObject *args, int traced)
{
    Py_buffer table, positions, modulus;
    Py_ssize_t per_value, blocks, sub = 0, squarings = 1;
    unsigned long long k0;
    if (!PyArg_ParseTuple(args, "y*y*nny*K|nn", &table, &positions, &per_value, &blocks, &modulus,
                          &k0, &sub, &squarings))
        return NULL;
    PyObject *result = NULL;
    uint64_t *mod = NULL;
    Trace trace = {0}, *tr = traced ? &trace : NULL;
#ifdef MBX_X86
    const Py_ssize_t nbytes = modulus.len;
    const int n = modulus_limbs(&modulus, &mod);
    if (!n) goto done;
    const Py_ssize_t entry = n * (Py_ssize_t)sizeof(uint64_t);
    if (per_value < 1 || blocks < 1 || squarings < 0 || squarings > 64 ||
        positions.len % (4 * per_value) || table.len % entry || table.len == 0) {
        PyErr_SetString(PyExc_ValueError, "comb: bad table, positions or schedule");
        goto done;
    }
    const Py_ssize_t count = positions.len / (4 * per_value), entries = table.len / entry;
    if (sub < 0 || (sub & (sub - 1)) || sub > entries || (sub && entries % sub)) {
        PyErr_SetString(PyExc_ValueError, "comb: the sub-table size must divide the table");
        goto done;
    }
    const uint32_t *pos = positions.buf, high = ~(uint32_t)(sub - 1);
    for (Py_ssize_t i = 0; i < count * per_value; i++) {
        if ((Py_ssize_t)pos[i] >= entries) {
            PyErr_SetString(PyExc_ValueError, "comb: position outside the table");
            goto done;
        }
        if (sub && (pos[i] ^ pos[i % per_value]) & high) {
            PyErr_SetString(PyExc_ValueError, "comb: a position outside its step's sub-table");
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, count * nbytes);
    if (!result) goto done;
    Work work;
    if (!work_alloc(&work, nbytes, n, (size_t)(4 * n + 1))) {
        Py_CLEAR(result);
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    comb_products(out, count, nbytes, n, table.buf, pos, per_value, blocks, sub, squarings, mod,
                  k0, work.lanes, work.scratch, tr);
    Py_END_ALLOW_THREADS
    work_free(&work);
#else
    (void)k0;
    (void)per_value;
    (void)blocks;
    (void)sub;
    (void)squarings;
    PyErr_SetString(PyExc_RuntimeError, "comb: built without the AVX-512 IFMA kernel");
    goto done;
#endif
done:
    free(mod);
    PyBuffer_Release(&table);
    PyBuffer_Release(&positions);
    PyBuffer_Release(&modulus);
    return finish(result, tr);
}

static PyObject *comb(PyObject *self, PyObject *args)
{
    (void)self;
    return comb_call(args, 0);
}

static PyObject *comb_traced(PyObject *self, PyObject *args)
{
    (void)self;
    return comb_call(args, 1);
}

/* multiexp(bases, exponents, bits, modulus, r2, k0, window) -> bytes: the window sums of
 * prod_j bases[j]^exponents[j] (public exponents of at most bits bits, ceil(bits / 8)
 * little-endian bytes each) for windows of window bits, lowest first: ceil(bits / window)
 * numbers of len(modulus) bytes, at most M.  See product_of_powers in modexp.py. */
static PyObject *multiexp(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer bases, exponents, modulus, r2;
    Py_ssize_t bits;
    unsigned long long k0;
    int c;
    if (!PyArg_ParseTuple(args, "y*y*ny*y*Ki", &bases, &exponents, &bits, &modulus, &r2, &k0, &c))
        return NULL;
    PyObject *result = NULL;
    uint64_t *mod = NULL;
#ifdef MBX_X86
    const Py_ssize_t nbytes = modulus.len;
    const int n = modulus_limbs(&modulus, &mod);
    if (!n) goto done;
    const Py_ssize_t ebytes = (bits + 7) / 8;
    if (bases.len % nbytes || r2.len != nbytes || bits < 1 || c < 1 || c > MAX_MULTI_WINDOW ||
        exponents.len != bases.len / nbytes * ebytes) {
        PyErr_SetString(PyExc_ValueError, "multiexp: bad modulus, window or buffer lengths");
        goto done;
    }
    const Py_ssize_t count = bases.len / nbytes, windows = (bits + c - 1) / c;
    result = PyBytes_FromStringAndSize(NULL, windows * nbytes);
    if (!result) goto done;
    Work work;
    if (!work_alloc(&work, nbytes, n, (size_t)(7 * n + 1))) {
        Py_CLEAR(result);
        goto done;
    }
    uint64_t *table = malloc(((size_t)count + 1) * (size_t)n * sizeof(uint64_t));
    uint64_t *buckets = malloc(((size_t)LANES << c) * (size_t)n * sizeof(uint64_t));
    if (table && buckets) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        multiexp_run(out, bases.buf, count, exponents.buf, ebytes, windows, c, nbytes, n, mod, k0,
                     r2.buf, table, buckets, work.padded, work.lanes, work.scratch);
        Py_END_ALLOW_THREADS
    } else {
        Py_CLEAR(result);
        PyErr_NoMemory();
    }
    free(table);
    free(buckets);
    work_free(&work);
#else
    (void)bits;
    (void)k0;
    (void)c;
    PyErr_SetString(PyExc_RuntimeError, "multiexp: built without the AVX-512 IFMA kernel");
    goto done;
#endif
done:
    free(mod);
    PyBuffer_Release(&bases);
    PyBuffer_Release(&exponents);
    PyBuffer_Release(&modulus);
    PyBuffer_Release(&r2);
    return result;
}

static PyMethodDef methods[] = {
    {"available", available, METH_NOARGS, "True if this CPU runs the AVX-512 IFMA kernel."},
    {"powmod", powmod, METH_VARARGS, "Eight-lane Montgomery exponentiation (see modexp.py)."},
    {"montgomery", montgomery, METH_VARARGS, "Values in Montgomery form, as limbs (modexp.py)."},
    {"powers", powers, METH_VARARGS, "Tables of powers in Montgomery form (modexp.py)."},
    {"powmod_traced", powmod_traced, METH_VARARGS, "powmod, and its operations (for tests)."},
    {"comb", comb, METH_VARARGS, "Eight-lane products of table entries (see modexp.py)."},
    {"comb_traced", comb_traced, METH_VARARGS, "comb, and its operations (for tests)."},
    {"multiexp", multiexp, METH_VARARGS, "Window sums of a multi-exponentiation (modexp.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "riskprop.core._mbx",
    .m_doc = "AVX-512 IFMA multi-buffer powmod.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__mbx(void) { return PyModule_Create(&module); }
