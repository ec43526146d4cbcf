/*
 * mailmaps._lmdbread: the hot path of lock-free lmdb: lookups, in C.
 *
 * A Reader opens an LMDB file the way Postfix does (MDB_NOSUBDIR | MDB_NOLOCK, read-only),
 * keeps one read transaction, and answers ASCII keys: optional ASCII case folding, the key
 * tried with and without a trailing NUL (Postfix's DICT_FLAG_TRY1NULL / TRY0NULL, narrowed to
 * what the file turns out to use), the value cut at its first NUL and decoded.  Anything else
 * (a non-ASCII key, a key too long for the stack buffer, a value that is not UTF-8, an LMDB
 * error) returns NotImplemented, and the Python code answers it with its full rules and
 * diagnostics.  The Python backend stays the reference; this module only makes the common
 * case fast.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <lmdb.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>

#define KEY_MAX 1024

typedef struct {
    PyObject_HEAD
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    int fold;
    int utf8;
    int try_with;    /* try the key with a trailing NUL */
    int try_without; /* try the key without it */
    int lock_fd;     /* Postfix's shared fcntl lock around each lookup, or -1 */
    PyObject *fallback; /* lookup() hands what get() cannot answer to this callable */
} Reader;

static void
reader_close_handles(Reader *self)
{
    if (self->txn != NULL) {
        mdb_txn_abort(self->txn);
        self->txn = NULL;
    }
    if (self->env != NULL) {
        mdb_env_close(self->env);
        self->env = NULL;
    }
}

static int
Reader_traverse(Reader *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    return 0;
}

static int
Reader_clear(Reader *self)
{
    Py_CLEAR(self->fallback);
    return 0;
}

static void
Reader_dealloc(Reader *self)
{
    PyObject_GC_UnTrack(self);
    Reader_clear(self);
    reader_close_handles(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
set_lock(int fd, short type)
{
    struct flock fl;
    int rc;

    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    do {
        rc = fcntl(fd, F_SETLKW, &fl);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

static int
Reader_init(Reader *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path", "map_size", "fold", "utf8", "try_with", "try_without",
                             "lock_fd", "fallback", NULL};
    PyObject *path_obj, *fallback = Py_None;
    unsigned long long map_size;
    int fold, utf8, try_with, try_without, lock_fd = -1;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&Kpppp|iO", kwlist, PyUnicode_FSConverter,
                                     &path_obj, &map_size, &fold, &utf8, &try_with,
                                     &try_without, &lock_fd, &fallback))
        return -1;
    reader_close_handles(self);
    rc = mdb_env_create(&self->env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(self->env, (size_t)map_size);
    if (rc == 0)
        rc = mdb_env_open(self->env, PyBytes_AS_STRING(path_obj),
                          MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0644);
    if (rc == 0)
        rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &self->txn);
    if (rc == 0)
        rc = mdb_dbi_open(self->txn, NULL, 0, &self->dbi);
    Py_DECREF(path_obj);
    if (rc != 0) {
        reader_close_handles(self);
        PyErr_Format(PyExc_OSError, "lmdb: %s", mdb_strerror(rc));
        return -1;
    }
    self->fold = fold;
    self->utf8 = utf8;
    self->try_with = try_with;
    self->try_without = try_without;
    self->lock_fd = lock_fd;
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    return 0;
}

/* One lookup; returns a new reference, Py_None, or Py_NotImplemented. */
static PyObject *
reader_get(Reader *self, PyObject *key)
{
    char buf[KEY_MAX + 1];
    Py_ssize_t n, i;
    const char *text, *data, *nul;
    MDB_val k, v;
    int rc = MDB_NOTFOUND;
    size_t len;
    PyObject *value;

    if (self->txn == NULL || !PyUnicode_Check(key) || !PyUnicode_IS_ASCII(key))
        Py_RETURN_NOTIMPLEMENTED;
    n = PyUnicode_GET_LENGTH(key);
    if (n > KEY_MAX)
        Py_RETURN_NOTIMPLEMENTED;
    text = (const char *)PyUnicode_DATA(key);
    if (self->fold) {
        for (i = 0; i < n; i++) {
            char c = text[i];
            buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
        }
    } else {
        memcpy(buf, text, (size_t)n);
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', (size_t)n) != NULL)
        Py_RETURN_NOTIMPLEMENTED; /* Postfix would see a shorter C string */
    if (self->try_with) {
        k.mv_size = (size_t)n + 1;
        k.mv_data = buf;
        rc = mdb_get(self->txn, self->dbi, &k, &v);
        if (rc == 0)
            self->try_without = 0;
    }
    if (rc == MDB_NOTFOUND && self->try_without) {
        k.mv_size = (size_t)n;
        k.mv_data = buf;
        rc = mdb_get(self->txn, self->dbi, &k, &v);
        if (rc == 0)
            self->try_with = 0;
    }
    if (rc == MDB_NOTFOUND)
        Py_RETURN_NONE;
    if (rc != 0)
        Py_RETURN_NOTIMPLEMENTED;
    data = (const char *)v.mv_data;
    len = v.mv_size;
    nul = memchr(data, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - data);
    value = PyUnicode_DecodeUTF8(data, (Py_ssize_t)len, self->utf8 ? NULL : "surrogateescape");
    if (value == NULL) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    return value;
}

static PyObject *
Reader_get(Reader *self, PyObject *key)
{
    return reader_get(self, key);
}

static int reader_renew(Reader *self);

static PyObject *
Reader_lookup(Reader *self, PyObject *key)
{
    /* The whole of Table.lookup() for the keys get() answers: under the shared lock when
     * there is one, with the transaction renewed; the rest goes to the fallback. */
    PyObject *value;

    if (self->lock_fd >= 0) {
        if (set_lock(self->lock_fd, F_RDLCK) < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        value = reader_renew(self) ? reader_get(self, key) : Py_NewRef(Py_NotImplemented);
        if (set_lock(self->lock_fd, F_UNLCK) < 0) {
            Py_DECREF(value);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    } else {
        value = reader_get(self, key);
    }
    if (value != Py_NotImplemented || self->fallback == NULL || self->fallback == Py_None)
        return value;
    Py_DECREF(value);
    return PyObject_CallOneArg(self->fallback, key);
}

static PyObject *
Reader_get_many(Reader *self, PyObject *args)
{
    /* get() for keys[start:], stopping after the first NotImplemented: the caller answers
     * that key in Python before the next one, so that answers stay in order (the NUL
     * auto-detection depends on which keys came first). */
    PyObject *keys, *seq, *out;
    Py_ssize_t start = 0, n, i;

    if (!PyArg_ParseTuple(args, "O|n", &keys, &start))
        return NULL;
    seq = PySequence_Fast(keys, "keys must be a sequence");
    if (seq == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    out = PyList_New(0);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    for (i = start < 0 ? 0 : start; i < n; i++) {
        PyObject *value = reader_get(self, PySequence_Fast_GET_ITEM(seq, i));
        int rc = PyList_Append(out, value);

        Py_DECREF(value);
        if (rc < 0) {
            Py_DECREF(out);
            Py_DECREF(seq);
            return NULL;
        }
        if (value == Py_NotImplemented)
            break;
    }
    Py_DECREF(seq);
    return out;
}

static int
reader_renew(Reader *self)
{
    /* See the latest committed version (callers hold Postfix's shared lock). */
    if (self->txn == NULL)
        return 0;
    mdb_txn_reset(self->txn);
    if (mdb_txn_renew(self->txn) != 0) {
        mdb_txn_abort(self->txn);
        self->txn = NULL;
        return 0;
    }
    return 1;
}

static PyObject *
Reader_renew(Reader *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(reader_renew(self));
}

static PyObject *
Reader_close(Reader *self, PyObject *Py_UNUSED(ignored))
{
    reader_close_handles(self);
    Py_CLEAR(self->fallback);
    Py_RETURN_NONE;
}

static PyMethodDef Reader_methods[] = {
    {"get", (PyCFunction)Reader_get, METH_O,
     "get(key) -> str | None | NotImplemented: look up one key."},
    {"lookup", (PyCFunction)Reader_lookup, METH_O,
     "lookup(key) -> str | None: get() under the lock, or the fallback's answer."},
    {"get_many", (PyCFunction)Reader_get_many, METH_VARARGS,
     "get_many(keys, start=0) -> list: get() for keys[start:], up to the first NotImplemented."},
    {"renew", (PyCFunction)Reader_renew, METH_NOARGS,
     "renew() -> bool: start reading the latest version; False (and unusable) on failure."},
    {"close", (PyCFunction)Reader_close, METH_NOARGS, "Close the file."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Reader_members[] = {
    {"try_with", T_INT, offsetof(Reader, try_with), 0, "Keys are tried with a trailing NUL."},
    {"try_without", T_INT, offsetof(Reader, try_without), 0, "Keys are tried without one."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailmaps._lmdbread.Reader",
    .tp_doc = "Read-only, lock-free lookups in an lmdb table file.",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_members = Reader_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mailmaps._lmdbread",
    .m_doc = "Fast lock-free lookups in lmdb table files (optional; see backends/lmdb.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__lmdbread(void)
{
    PyObject *m;

    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
