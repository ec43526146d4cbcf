/*
 * mailmaps._speedups.find_plain(): Postfix's address search order (mail_addr_find.c) in C,
 * for the addresses that need no quoting: a dot-atom local part of letters, digits and
 * "_+=-", "@", and a domain of letters, digits and ".[]:_-".  For such an address every key
 * of the search (user+ext@domain, user@domain, user+ext, user, @domain, domain, parents,
 * user@) is the same in internal and external form, so the search is a fixed sequence of
 * lookups.  mailmaps.search.mail_addr_find_ext() is the reference: it calls this first and
 * answers everything this hands back (NotImplemented) itself: other addresses, a table that
 * raised, an empty-string value (Postfix's configuration error) and is_local() failing.
 * Nothing here logs; the Python path repeats the search and says what Postfix says.
 */
#include "_speedups.h"

#define FIND_FULL (1 << 0)
#define FIND_NOEXT (1 << 1)
#define FIND_LOCALPART_IF_LOCAL (1 << 2)
#define FIND_LOCALPART_AT_IF_LOCAL (1 << 3)
#define FIND_AT_DOMAIN (1 << 4)
#define FIND_DOMAIN (1 << 5)
#define FIND_PDMS (1 << 6)
#define FIND_PDDMDS (1 << 7)
#define FIND_LOCALPART_AT (1 << 8)


static int
is_atext(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '+' || c == '=' || c == '-';
}

static int
is_domain_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '[' || c == ']' || c == ':' || c == '_' || c == '-';
}

/* A dot-atom: atext runs separated by single dots, none first or last. */
static int
is_dot_atom(const char *s, Py_ssize_t n)
{
    Py_ssize_t i;

    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i - 1] == '.')
                return 0;
        } else if (!is_atext(s[i])) {
            return 0;
        }
    }
    return 1;
}

/* maps_find(): the first table's value for key, NULL for none, MM_HAND_BACK to give up.
 * With hit_key, a hit also leaves the key there (a new reference). */
PyObject *
mm_look(PyObject *tables, const char *key, Py_ssize_t len, PyObject **hit_key)
{
    PyObject *text, *value;
    Py_ssize_t i, n = PyTuple_GET_SIZE(tables);

    if (len == 0 || n == 0)
        return NULL; /* an empty key is never looked up */
    text = PyUnicode_FromStringAndSize(key, len);
    if (text == NULL) {
        PyErr_Clear();
        return MM_HAND_BACK;
    }
    for (i = 0; i < n; i++) {
        value = PyObject_CallOneArg(PyTuple_GET_ITEM(tables, i), text);
        if (value == NULL) {
            PyErr_Clear();
            Py_DECREF(text);
            return MM_HAND_BACK;
        }
        if (value == Py_None) {
            Py_DECREF(value);
            continue;
        }
        if (!PyUnicode_Check(value) || PyUnicode_GET_LENGTH(value) == 0) {
            Py_DECREF(text);
            Py_DECREF(value);
            return MM_HAND_BACK;
        }
        if (hit_key != NULL)
            Py_XSETREF(*hit_key, text);
        else
            Py_DECREF(text);
        return value;
    }
    Py_DECREF(text);
    return NULL;
}

typedef struct {
    PyObject *all, *fixed;
    const char *full; /* the address */
    Py_ssize_t at;    /* index of its last "@" */
    const char *bare; /* user@domain without the extension, or NULL */
    Py_ssize_t bare_len, bare_at;
    Py_ssize_t ext_len; /* the extension's length, delimiter included */
    PyObject **hit_key; /* where a hit leaves its key, or NULL */
} Search;

/* user+ext then user (keep_at = 0), or user+ext@ then user@ (keep_at = 1). */
static PyObject *
find_local(Search *s, int keep_at, int *matched_bare)
{
    PyObject *result = mm_look(s->fixed, s->full, s->at + keep_at, s->hit_key);

    *matched_bare = 0;
    if (result == NULL && s->bare != NULL) {
        result = mm_look(s->fixed, s->bare, s->bare_at + keep_at, s->hit_key);
        if (result != NULL && result != MM_HAND_BACK)
            *matched_bare = 1;
    }
    return result;
}

/* split_addr(): the length of the user part before the extension, or -1 for none. */
static Py_ssize_t
split_user(const char *local, Py_ssize_t n, const char *delims, Py_ssize_t ndelims,
           int owner_special, PyObject *double_bounce)
{
    char lower[256];
    Py_ssize_t i;

    if (n < (Py_ssize_t)sizeof lower) {
        for (i = 0; i < n; i++)
            lower[i] = (char)Py_TOLOWER((unsigned char)local[i]);
        lower[n] = '\0';
        if (strcmp(lower, "postmaster") == 0 || strcmp(lower, "mailer-daemon") == 0)
            return -1;
        if (PyUnicode_GET_LENGTH(double_bounce) == n &&
            strcmp(lower, (const char *)PyUnicode_DATA(double_bounce)) == 0)
            return -1;
        if (owner_special && memchr(delims, '-', (size_t)ndelims) != NULL) {
            if (n >= 6 && memcmp(lower, "owner-", 6) == 0)
                return -1;
            if (n > 8 && memcmp(lower + n - 8, "-request", 8) == 0)
                return -1;
        }
    } else {
        return -2; /* too long to fold here: the Python path */
    }
    for (i = 0; i < n; i++) {
        if (memchr(delims, local[i], (size_t)ndelims) != NULL)
            return i == 0 ? -1 : i;
    }
    return -1;
}

static PyObject *
search(Search *s, long bits, PyObject *is_local, PyObject *myorigin, int *ext_out)
{
    const char *domain = s->full + s->at + 1;
    Py_ssize_t dlen = (Py_ssize_t)strlen(domain);
    PyObject *result = NULL;
    int matched_bare = 0;

    *ext_out = 0;
    if (bits & FIND_FULL)
        result = mm_look(s->all, s->full, s->at + 1 + dlen, s->hit_key);
    if (result == NULL && s->bare != NULL) {
        result = mm_look(s->fixed, s->bare, s->bare_len, s->hit_key);
        if (result != NULL && result != MM_HAND_BACK)
            *ext_out = 1;
    }
    if (result == NULL && (bits & (FIND_LOCALPART_IF_LOCAL | FIND_LOCALPART_AT_IF_LOCAL))) {
        int local = PyUnicode_GET_LENGTH(myorigin) == dlen &&
                    PyOS_strnicmp(domain, (const char *)PyUnicode_DATA(myorigin), dlen) == 0;

        if (!local) {
            PyObject *text = PyUnicode_FromStringAndSize(domain, dlen);
            PyObject *answer = text ? PyObject_CallOneArg(is_local, text) : NULL;

            Py_XDECREF(text);
            local = answer ? PyObject_IsTrue(answer) : -1;
            Py_XDECREF(answer);
            if (local < 0) {
                PyErr_Clear();
                return MM_HAND_BACK;
            }
        }
        if (local) {
            if (bits & FIND_LOCALPART_IF_LOCAL) {
                result = find_local(s, 0, &matched_bare);
                *ext_out = matched_bare;
            }
            if (result == NULL && (bits & FIND_LOCALPART_AT_IF_LOCAL)) {
                result = find_local(s, 1, &matched_bare);
                *ext_out = matched_bare;
            }
        }
    }
    if (result == NULL && (bits & FIND_AT_DOMAIN))
        result = mm_look(s->fixed, s->full + s->at, dlen + 1, s->hit_key);
    if (result == NULL && (bits & FIND_DOMAIN)) {
        const char *name = domain;
        Py_ssize_t len = dlen;

        while (len > 0) {
            const char *dot;

            result = mm_look(s->fixed, name, len, s->hit_key);
            if (result != NULL || !(bits & (FIND_PDMS | FIND_PDDMDS)))
                break;
            dot = len > 1 ? memchr(name + 1, '.', (size_t)(len - 1)) : NULL;
            if (dot == NULL)
                break;
            if (!(bits & FIND_PDDMDS))
                dot++;
            len -= dot - name;
            name = dot;
        }
    }
    if (result == NULL && (bits & FIND_LOCALPART_AT)) {
        result = find_local(s, 1, &matched_bare);
        *ext_out = matched_bare;
    }
    return result;
}

int
mm_search_params(PyObject *tuple, SearchParams *p)
{
    /* (delimiters, owner_special, is_local, myorigin, double_bounce), from SearchSettings */
    PyObject *delims, *myorigin, *double_bounce;

    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != 5) {
        PyErr_SetString(PyExc_TypeError, "search parameters: a 5-tuple");
        return -1;
    }
    delims = PyTuple_GET_ITEM(tuple, 0);
    myorigin = PyTuple_GET_ITEM(tuple, 3);
    double_bounce = PyTuple_GET_ITEM(tuple, 4);
    if (!PyUnicode_Check(delims) || !PyUnicode_Check(myorigin) ||
        !PyUnicode_Check(double_bounce)) {
        PyErr_SetString(PyExc_TypeError, "search parameters: bad types");
        return -1;
    }
    p->owner_special = PyObject_IsTrue(PyTuple_GET_ITEM(tuple, 1));
    if (p->owner_special < 0)
        return -1;
    p->usable = PyUnicode_IS_ASCII(delims) && PyUnicode_IS_ASCII(myorigin) &&
                PyUnicode_IS_ASCII(double_bounce);
    p->delims = (const char *)PyUnicode_DATA(delims);
    p->ndelims = PyUnicode_GET_LENGTH(delims);
    p->is_local = PyTuple_GET_ITEM(tuple, 2);
    p->myorigin = myorigin;
    p->double_bounce = double_bounce;
    return 0;
}

int
mm_is_plain(const char *full, Py_ssize_t n, Py_ssize_t *at_out)
{
    Py_ssize_t at, i;

    for (at = n - 1; at >= 0 && full[at] != '@'; at--)
        ;
    if (at < 0 || !is_dot_atom(full, at))
        return 0;
    for (i = at + 1; i < n; i++) {
        if (!is_domain_char(full[i]))
            return 0;
    }
    *at_out = at;
    return 1;
}

PyObject *
mm_search(PyObject *all, PyObject *fixed, long bits, const SearchParams *p, const char *full,
          Py_ssize_t n, Py_ssize_t at, Py_ssize_t *ext_start, Py_ssize_t *ext_len,
          PyObject **hit_key)
{
    Search s;
    PyObject *result;
    Py_ssize_t user;
    int ext_matched;
    char bare[KEY_LIMIT];

    *ext_start = *ext_len = 0;
    if (n >= (Py_ssize_t)sizeof bare)
        return MM_HAND_BACK;
    if (PyTuple_GET_SIZE(fixed) == 0)
        bits &= FIND_FULL; /* the partial keys go to exact-key tables only */
    s.all = all;
    s.fixed = fixed;
    s.full = full;
    s.at = at;
    s.bare = NULL;
    s.bare_len = s.bare_at = s.ext_len = 0;
    s.hit_key = hit_key;
    if (p->ndelims > 0 && (bits & FIND_NOEXT) && strpbrk(full, p->delims) != NULL) {
        user = split_user(full, at, p->delims, p->ndelims, p->owner_special, p->double_bounce);
        if (user == -2)
            return MM_HAND_BACK;
        if (user > 0) {
            memcpy(bare, full, (size_t)user);
            memcpy(bare + user, full + at, (size_t)(n - at));
            s.bare_at = user;
            s.bare_len = user + (n - at);
            bare[s.bare_len] = '\0';
            s.bare = bare;
            s.ext_len = at - user;
        }
    }
    result = search(&s, bits, p->is_local, p->myorigin, &ext_matched);
    if (result != NULL && result != MM_HAND_BACK && ext_matched) {
        *ext_start = s.bare_at;
        *ext_len = s.ext_len;
    }
    return result;
}

/*
 * find_plain(all, fixed, address, bits, params, with_key=False)
 *     -> (value | None, extension | None[, key | None]) | NotImplemented
 *
 * all, fixed: tuples of lookup callables (every table; the exact-key tables); params:
 * SearchSettings.plain_args; with_key: also say which key found the value.
 */
PyObject *
mm_find_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *address, *result, *extension = NULL, *key = NULL, *out;
    const char *full;
    Py_ssize_t n, at, ext_start, ext_len;
    long bits;
    int with_key = 0;
    SearchParams p;

    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "find_plain() takes 5 or 6 arguments");
        return NULL;
    }
    if (nargs == 6 && (with_key = PyObject_IsTrue(args[5])) < 0)
        return NULL;
    address = args[2];
    bits = PyLong_AsLong(args[3]);
    if ((bits == -1 && PyErr_Occurred()) || mm_search_params(args[4], &p) < 0)
        return NULL;
    if (!PyTuple_Check(args[0]) || !PyTuple_Check(args[1]) || !PyUnicode_Check(address)) {
        PyErr_SetString(PyExc_TypeError, "find_plain(): bad argument types");
        return NULL;
    }
    if (!p.usable || !PyUnicode_IS_ASCII(address))
        Py_RETURN_NOTIMPLEMENTED;
    full = (const char *)PyUnicode_DATA(address);
    n = PyUnicode_GET_LENGTH(address);
    if (!mm_is_plain(full, n, &at))
        Py_RETURN_NOTIMPLEMENTED;
    result = mm_search(args[0], args[1], bits, &p, full, n, at, &ext_start, &ext_len,
                       with_key ? &key : NULL);
    if (result == MM_HAND_BACK) {
        Py_XDECREF(key);
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (result == NULL) {
        Py_XDECREF(key);
        return with_key ? PyTuple_Pack(3, Py_None, Py_None, Py_None)
                        : PyTuple_Pack(2, Py_None, Py_None);
    }
    if (ext_len > 0) {
        extension = PyUnicode_FromStringAndSize(full + ext_start, ext_len);
        if (extension == NULL) {
            Py_DECREF(result);
            Py_XDECREF(key);
            return NULL;
        }
    }
    if (with_key)
        out = PyTuple_Pack(3, result, extension ? extension : Py_None, key ? key : Py_None);
    else
        out = PyTuple_Pack(2, result, extension ? extension : Py_None);
    Py_DECREF(result);
    Py_XDECREF(extension);
    Py_XDECREF(key);
    return out;
}

/*
 * first_hit(all, fixed, keys, fixed_from) -> (index, value) | (-1, None) | NotImplemented
 *
 * The first of keys that a table has a value for, as maps_find() looks each up in turn:
 * keys[fixed_from:] go to the exact-key tables only (how Postfix hides parent domains and
 * address prefixes from pattern tables).  A table that fails, or an empty value, hands the
 * walk back: the caller looks the keys up one by one and reports it.
 */
PyObject *
mm_first_hit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *all, *fixed, *keys;
    Py_ssize_t i, n, fixed_from;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "first_hit() takes 4 arguments");
        return NULL;
    }
    all = args[0];
    fixed = args[1];
    keys = args[2];
    fixed_from = PyLong_AsSsize_t(args[3]);
    if (fixed_from == -1 && PyErr_Occurred())
        return NULL;
    if (!PyTuple_Check(all) || !PyTuple_Check(fixed) || !PyList_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "first_hit(): bad argument types");
        return NULL;
    }
    n = PyList_GET_SIZE(keys);
    for (i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i), *tables = i < fixed_from ? all : fixed;
        Py_ssize_t t;

        if (!PyUnicode_Check(key))
            Py_RETURN_NOTIMPLEMENTED;
        if (PyUnicode_GET_LENGTH(key) == 0)
            continue; /* never looked up */
        for (t = 0; t < PyTuple_GET_SIZE(tables); t++) {
            PyObject *value = PyObject_CallOneArg(PyTuple_GET_ITEM(tables, t), key), *out;

            if (value == NULL) {
                PyErr_Clear();
                Py_RETURN_NOTIMPLEMENTED;
            }
            if (value == Py_None) {
                Py_DECREF(value);
                continue;
            }
            if (!PyUnicode_Check(value) || PyUnicode_GET_LENGTH(value) == 0) {
                Py_DECREF(value);
                Py_RETURN_NOTIMPLEMENTED;
            }
            out = Py_BuildValue("(nN)", i, value);
            return out;
        }
    }
    return Py_BuildValue("(nO)", (Py_ssize_t)-1, Py_None);
}
