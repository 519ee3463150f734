/* Constant-time modular exponentiation over GMP's mpn layer, for CPUs without AVX-512 IFMA.
 *
 * b^e mod M for many bases, one secret exponent e and one odd modulus M, with 64-bit limbs:
 *
 *     R = 2^(64 n) > M,  k0 = -M^-1 mod 2^64
 *     redc(T) = (T + q M) / R  for the q < R that makes the division exact (T < R^2)
 *
 * Almost-Montgomery: every value is kept below R, not below M.  For a, b < R the product
 * T = a b < R^2 and redc(T) < (R^2 + R M) / R = R + M; when it reaches R (the carry out of
 * the top limb) M is subtracted, always with mpn_cnd_sub_n, so the result is again below R and
 * congruent.  The caller reduces the final value mod M.
 *
 * Exponentiation is left-to-right with a fixed window of w bits over the exponent read as
 * 8 * bytes bits (leading zeros included) and a table of b^k R for k < 2^w.  Every window
 * squares w times, reads its factor with mpn_sec_tabselect (which reads the whole table) and
 * multiplies, also by b^0 R: the operations, their operands' sizes and the memory they touch
 * depend only on the exponent's length in bytes, never on its bits.
 *
 * Why not mpz_powm_sec: GMP's own constant-time exponentiation squares with a full
 * multiplication (mpn_mul_basecase) in builds that choose code by CPU at run time (the "fat"
 * builds that Python wheels bundle, gmpy2's among them), about twice the work of a squaring.
 * Here squaring is done as a squaring, from the same side-channel silent building blocks GMP's
 * mpn_sec_powm reduces with (mpn_mul_1, mpn_addmul_1, mpn_add_n and mpn_lshift: no branch and
 * no address depends on the limbs' values), plus mpn_cnd_sub_n and mpn_sec_tabselect, so its
 * speed does not depend on how the system's GMP was built (mpn_sec_sqr is a basecase squaring
 * in some builds, 22 % less time than this one at 32 limbs, and a multiplication in others,
 * 19 % more; a whole exponentiation here is 3 % slower than with the former).  Only
 * documented mpn functions are used, declared here (the module needs GMP's library, not its
 * header) and linked from the system's libgmp.
 *
 * For tests, powmod_traced also returns the sequence of operations, one code per Montgomery
 * product, and the number of table reads; the arithmetic is the same code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if ULONG_MAX != 0xffffffffffffffffUL || !defined(__BYTE_ORDER__) || \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "riskprop.core._mpn needs 64-bit unsigned long limbs and a little-endian CPU"
#endif

typedef unsigned long mp_limb_t;
typedef long mp_size_t;

/* GMP's documented mpn functions under their exported names (gmp.h maps mpn_x to __gmpn_x). */
extern mp_limb_t __gmpn_mul_1(mp_limb_t *, const mp_limb_t *, mp_size_t, mp_limb_t);
extern mp_limb_t __gmpn_addmul_1(mp_limb_t *, const mp_limb_t *, mp_size_t, mp_limb_t);
extern mp_limb_t __gmpn_add_n(mp_limb_t *, const mp_limb_t *, const mp_limb_t *, mp_size_t);
extern mp_limb_t __gmpn_lshift(mp_limb_t *, const mp_limb_t *, mp_size_t, unsigned int);
extern mp_limb_t __gmpn_cnd_sub_n(mp_limb_t, mp_limb_t *, const mp_limb_t *, const mp_limb_t *,
                                  mp_size_t);
extern void __gmpn_sec_tabselect(mp_limb_t *, const mp_limb_t *, mp_size_t, mp_size_t, mp_size_t);
extern const char *const __gmp_version;

#define MAX_WINDOW 8
#define MAX_LIMBS 1024

#include "_trace.h"

typedef struct {
    mp_size_t n;
    const mp_limb_t *mod;
    mp_limb_t k0;
    mp_limb_t *t;    /* 2n limbs: products before reduction */
    mp_limb_t *diag; /* 2n limbs: the squares of a squaring's limbs */
} Ctx;

/* rp[0..n) = redc(up[0..2n)) below R; up is overwritten (GMP's redc_1 algorithm, then a
 * constant-time subtraction of M when the sum carried out of R). */
static void redc(const Ctx *c, mp_limb_t *rp, mp_limb_t *up)
{
    const mp_size_t n = c->n;
    for (mp_size_t j = 0; j < n; j++) {
        const mp_limb_t q = up[0] * c->k0; /* up[0] + q M[0] = 0 mod 2^64 */
        up[0] = __gmpn_addmul_1(up, c->mod, n, q);
        up++;
    }
    const mp_limb_t carry = __gmpn_add_n(rp, up, up - n, n);
    __gmpn_cnd_sub_n(carry, rp, rp, c->mod, n);
}

/* rp = redc(a b); rp may alias a or b. */
static void mont_mul(const Ctx *c, mp_limb_t *rp, const mp_limb_t *a, const mp_limb_t *b)
{
    const mp_size_t n = c->n;
    mp_limb_t *t = c->t;
    t[n] = __gmpn_mul_1(t, a, n, b[0]);
    for (mp_size_t i = 1; i < n; i++) t[n + i] = __gmpn_addmul_1(t + i, a, n, b[i]);
    redc(c, rp, t);
}

/* rp = redc(a^2); rp may alias a.  a^2 = 2 sum_{i<j} a_i a_j B^(i+j) + sum_i a_i^2 B^(2i). */
static void mont_sqr(const Ctx *c, mp_limb_t *rp, const mp_limb_t *a)
{
    const mp_size_t n = c->n;
    mp_limb_t *t = c->t, *d = c->diag;
    if (n == 1) {
        mont_mul(c, rp, a, a);
        return;
    }
    t[0] = 0;
    t[n] = __gmpn_mul_1(t + 1, a + 1, n - 1, a[0]);
    for (mp_size_t i = 1; i < n - 1; i++) t[n + i] = __gmpn_addmul_1(t + 2 * i + 1, a + i + 1, n - 1 - i, a[i]);
    t[2 * n - 1] = __gmpn_lshift(t + 1, t + 1, 2 * n - 2, 1);
    for (mp_size_t i = 0; i < n; i++) {
        const unsigned __int128 s = (unsigned __int128)a[i] * a[i];
        d[2 * i] = (mp_limb_t)s;
        d[2 * i + 1] = (mp_limb_t)(s >> 64);
    }
    __gmpn_add_n(t, t, d, 2 * n); /* no carry out: a^2 < B^(2n) */
    redc(c, rp, t);
}

/* Bits [pos, pos + w) of the exponent (little-endian bytes; bits past its end read as 0).  The
 * positions are public (they depend only on the length); the value is used only as the index
 * of a whole-table read. */
static mp_size_t window_digit(const unsigned char *e, size_t bits, size_t pos, int w)
{
    mp_size_t value = 0;
    for (int k = 0; k < w; k++) {
        const size_t bit = pos + (size_t)k;
        const mp_size_t b = bit < bits ? (e[bit >> 3] >> (bit & 7)) & 1 : 0;
        value |= b << k;
    }
    return value;
}

typedef struct {
    Ctx ctx;
    int w;
    const unsigned char *e;
    size_t ebits;
    const mp_limb_t *r2; /* R^2 mod M */
    mp_limb_t *table;    /* 2^w entries of n limbs */
    mp_limb_t *acc, *factor, *base, *one;
    Trace *trace;
} Plan;

static void powmod_one(Plan *p, mp_limb_t *out, const mp_limb_t *b)
{
    const Ctx *c = &p->ctx;
    const mp_size_t n = c->n;
    const mp_size_t entries = (mp_size_t)1 << p->w;
    mp_limb_t *table = p->table;
    /* table[0] = R mod M (1 in Montgomery form), table[1] = b R, table[k] = table[k-1] b R */
    memset(p->one, 0, (size_t)n * sizeof(mp_limb_t));
    p->one[0] = 1;
    mont_mul(c, table, p->r2, p->one);
    traced_op(p->trace, OP_CONVERT);
    mont_mul(c, p->base, b, p->r2);
    traced_op(p->trace, OP_CONVERT);
    memcpy(table + n, p->base, (size_t)n * sizeof(mp_limb_t));
    for (mp_size_t k = 2; k < entries; k++) {
        mont_mul(c, table + k * n, table + (k - 1) * n, p->base);
        traced_op(p->trace, OP_TABLE);
    }
    const size_t windows = (p->ebits + (size_t)p->w - 1) / (size_t)p->w;
    /* the top window starts the accumulator (a read like any other) */
    size_t pos = (windows - 1) * (size_t)p->w;
    __gmpn_sec_tabselect(p->acc, table, n, entries, window_digit(p->e, p->ebits, pos, p->w));
    traced_reads(p->trace, (uint64_t)entries);
    for (size_t win = windows - 1; win-- > 0;) {
        for (int s = 0; s < p->w; s++) {
            mont_sqr(c, p->acc, p->acc);
            traced_op(p->trace, OP_SQUARE);
        }
        pos = win * (size_t)p->w;
        __gmpn_sec_tabselect(p->factor, table, n, entries, window_digit(p->e, p->ebits, pos, p->w));
        traced_reads(p->trace, (uint64_t)entries);
        mont_mul(c, p->acc, p->acc, p->factor);
        traced_op(p->trace, OP_SCAN);
    }
    /* out of Montgomery form: redc(acc) <= M (the caller maps M to 0) */
    memset(p->one, 0, (size_t)n * sizeof(mp_limb_t));
    p->one[0] = 1;
    mont_mul(c, out, p->acc, p->one);
    traced_op(p->trace, OP_CONVERT);
}

static PyObject *powmod_call(PyObject *args, int traced)
{
    Py_buffer bases, exponent, modulus, r2;
    unsigned long long k0;
    int w;
    if (!PyArg_ParseTuple(args, "y*y*y*y*Ki", &bases, &exponent, &modulus, &r2, &k0, &w))
        return NULL;
    PyObject *result = NULL;
    Trace trace = {0}, *tr = traced ? &trace : NULL;
    const Py_ssize_t nbytes = modulus.len;
    const mp_size_t n = (mp_size_t)(nbytes / 8);
    if (nbytes % 8 || n < 1 || n > MAX_LIMBS || !(((const unsigned char *)modulus.buf)[0] & 1) ||
        bases.len % nbytes || r2.len != nbytes || exponent.len < 1 || w < 1 || w > MAX_WINDOW) {
        PyErr_SetString(PyExc_ValueError,
                        "powmod: the modulus must be odd and fill whole 8-byte limbs, the "
                        "bases and R^2 be limbs of its length, the exponent non-empty and the "
                        "window 1 to 8");
        goto done;
    }
    const Py_ssize_t count = bases.len / nbytes;
    result = PyBytes_FromStringAndSize(NULL, bases.len);
    if (!result) goto done;
    const size_t limb = sizeof(mp_limb_t);
    mp_limb_t *mem = malloc(limb * (size_t)n * (((size_t)1 << w) + 12));
    if (!mem) {
        Py_CLEAR(result);
        PyErr_NoMemory();
        goto done;
    }
    Plan p = {.w = w, .e = exponent.buf, .ebits = (size_t)exponent.len * 8, .trace = tr};
    p.ctx = (Ctx){.n = n, .mod = modulus.buf, .k0 = (mp_limb_t)k0, .t = mem, .diag = mem + 2 * n};
    p.acc = mem + 4 * n;
    p.factor = mem + 5 * n;
    p.base = mem + 6 * n;
    p.one = mem + 7 * n;
    mp_limb_t *in = mem + 8 * n, *outl = mem + 9 * n, *r2l = mem + 10 * n;
    p.table = mem + 12 * n;
    memcpy(r2l, r2.buf, (size_t)nbytes);
    p.r2 = r2l;
    /* the modulus buffer is only read: it must stay aligned for the limbs, so copy it too */
    mp_limb_t *modl = malloc((size_t)nbytes);
    if (!modl) {
        free(mem);
        Py_CLEAR(result);
        PyErr_NoMemory();
        goto done;
    }
    memcpy(modl, modulus.buf, (size_t)nbytes);
    p.ctx.mod = modl;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *src = bases.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        memcpy(in, src + i * nbytes, (size_t)nbytes);
        powmod_one(&p, outl, in);
        memcpy(out + i * nbytes, outl, (size_t)nbytes);
    }
    Py_END_ALLOW_THREADS
    free(modl);
    free(mem);
done:
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

static PyObject *gmp_version(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(__gmp_version);
}

static PyMethodDef methods[] = {
    {"powmod", powmod, METH_VARARGS,
     "powmod(bases, exponent, modulus, r2, k0, window) -> bytes: b**e mod M for each base, "
     "constant time in the exponent's bits"},
    {"powmod_traced", powmod_traced, METH_VARARGS,
     "powmod_traced(...) -> (bytes, operations, table reads): powmod with its operations"},
    {"gmp_version", gmp_version, METH_NOARGS, "The linked GMP's version."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mpn",
    "Constant-time modular exponentiation over GMP's mpn functions (see _mpn.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__mpn(void) { return PyModule_Create(&module); }
