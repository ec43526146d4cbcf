/*
 * mailmaps._speedups: optional C for the hot paths of indexed tables.
 *
 * - Reader: lmdb: lookups.  It opens an LMDB file the way Postfix does (MDB_NOSUBDIR |
 *   MDB_NOLOCK, read-only), keeps one read transaction (renewed under Postfix's shared fcntl
 *   lock when locks are on), and answers ASCII keys: optional ASCII case folding, the key tried
 *   with and without a trailing NUL (Postfix's DICT_FLAG_TRY1NULL / TRY0NULL, narrowed to what
 *   the file turns out to use), the value cut at its first NUL and decoded.  Anything else (a
 *   non-ASCII key, a key too long for the stack buffer, a value that is not UTF-8, an LMDB
 *   error) comes back as NotImplemented, and the Python code answers it with its full rules
 *   and diagnostics.
 * - find_plain() (_search.c): Postfix's address search order for addresses that need no
 *   quoting, over a list of tables; resolve_plain() (_resolve.c): such an address through
 *   cleanup's canonical and virtual alias mapping and trivial-rewrite's transport choice.
 * - build_uniform(): an lmdb or cdb file from a postmap source whose every line is
 *   "key SEP value", the form generated tables have; any other line hands the source back to
 *   the Python parser.
 *
 * The Python backends stay the reference; this module only makes the common cases fast, and
 * the tests check both give the same answers and files.
 */
#include "_speedups.h"
#include <structmember.h>
#include <lmdb.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

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
    int held;        /* the caller holds that lock and renewed the transaction */
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

    if (self->lock_fd >= 0 && !self->held) {
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
    {"held", T_INT, offsetof(Reader, held), 0,
     "The caller holds the shared lock and renewed the transaction: lookup() takes neither."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailmaps._speedups.Reader",
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

/* ---- Building a table from a uniform postmap source ------------------------------------ */

typedef struct {
    const char *key;
    size_t klen;
    const char *value;
    size_t vlen;
    Py_ssize_t line;
    int lost; /* an equal key won */
} Entry;

static int
entry_cmp(const void *a, const void *b)
{
    const Entry *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);

    if (c != 0)
        return c;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    return x->line < y->line ? -1 : (x->line > y->line);
}

static int
line_cmp(const void *a, const void *b)
{
    const Entry *x = *(const Entry *const *)a, *y = *(const Entry *const *)b;

    return x->line < y->line ? -1 : (x->line > y->line);
}

/* Write the entries that did not lose with MDB_APPEND: 0, an LMDB error code, or ENOMEM. */
static int
write_entries(const char *path, size_t map_size, const Entry *ents, Py_ssize_t n, int nul)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    char *kbuf = NULL, *vbuf = NULL;
    size_t kcap = 0, vcap = 0;
    Py_ssize_t i;
    int rc;

    rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env, map_size);
    if (rc == 0)
        rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK | MDB_WRITEMAP, 0644);
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &dbi);
    for (i = 0; rc == 0 && i < n; i++) {
        MDB_val k, v;

        if (ents[i].lost)
            continue;
        if (ents[i].klen + 1 > kcap) {
            kcap = 2 * (ents[i].klen + 1);
            free(kbuf);
            if ((kbuf = malloc(kcap)) == NULL) {
                rc = ENOMEM;
                break;
            }
        }
        if (ents[i].vlen + 1 > vcap) {
            vcap = 2 * (ents[i].vlen + 1);
            free(vbuf);
            if ((vbuf = malloc(vcap)) == NULL) {
                rc = ENOMEM;
                break;
            }
        }
        memcpy(kbuf, ents[i].key, ents[i].klen);
        memcpy(vbuf, ents[i].value, ents[i].vlen);
        kbuf[ents[i].klen] = '\0';
        vbuf[ents[i].vlen] = '\0';
        k.mv_data = kbuf;
        k.mv_size = ents[i].klen + (nul ? 1 : 0);
        v.mv_data = vbuf;
        v.mv_size = ents[i].vlen + (nul ? 1 : 0);
        rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
    }
    free(kbuf);
    free(vbuf);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc == 0)
        rc = mdb_env_sync(env, 1);
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (env != NULL)
        mdb_env_close(env);
    return rc;
}

static uint32_t
cdb_hash(const char *p, size_t n, int nul)
{
    uint32_t h = 5381;
    size_t i;

    for (i = 0; i < n; i++)
        h = ((h << 5) + h) ^ (unsigned char)p[i];
    if (nul)
        h = ((h << 5) + h) ^ 0;
    return h;
}

static void
put_u32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16);
    b[3] = (unsigned char)(v >> 24);
}

typedef struct {
    uint32_t hash;
    uint32_t pos;
} Slot;

/* Write the entries that did not lose as a cdb file, in the given order, with the hash
 * tables laid out as tinycdb's cdb_make_finish() lays them out: 0, an errno, or EFBIG when
 * positions would not fit 32 bits. */
static int
write_cdb(const char *path, const Entry *ents, Py_ssize_t n, int nul)
{
    FILE *out;
    unsigned char head[8], toc[2048];
    uint64_t pos = 2048;
    uint32_t counts[256] = {0}, starts[256], t;
    Slot *recs = NULL, *table = NULL;
    Py_ssize_t i, nrec = 0;
    size_t most = 0;
    int fd, rc = 0;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return errno;
    out = fdopen(fd, "wb");
    if (out == NULL) {
        rc = errno;
        close(fd);
        return rc;
    }
    setvbuf(out, NULL, _IOFBF, 1 << 20);
    recs = malloc(sizeof(Slot) * (size_t)(n > 0 ? n : 1));
    if (recs == NULL) {
        rc = ENOMEM;
        goto done;
    }
    memset(toc, 0, sizeof toc);
    if (fwrite(toc, 1, sizeof toc, out) != sizeof toc)
        goto io_error;
    for (i = 0; i < n; i++) {
        size_t klen = ents[i].klen + (nul ? 1 : 0), vlen = ents[i].vlen + (nul ? 1 : 0);

        if (ents[i].lost)
            continue;
        if (pos + 8 + klen + vlen > 0xFFFFFFFFu) {
            rc = EFBIG;
            goto done;
        }
        put_u32(head, (uint32_t)klen);
        put_u32(head + 4, (uint32_t)vlen);
        if (fwrite(head, 1, 8, out) != 8 || fwrite(ents[i].key, 1, ents[i].klen, out) != ents[i].klen
            || (nul && fputc(0, out) == EOF)
            || fwrite(ents[i].value, 1, ents[i].vlen, out) != ents[i].vlen
            || (nul && fputc(0, out) == EOF))
            goto io_error;
        recs[nrec].hash = cdb_hash(ents[i].key, ents[i].klen, nul);
        recs[nrec].pos = (uint32_t)pos;
        counts[recs[nrec].hash & 255]++;
        nrec++;
        pos += 8 + klen + vlen;
    }
    if (pos + 16 * (uint64_t)nrec > 0xFFFFFFFFu + (uint64_t)1) {
        rc = EFBIG;
        goto done;
    }
    /* Group the records by table, keeping record order within each. */
    {
        Slot *grouped = malloc(sizeof(Slot) * (size_t)(nrec > 0 ? nrec : 1));
        uint32_t fill[256];

        if (grouped == NULL) {
            rc = ENOMEM;
            goto done;
        }
        for (t = 0, starts[0] = 0; t < 256; t++) {
            if (t > 0)
                starts[t] = starts[t - 1] + counts[t - 1];
            fill[t] = starts[t];
            if (counts[t] > most)
                most = counts[t];
        }
        for (i = 0; i < nrec; i++)
            grouped[fill[recs[i].hash & 255]++] = recs[i];
        free(recs);
        recs = grouped;
    }
    table = malloc(sizeof(Slot) * 2 * (most > 0 ? most : 1));
    if (table == NULL) {
        rc = ENOMEM;
        goto done;
    }
    for (t = 0; t < 256; t++) {
        uint32_t slots = counts[t] * 2, k;

        put_u32(toc + 8 * t, (uint32_t)pos);
        put_u32(toc + 8 * t + 4, slots);
        if (slots == 0)
            continue;
        memset(table, 0, sizeof(Slot) * slots);
        for (k = 0; k < counts[t]; k++) {
            const Slot *r = &recs[starts[t] + k];
            uint32_t j = (r->hash >> 8) % slots;

            while (table[j].pos != 0)
                j = j + 1 == slots ? 0 : j + 1;
            table[j] = *r;
        }
        for (k = 0; k < slots; k++) {
            put_u32(head, table[k].hash);
            put_u32(head + 4, table[k].pos);
            if (fwrite(head, 1, 8, out) != 8)
                goto io_error;
        }
        pos += (uint64_t)slots * 8;
    }
    if (fseek(out, 0, SEEK_SET) != 0 || fwrite(toc, 1, sizeof toc, out) != sizeof toc
        || fflush(out) != 0 || fsync(fileno(out)) != 0)
        goto io_error;
    goto done;
io_error:
    rc = errno ? errno : EIO;
done:
    free(recs);
    free(table);
    if (fclose(out) != 0 && rc == 0)
        rc = errno;
    return rc;
}

static PyObject *
build_uniform(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    /* Build an lmdb file at path from a postmap source whose every line should be
     * "key SEP value" (the caller has checked the rest: no comments, quotes, backslashes,
     * NULs, other white space or bad UTF-8, and data holds no final newline).  Keys are
     * ASCII-folded when asked, the entries sorted, of equal keys the first kept (with replace,
     * the last), and the file written in one append-only transaction, the map doubling when
     * full.  Returns None, writing nothing, when some line is not of that form (the caller then
     * parses in Python); else the [(line, key)] of the entries that lost to an equal key, in
     * line order. */
    static char *kwlist[] = {"path", "data", "sep", "fold", "nul", "replace", "map_size",
                             "format", NULL};
    const char *format = "lmdb";
    PyObject *path_obj, *out = NULL;
    Py_buffer data;
    int sep, fold, nul, replace, rc = 0, bad = 0;
    unsigned long long map_size;
    char *text = NULL;
    const char *path;
    Entry *ents = NULL, **lost = NULL;
    Py_ssize_t n = 1, i, nlost = 0, line;
    size_t pos, len, size;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&y*ipppK|s", kwlist, PyUnicode_FSConverter,
                                     &path_obj, &data, &sep, &fold, &nul, &replace, &map_size,
                                     &format))
        return NULL;
    if (strcmp(format, "lmdb") != 0 && strcmp(format, "cdb") != 0) {
        Py_DECREF(path_obj);
        PyBuffer_Release(&data);
        return PyErr_Format(PyExc_ValueError, "unknown format: %s", format);
    }
    path = PyBytes_AS_STRING(path_obj);
    len = (size_t)data.len;
    for (pos = 0; pos < len; pos++)
        n += ((const char *)data.buf)[pos] == '\n';
    text = malloc(len + 1);
    ents = calloc((size_t)n, sizeof(Entry));
    lost = calloc((size_t)n, sizeof(Entry *));
    if (text == NULL || ents == NULL || lost == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(text, data.buf, len);
    size = (size_t)map_size;
    Py_BEGIN_ALLOW_THREADS
    for (pos = 0, line = 0; line < n; line++) {
        char *start = text + pos, *end = memchr(start, '\n', len - pos), *cut, *c;

        if (end == NULL)
            end = text + len;
        cut = memchr(start, sep, (size_t)(end - start));
        if (cut == NULL || cut == start || cut + 1 == end
            || memchr(cut + 1, sep, (size_t)(end - cut - 1)) != NULL || cut[-1] == ':') {
            bad = 1; /* no separator, an empty key or value, two separators, or "key:" */
            break;
        }
        if (fold)
            for (c = start; c < cut; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c + ('a' - 'A'));
        ents[line].key = start;
        ents[line].klen = (size_t)(cut - start);
        ents[line].value = cut + 1;
        ents[line].vlen = (size_t)(end - cut - 1);
        ents[line].line = line + 1;
        pos = (size_t)(end - text) + 1;
    }
    if (!bad) {
        qsort(ents, (size_t)n, sizeof(Entry), entry_cmp);
        /* Equal keys are neighbours, in line order. */
        for (i = 1; i < n; i++) {
            if (ents[i].klen == ents[i - 1].klen
                && memcmp(ents[i].key, ents[i - 1].key, ents[i].klen) == 0) {
                Entry *gone = replace ? &ents[i - 1] : &ents[i];

                gone->lost = 1;
                lost[nlost++] = gone;
            }
        }
        qsort(lost, (size_t)nlost, sizeof(Entry *), line_cmp);
        if (strcmp(format, "cdb") == 0) {
            rc = write_cdb(path, ents, n, nul);
        } else {
            for (;;) {
                rc = write_entries(path, size, ents, n, nul);
                if (rc != MDB_MAP_FULL || size > ((size_t)-1) / 2)
                    break;
                unlink(path);
                size *= 2;
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    if (rc != 0) {
        unlink(path);
        PyErr_Format(PyExc_OSError, "error writing %s: %s", path,
                     rc == EFBIG && strcmp(format, "cdb") == 0 ? "cdb file would exceed 4 GB"
                                                                 : mdb_strerror(rc));
        goto done;
    }
    out = PyList_New(nlost);
    for (i = 0; out != NULL && i < nlost; i++) {
        PyObject *item = Py_BuildValue("(ny#)", lost[i]->line, lost[i]->key,
                                       (Py_ssize_t)lost[i]->klen);

        if (item == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, item);
    }
done:
    free(text);
    free(ents);
    free(lost);
    PyBuffer_Release(&data);
    Py_DECREF(path_obj);
    return out;
}

static PyMethodDef module_methods[] = {
    {"find_plain", (PyCFunction)(void (*)(void))mm_find_plain, METH_FASTCALL,
     "find_plain(all, fixed, address, bits, params, with_key=False) -> (value, extension[, key])"
     " | NotImplemented: see _search.c"},
    {"first_hit", (PyCFunction)(void (*)(void))mm_first_hit, METH_FASTCALL,
     "first_hit(all, fixed, keys, fixed_from) -> (index, value) | NotImplemented: see _search.c"},
    {"resolve_plain", (PyCFunction)(void (*)(void))mm_resolve_plain, METH_FASTCALL,
     "resolve_plain(plan, address) -> list | NotImplemented: see _resolve.c"},
    {"decide_plain", (PyCFunction)(void (*)(void))mm_decide_plain, METH_FASTCALL,
     "decide_plain(plan, session) -> Decision | NotImplemented: see _access.c"},
    {"build_uniform", (PyCFunction)(void (*)(void))build_uniform, METH_VARARGS | METH_KEYWORDS,
     "build_uniform(path, data, sep, fold, nul, replace, map_size, format='lmdb') -> list | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mailmaps._speedups",
    .m_doc = "Optional C for lmdb: lookups and for lmdb and cdb builds (see backends/lmdb.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
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
