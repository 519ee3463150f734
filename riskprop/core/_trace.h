/* Operation traces of the native modules (_mbx.c, _mpn.c), for tests: a traced call runs the same
 * arithmetic and also returns one code per Montgomery product and the number of table entries it
 * read, so that tests can compare the sequences of secret exponents of one length.  Needs
 * <Python.h>, <stdint.h> and <stdlib.h> before it. */
#ifndef RISKPROP_TRACE_H
#define RISKPROP_TRACE_H

/* Operation codes of a trace */
#define OP_TABLE 'T'   /* a product that builds the window table */
#define OP_SQUARE 'S'  /* a squaring of the accumulator */
#define OP_DIRECT 'M'  /* a product by a table entry read at the digit's index */
#define OP_SCAN 'C'    /* a product by a table entry found by a scan of the (sub-)table */
#define OP_GATHER 'G'  /* a product by table entries gathered at each lane's position */
#define OP_CONVERT 'X' /* into or out of Montgomery form */

/* What a traced call did, in order (NULL when not traced). */
typedef struct {
    unsigned char *ops; /* one operation code per Montgomery product */
    size_t len, cap;
    uint64_t reads;     /* table entries read (per lane) */
    int failed;         /* out of memory while tracing */
} Trace;

static void traced_op(Trace *tr, unsigned char op)
{
    if (!tr || tr->failed) return;
    if (tr->len == tr->cap) {
        const size_t cap = tr->cap ? 2 * tr->cap : 4096;
        unsigned char *ops = realloc(tr->ops, cap);
        if (!ops) {
            tr->failed = 1;
            return;
        }
        tr->ops = ops;
        tr->cap = cap;
    }
    tr->ops[tr->len++] = op;
}

static void traced_reads(Trace *tr, uint64_t entries)
{
    if (tr) tr->reads += entries;
}

/* result alone, or (result, operation codes, entries read) for a traced call; frees the trace */
static PyObject *finish(PyObject *result, Trace *tr)
{
    PyObject *out = result;
    if (result && tr && tr->failed) {
        Py_CLEAR(result);
        out = PyErr_NoMemory();
    } else if (result && tr) {
        out = Py_BuildValue("(Ny#K)", result, (const char *)tr->ops, (Py_ssize_t)tr->len,
                            (unsigned long long)tr->reads);
    }
    if (tr) free(tr->ops);
    return out;
}

#endif
