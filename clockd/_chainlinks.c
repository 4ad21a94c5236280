/* The punch chain's links for a batch of rows, in one C loop (docs/integrity.md).

   link[i] = sha256(link[i - 1] || heads[i] || tails[i]), link[-1] being the chain's last hash,
   each of heads and tails bytes or str (hashed as UTF-8).
   This is clockd.ledger.chain_links_python, the definition, without the interpreter around
   each row: a sha256 call from Python costs several times the hash itself (two hash contexts
   allocated per call, the concatenation, the digest object), and a full poll makes one per
   punch. The hashes run without the GIL, so terminals polled in parallel hash in parallel.
   The build makes this module optional: without a compiler or OpenSSL's headers, clockd
   uses the Python definition, and tests/test_chain_links.py holds the two to equal output.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>

#define LINK_SIZE 32

static const EVP_MD *sha256_method;

typedef struct {
    const char *data;
    Py_ssize_t size;
} Part;

/* The bytes of each item of `list`: bytes as they are, str as UTF-8 (for the ASCII text of a
   punch's time, its own buffer: no copy). Each item is held while the GIL is released. */
static int
collect(PyObject *list, Py_ssize_t count, Part *parts, PyObject **held, const char *name)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (PyBytes_CheckExact(item)) {
            parts[i].data = PyBytes_AS_STRING(item);
            parts[i].size = PyBytes_GET_SIZE(item);
        }
        else if (PyUnicode_CheckExact(item)) {
            parts[i].data = PyUnicode_AsUTF8AndSize(item, &parts[i].size);
            if (parts[i].data == NULL) {
                return -1; /* a lone surrogate: no UTF-8 for it */
            }
        }
        else {
            PyErr_Format(PyExc_TypeError, "chain_links: %s[%zd] is neither bytes nor str", name,
                         i);
            return -1;
        }
        Py_INCREF(item);
        held[i] = item;
    }
    return 0;
}

static PyObject *
chain_links(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "chain_links(previous, heads, tails)");
        return NULL;
    }
    PyObject *previous = args[0], *heads = args[1], *tails = args[2];
    if (!PyBytes_CheckExact(previous) || PyBytes_GET_SIZE(previous) != LINK_SIZE) {
        PyErr_SetString(PyExc_ValueError, "chain_links: previous must be a 32-byte hash");
        return NULL;
    }
    if (!PyList_CheckExact(heads) || !PyList_CheckExact(tails)) {
        PyErr_SetString(PyExc_TypeError, "chain_links: heads and tails must be lists");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(heads);
    if (PyList_GET_SIZE(tails) != count) {
        PyErr_SetString(PyExc_ValueError, "chain_links: heads and tails differ in length");
        return NULL;
    }
    PyObject *result = NULL;
    Part *parts = PyMem_Calloc(2 * (size_t)count + 1, sizeof(Part));
    PyObject **held = PyMem_Calloc(2 * (size_t)count + 1, sizeof(PyObject *));
    unsigned char *links = PyMem_Malloc((size_t)count * LINK_SIZE + 1);
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    if (parts == NULL || held == NULL || links == NULL || context == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (collect(heads, count, parts, held, "heads") < 0
        || collect(tails, count, parts + count, held + count, "tails") < 0) {
        goto done;
    }
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *last = (const unsigned char *)PyBytes_AS_STRING(previous);
    for (Py_ssize_t i = 0; ok && i < count; i++) {
        unsigned char *link = links + i * LINK_SIZE;
        unsigned int size = 0;
        ok = EVP_DigestInit_ex(context, sha256_method, NULL)
             && EVP_DigestUpdate(context, last, LINK_SIZE)
             && EVP_DigestUpdate(context, parts[i].data, (size_t)parts[i].size)
             && EVP_DigestUpdate(context, parts[count + i].data, (size_t)parts[count + i].size)
             && EVP_DigestFinal_ex(context, link, &size) && size == LINK_SIZE;
        last = link;
    }
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "chain_links: OpenSSL's sha256 failed");
        goto done;
    }
    result = PyList_New(count);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        /* bytearray: what sqlite3 binds without its adapter lookup (store/punches.py) */
        PyObject *link = PyByteArray_FromStringAndSize((const char *)links + i * LINK_SIZE,
                                                       LINK_SIZE);
        if (link == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, link);
    }
done:
    if (held != NULL) {
        for (Py_ssize_t i = 0; i < 2 * count; i++) {
            Py_XDECREF(held[i]);
        }
    }
    EVP_MD_CTX_free(context);
    PyMem_Free(links);
    PyMem_Free(held);
    PyMem_Free(parts);
    return result;
}

static PyMethodDef methods[] = {
    {"chain_links", (PyCFunction)(void (*)(void))chain_links, METH_FASTCALL,
     "chain_links(previous, heads, tails) -> list of bytearray: "
     "link[i] = sha256(link[i-1] || heads[i] || tails[i])"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_chainlinks", "The punch chain's links in one C loop.", -1, methods,
};

PyMODINIT_FUNC
PyInit__chainlinks(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    /* Fetched once: OpenSSL 3 looks the implementation up on every init given EVP_sha256(). */
    sha256_method = EVP_MD_fetch(NULL, "SHA256", NULL);
#else
    sha256_method = EVP_sha256();
#endif
    if (sha256_method == NULL) {
        PyErr_SetString(PyExc_ImportError, "_chainlinks: OpenSSL has no sha256");
        return NULL;
    }
    return PyModule_Create(&module);
}
