/* The punch chain's links for a batch of rows, in one C loop (docs/integrity.md).

   link[i] = sha256(link[i - 1] || heads[i] || tails[keys[i]]), link[-1] being the chain's
   last hash; heads and tails are bytes or str (hashed as UTF-8), and `tails` is anything
   subscriptable (the store passes a dict that builds a missing tail itself).
   This is clockd.ledger.chain_links_python, the definition, without the interpreter around
   each row: a sha256 call from Python costs several times the hash itself (two hash contexts
   allocated per call, the concatenation, the digest object), and a full poll makes one per
   punch. The hashes run without the GIL, so terminals polled in parallel hash in parallel.
   The build makes this module optional: without a compiler or OpenSSL's headers, clockd
   uses the Python definition, and tests/test_chain_links.py holds the two to equal output.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <openssl/evp.h>

#define LINK_SIZE 32
#define JOINED 512 /* inputs up to this size are hashed in one update, from one buffer */

static const EVP_MD *sha256_method;

typedef struct {
    const char *data;
    Py_ssize_t size;
} Part;

/* The bytes of `item`: bytes as they are, str as UTF-8 (for the ASCII text of a punch's time,
   its own buffer: no copy). */
static int
part_of(PyObject *item, Part *part, const char *name, Py_ssize_t index)
{
    if (PyBytes_CheckExact(item)) {
        part->data = PyBytes_AS_STRING(item);
        part->size = PyBytes_GET_SIZE(item);
        return 0;
    }
    if (PyUnicode_CheckExact(item)) {
        part->data = PyUnicode_AsUTF8AndSize(item, &part->size);
        return part->data == NULL ? -1 : 0; /* a lone surrogate has no UTF-8 */
    }
    PyErr_Format(PyExc_TypeError, "chain_links: %s[%zd] is neither bytes nor str", name, index);
    return -1;
}

/* Each row's head and tail, every object held (a new reference) while the GIL is released. */
static int
collect(PyObject *heads, PyObject *keys, PyObject *tails, Py_ssize_t count, Part *parts,
        PyObject **held)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *head = PyList_GET_ITEM(heads, i);
        Py_INCREF(head);
        held[2 * i] = head;
        if (part_of(head, &parts[2 * i], "heads", i) < 0) {
            return -1;
        }
        PyObject *tail = PyObject_GetItem(tails, PyList_GET_ITEM(keys, i));
        if (tail == NULL) {
            return -1;
        }
        held[2 * i + 1] = tail;
        if (part_of(tail, &parts[2 * i + 1], "tails", i) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
hash_link(EVP_MD_CTX *context, const unsigned char *last, const Part *head, const Part *tail,
          unsigned char *link)
{
    unsigned int size = 0;
    size_t total = LINK_SIZE + (size_t)head->size + (size_t)tail->size;
    if (!EVP_DigestInit_ex(context, sha256_method, NULL)) {
        return 0;
    }
    if (total <= JOINED) {
        unsigned char joined[JOINED];
        memcpy(joined, last, LINK_SIZE);
        memcpy(joined + LINK_SIZE, head->data, (size_t)head->size);
        memcpy(joined + LINK_SIZE + head->size, tail->data, (size_t)tail->size);
        if (!EVP_DigestUpdate(context, joined, total)) {
            return 0;
        }
    }
    else if (!EVP_DigestUpdate(context, last, LINK_SIZE)
             || !EVP_DigestUpdate(context, head->data, (size_t)head->size)
             || !EVP_DigestUpdate(context, tail->data, (size_t)tail->size)) {
        return 0;
    }
    return EVP_DigestFinal_ex(context, link, &size) && size == LINK_SIZE;
}

static PyObject *
chain_links(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "chain_links(previous, heads, keys, tails)");
        return NULL;
    }
    PyObject *previous = args[0], *heads = args[1], *keys = args[2], *tails = args[3];
    if (!PyBytes_CheckExact(previous) || PyBytes_GET_SIZE(previous) != LINK_SIZE) {
        PyErr_SetString(PyExc_ValueError, "chain_links: previous must be a 32-byte hash");
        return NULL;
    }
    if (!PyList_CheckExact(heads) || !PyList_CheckExact(keys)) {
        PyErr_SetString(PyExc_TypeError, "chain_links: heads and keys must be lists");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(heads);
    if (PyList_GET_SIZE(keys) != count) {
        PyErr_SetString(PyExc_ValueError, "chain_links: heads and keys differ in length");
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
    if (collect(heads, keys, tails, count, parts, held) < 0) {
        goto done;
    }
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *last = (const unsigned char *)PyBytes_AS_STRING(previous);
    for (Py_ssize_t i = 0; ok && i < count; i++) {
        ok = hash_link(context, last, &parts[2 * i], &parts[2 * i + 1], links + i * LINK_SIZE);
        last = links + i * LINK_SIZE;
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
     "chain_links(previous, heads, keys, tails) -> list of bytearray: "
     "link[i] = sha256(link[i-1] || heads[i] || tails[keys[i]])"},
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
