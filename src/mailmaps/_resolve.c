/*
 * mailmaps._speedups.resolve_plain(): one recipient through cleanup and trivial-rewrite, for
 * the common case, in C.  mailmaps.resolver.Resolver.resolve() is the reference and calls this
 * first; everything outside the common case comes back as NotImplemented and the Python path
 * answers it (with its trace, diagnostics and error replies):
 *
 * - the recipient and every address a table gives must be user@host.domain with a dot-atom
 *   local part of letters, digits and "_+=-" (what needs no quoting, parsing or rewriting);
 * - a table that fails, an empty value, a value that is not a comma-separated list of such
 *   addresses, a limit reached (virtual alias expansion, nesting, length), a local part that
 *   starts with "-", a local domain, and a domain that route() (Router.plain_domain) does
 *   not answer (invalid ones, sender-dependent routing).
 *
 * The steps (the Python functions they follow):
 * 1. canonical maps in order, each repeated until stable (Resolver._map11, mail_addr_map);
 * 2. virtual alias expansion, recursive, duplicates removed (Resolver._map1n, _cleanup);
 * 3. for each result: the domain's class, transport and nexthop (route()), then
 *    transport_maps with its "*" entry (search.transport_lookup), then relocated_maps
 *    (Router._route).
 *
 * plan: (canonical, virtual, params, limits, route, transport, wildcard, relocated, alias_bit,
 *        local_bit)
 *   canonical: tuple of (all, fixed, propagate); virtual: (all, fixed, propagate) or None;
 *   params: SearchSettings.plain_args; limits: (recursion, expansion, length);
 *   route: callable(domain) -> (flags, class, transport, nexthop) or None;
 *   transport: (all, fixed, bits) or None; wildcard: callable() -> str or None;
 *   relocated: (all, fixed) or None; alias_bit, local_bit: the flags of the virtual alias
 *   class and of the local class (local(8) decides: handed back).
 * Returns a list of (recipient, class, transport, nexthop).
 */
#include "_speedups.h"

#define FIND_DEFAULT (1 | 2 | 4 | 16) /* full, no extension, local part if local, @domain */
#define MAX_CANONICAL 10              /* Resolver._MAX_CANONICAL */
#define MAX_RESULTS 64                /* more results: the Python path */

static int
is_label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-';
}

/* user@host.domain: the local part as the search takes it, labels of letters, digits and
 * hyphens, at least two (search._DOTTED_ADDRESS). */
static int
is_dotted(const char *s, Py_ssize_t n, Py_ssize_t *at_out)
{
    Py_ssize_t at, i, dots = 0;

    if (!mm_is_plain(s, n, &at) || at + 1 >= n)
        return 0;
    for (i = at + 1; i < n; i++) {
        if (s[i] == '.') {
            if (s[i - 1] == '.' || s[i - 1] == '@' || i == n - 1)
                return 0;
            dots++;
        } else if (!is_label_char(s[i])) {
            return 0;
        }
    }
    *at_out = at;
    return dots > 0;
}

/* White space around the addresses of a value (others make the piece fail is_dotted()). */
static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
same_folded(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);

    return n == PyUnicode_GET_LENGTH(b) &&
           PyOS_strnicmp((const char *)PyUnicode_DATA(a), (const char *)PyUnicode_DATA(b), n) ==
               0;
}

/* A search's value as addresses (mail_addr_map, mail_addr_crunch): appended to out (new
 * references).  address is what was looked up; the match left its extension (ext_start,
 * ext_len) out when ext_len > 0.  Returns 0, or -1 to hand back. */
static int
crunch(PyObject *value, PyObject *address, Py_ssize_t ext_start, Py_ssize_t ext_len,
       int propagate, PyObject *out)
{
    const char *v, *a = (const char *)PyUnicode_DATA(address);
    Py_ssize_t vn, an = PyUnicode_GET_LENGTH(address), at, start, end, count = 0;
    char text[KEY_LIMIT], piece[KEY_LIMIT];
    Py_ssize_t tn;

    if (!PyUnicode_IS_ASCII(value))
        return -1;
    v = (const char *)PyUnicode_DATA(value);
    vn = PyUnicode_GET_LENGTH(value);
    if (vn > 0 && v[0] == '@') {
        /* @otherdomain: the local part (without the extension the match left out) */
        Py_ssize_t local;

        for (local = an - 1; local >= 0 && a[local] != '@'; local--)
            ;
        if (ext_len > 0)
            local -= ext_len;
        if (local < 0 || local + vn >= (Py_ssize_t)sizeof text)
            return -1;
        memcpy(text, a, (size_t)local);
        memcpy(text + local, v, (size_t)vn);
        tn = local + vn;
    } else {
        if (vn >= (Py_ssize_t)sizeof text)
            return -1;
        memcpy(text, v, (size_t)vn);
        tn = vn;
    }
    for (start = 0; start <= tn; start = end + 1) {
        Py_ssize_t b, e, pn;
        PyObject *item;
        int rc;

        for (end = start; end < tn && text[end] != ','; end++)
            ;
        for (b = start; b < end && is_space(text[b]); b++)
            ;
        for (e = end; e > b && is_space(text[e - 1]); e--)
            ;
        pn = e - b;
        if (!is_dotted(text + b, pn, &at))
            return -1; /* an empty piece, a comment, a route, quotes: the parser's business */
        if (propagate && ext_len > 0) {
            if (pn + ext_len >= (Py_ssize_t)sizeof piece)
                return -1;
            memcpy(piece, text + b, (size_t)at);
            memcpy(piece + at, a + ext_start, (size_t)ext_len);
            memcpy(piece + at + ext_len, text + b + at, (size_t)(pn - at));
            pn += ext_len;
        } else {
            memcpy(piece, text + b, (size_t)pn);
        }
        if (++count > MAX_RESULTS)
            return -1;
        item = PyUnicode_FromStringAndSize(piece, pn);
        if (item == NULL) {
            PyErr_Clear();
            return -1;
        }
        rc = PyList_Append(out, item);
        Py_DECREF(item);
        if (rc < 0) {
            PyErr_Clear();
            return -1;
        }
    }
    return 0;
}

/* One map list's value for address, crunched into out; 1 found, 0 none, -1 hand back. */
static int
map_address(PyObject *maps, const SearchParams *p, PyObject *address, PyObject *out)
{
    const char *full = (const char *)PyUnicode_DATA(address);
    Py_ssize_t n = PyUnicode_GET_LENGTH(address), at, ext_start, ext_len;
    PyObject *value;
    int rc;

    if (!is_dotted(full, n, &at))
        return -1;
    value = mm_search(PyTuple_GET_ITEM(maps, 0), PyTuple_GET_ITEM(maps, 1), FIND_DEFAULT, p,
                      full, n, at, &ext_start, &ext_len, NULL);
    if (value == MM_HAND_BACK)
        return -1;
    if (value == NULL)
        return 0;
    rc = crunch(value, address, ext_start, ext_len, PyObject_IsTrue(PyTuple_GET_ITEM(maps, 2)),
                out);
    Py_DECREF(value);
    if (rc < 0 || PyList_GET_SIZE(out) == 0)
        return -1;
    return 1;
}

/* canonical(5): one-to-one, repeated until stable.  Returns a new reference or NULL. */
static PyObject *
map11(PyObject *maps, const SearchParams *p, PyObject *address)
{
    int i, rc;
    PyObject *results, *current = Py_NewRef(address);

    for (i = 0; i < MAX_CANONICAL; i++) {
        PyObject *next;
        int same;

        results = PyList_New(0);
        if (results == NULL) {
            PyErr_Clear();
            Py_DECREF(current);
            return NULL;
        }
        rc = map_address(maps, p, current, results);
        if (rc <= 0) {
            Py_DECREF(results);
            if (rc < 0) {
                Py_DECREF(current);
                return NULL;
            }
            break;
        }
        next = Py_NewRef(PyList_GET_ITEM(results, 0));
        Py_DECREF(results);
        same = same_folded(next, current);
        Py_SETREF(current, next);
        if (same)
            break;
    }
    return current;
}

/* virtual(5): one-to-many, recursive; the expansion in work.  0 done, -1 hand back. */
static int
expand(PyObject *maps, const SearchParams *p, long recursion, long expansion, long length,
       PyObject *work, PyObject *to_itself)
{
    Py_ssize_t i, r, k;

    for (i = 0; i < PyList_GET_SIZE(work); i++) {
        long count = 0;

        if (PyList_GET_SIZE(work) > expansion || PyList_GET_SIZE(work) > MAX_RESULTS)
            return -1;
        for (;;) {
            PyObject *looked_up, *results;
            int seen = 0, rc;

            looked_up = PyList_GET_ITEM(work, i);
            for (k = 0; k < PyList_GET_SIZE(to_itself); k++)
                seen |= same_folded(looked_up, PyList_GET_ITEM(to_itself, k));
            if (seen)
                break;
            if (count >= recursion)
                return -1;
            count++;
            results = PyList_New(0);
            if (results == NULL)
                return -1;
            rc = map_address(maps, p, looked_up, results);
            if (rc <= 0) {
                Py_DECREF(results);
                if (rc < 0)
                    return -1;
                break;
            }
            Py_INCREF(looked_up); /* work[i] is replaced below */
            rc = 0;
            for (r = 0; r < PyList_GET_SIZE(results) && rc == 0; r++) {
                PyObject *result = PyList_GET_ITEM(results, r);

                if (PyUnicode_GET_LENGTH(result) > length)
                    rc = -1;
                else if (r == 0)
                    rc = PyList_SetItem(work, i, Py_NewRef(result));
                else
                    rc = PyList_Append(work, result);
                if (rc == 0 && same_folded(result, looked_up))
                    rc = PyList_Append(to_itself, looked_up);
            }
            Py_DECREF(looked_up);
            Py_DECREF(results);
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

static int
map1n(PyObject *maps, const SearchParams *p, PyObject *limits, PyObject *work)
{
    long recursion = PyLong_AsLong(PyTuple_GET_ITEM(limits, 0));
    long expansion = PyLong_AsLong(PyTuple_GET_ITEM(limits, 1));
    long length = PyLong_AsLong(PyTuple_GET_ITEM(limits, 2));
    PyObject *to_itself;
    int rc;

    if (PyErr_Occurred())
        return -1;
    to_itself = PyList_New(0);
    if (to_itself == NULL)
        return -1;
    rc = expand(maps, p, recursion, expansion, length, work, to_itself);
    Py_DECREF(to_itself);
    return rc;
}

/* transport(5): an entry over the current transport and nexthop (TransportEntry.apply).
 * Steals nothing; *channel and *nexthop are replaced by new references. */
static int
apply_entry(PyObject *et, PyObject *en, PyObject *domain, PyObject **channel,
            PyObject **nexthop)
{
    PyObject *c, *h;

    if (PyUnicode_GET_LENGTH(et) == 0) {
        c = Py_NewRef(*channel);
        h = Py_NewRef(PyUnicode_GET_LENGTH(en) > 0 ? en : *nexthop);
    } else if (PyUnicode_GET_LENGTH(en) > 0) {
        c = Py_NewRef(et);
        h = Py_NewRef(en);
    } else if (PyUnicode_CompareWithASCIIString(et, "error") == 0 ||
               PyUnicode_CompareWithASCIIString(et, "retry") == 0) {
        c = Py_NewRef(et);
        h = PyUnicode_FromString("Address is undeliverable");
        if (h == NULL) {
            Py_DECREF(c);
            return -1;
        }
    } else {
        c = Py_NewRef(et);
        h = Py_NewRef(domain);
    }
    Py_SETREF(*channel, c);
    Py_SETREF(*nexthop, h);
    return 0;
}

/* "transport:nexthop" split at the first colon (TransportEntry.parse). */
static int
parse_entry(PyObject *value, PyObject **et, PyObject **en)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    Py_ssize_t colon = PyUnicode_FindChar(value, ':', 0, n, 1);

    if (colon == -2)
        return -1;
    if (colon < 0) {
        *et = Py_NewRef(value);
        *en = PyUnicode_New(0, 0);
    } else {
        *et = PyUnicode_Substring(value, 0, colon);
        *en = PyUnicode_Substring(value, colon + 1, n);
    }
    if (*et == NULL || *en == NULL) {
        Py_XDECREF(*et);
        Py_XDECREF(*en);
        return -1;
    }
    return 0;
}

static int
apply_value(PyObject *value, PyObject *domain, PyObject **channel, PyObject **nexthop)
{
    PyObject *et, *en;
    int rc;

    if (parse_entry(value, &et, &en) < 0)
        return -1;
    rc = apply_entry(et, en, domain, channel, nexthop);
    Py_DECREF(et);
    Py_DECREF(en);
    return rc;
}

/* transport_maps for one recipient (search.transport_lookup). 0 done, -1 hand back. */
static int
transport(PyObject *maps, PyObject *wildcard, const SearchParams *p, PyObject *recipient,
          Py_ssize_t at, PyObject *domain, PyObject **channel, PyObject **nexthop)
{
    long bits = PyLong_AsLong(PyTuple_GET_ITEM(maps, 2));
    Py_ssize_t ext_start, ext_len;
    PyObject *value, *star, *empty, *wt, *wn;
    int rc;

    if (bits == -1 && PyErr_Occurred())
        return -1;
    value = mm_search(PyTuple_GET_ITEM(maps, 0), PyTuple_GET_ITEM(maps, 1), bits, p,
                      (const char *)PyUnicode_DATA(recipient), PyUnicode_GET_LENGTH(recipient),
                      at, &ext_start, &ext_len, NULL);
    if (value == MM_HAND_BACK)
        return -1;
    if (value != NULL) {
        rc = apply_value(value, domain, channel, nexthop);
        Py_DECREF(value);
        return rc;
    }
    star = PyObject_CallNoArgs(wildcard);
    if (star == NULL)
        return -1;
    if (star == Py_None) {
        Py_DECREF(star);
        return 0;
    }
    if (!PyUnicode_Check(star)) {
        Py_DECREF(star);
        return -1;
    }
    /* The wildcard is applied once with an empty domain, then to the recipient. */
    empty = PyUnicode_New(0, 0);
    wt = Py_XNewRef(empty);
    wn = Py_XNewRef(empty);
    rc = empty == NULL ? -1 : apply_value(star, empty, &wt, &wn);
    if (rc == 0)
        rc = apply_entry(wt, wn, domain, channel, nexthop);
    Py_XDECREF(wt);
    Py_XDECREF(wn);
    Py_XDECREF(empty);
    Py_DECREF(star);
    return rc;
}

/* One recipient after cleanup: (recipient, class, transport, nexthop), or NULL to hand
 * back. */
static PyObject *
route(PyObject *plan, const SearchParams *p, PyObject *recipient)
{
    PyObject *router = PyTuple_GET_ITEM(plan, 4), *tmaps = PyTuple_GET_ITEM(plan, 5);
    PyObject *relocated = PyTuple_GET_ITEM(plan, 7);
    long alias_bit = PyLong_AsLong(PyTuple_GET_ITEM(plan, 8)), flags;
    const char *full = (const char *)PyUnicode_DATA(recipient);
    Py_ssize_t n = PyUnicode_GET_LENGTH(recipient), at;
    PyObject *domain, *info, *channel, *nexthop, *cls, *out;

    if (!is_dotted(full, n, &at) || full[0] == '-')
        return NULL; /* "-user": allow_min_user decides, in Python */
    domain = PyUnicode_Substring(recipient, at + 1, n);
    if (domain == NULL)
        return NULL;
    info = PyObject_CallOneArg(router, domain);
    if (info == NULL || info == Py_None || !PyTuple_Check(info) || PyTuple_GET_SIZE(info) != 4) {
        Py_XDECREF(info);
        Py_DECREF(domain);
        return NULL;
    }
    flags = PyLong_AsLong(PyTuple_GET_ITEM(info, 0));
    if (flags & PyLong_AsLong(PyTuple_GET_ITEM(plan, 9))) {
        Py_DECREF(info);
        Py_DECREF(domain);
        return NULL; /* a local domain: aliases, .forward files and mailboxes, in Python */
    }
    cls = PyTuple_GET_ITEM(info, 1);
    channel = Py_NewRef(PyTuple_GET_ITEM(info, 2));
    nexthop = Py_NewRef(PyTuple_GET_ITEM(info, 3));
    if (tmaps != Py_None && !(flags & alias_bit) &&
        transport(tmaps, PyTuple_GET_ITEM(plan, 6), p, recipient, at, domain, &channel,
                  &nexthop) < 0)
        goto hand_back;
    if (relocated != Py_None) {
        Py_ssize_t ext_start, ext_len;
        PyObject *moved = mm_search(PyTuple_GET_ITEM(relocated, 0),
                                    PyTuple_GET_ITEM(relocated, 1), FIND_DEFAULT, p, full, n,
                                    at, &ext_start, &ext_len, NULL);

        if (moved == MM_HAND_BACK)
            goto hand_back;
        if (moved != NULL) {
            Py_SETREF(channel, PyUnicode_FromString("error"));
            Py_SETREF(nexthop, PyUnicode_FromFormat("5.1.6 User has moved to %U", moved));
            Py_DECREF(moved);
            if (channel == NULL || nexthop == NULL)
                goto hand_back;
        }
    }
    out = PyTuple_Pack(4, recipient, cls, channel, nexthop);
    Py_DECREF(channel);
    Py_DECREF(nexthop);
    Py_DECREF(info);
    Py_DECREF(domain);
    return out;

hand_back:
    Py_XDECREF(channel);
    Py_XDECREF(nexthop);
    Py_DECREF(info);
    Py_DECREF(domain);
    return NULL;
}

/* cleanup's duplicate elimination: the first of each address, compared without case. */
static PyObject *
unique(PyObject *work)
{
    Py_ssize_t i, k, n = PyList_GET_SIZE(work);
    PyObject *out = PyList_New(0);

    for (i = 0; out != NULL && i < n; i++) {
        PyObject *item = PyList_GET_ITEM(work, i);
        int seen = 0;

        for (k = 0; k < PyList_GET_SIZE(out) && !seen; k++)
            seen = same_folded(item, PyList_GET_ITEM(out, k));
        if (!seen && PyList_Append(out, item) < 0)
            Py_CLEAR(out);
    }
    return out;
}

static PyObject *
resolve(PyObject *plan, PyObject *address)
{
    SearchParams p;
    PyObject *canonical = PyTuple_GET_ITEM(plan, 0), *virtual = PyTuple_GET_ITEM(plan, 1);
    PyObject *current, *work, *finals, *out;
    Py_ssize_t i, at;

    if (mm_search_params(PyTuple_GET_ITEM(plan, 2), &p) < 0 || !p.usable)
        return NULL;
    if (!is_dotted((const char *)PyUnicode_DATA(address), PyUnicode_GET_LENGTH(address), &at))
        return NULL;
    current = Py_NewRef(address);
    for (i = 0; current != NULL && i < PyTuple_GET_SIZE(canonical); i++)
        Py_SETREF(current, map11(PyTuple_GET_ITEM(canonical, i), &p, current));
    if (current == NULL)
        return NULL;
    work = PyList_New(1);
    if (work == NULL) {
        Py_DECREF(current);
        return NULL;
    }
    PyList_SET_ITEM(work, 0, current);
    if (virtual != Py_None && map1n(virtual, &p, PyTuple_GET_ITEM(plan, 3), work) < 0) {
        Py_DECREF(work);
        return NULL;
    }
    finals = unique(work);
    Py_DECREF(work);
    if (finals == NULL)
        return NULL;
    out = PyList_New(PyList_GET_SIZE(finals));
    for (i = 0; out != NULL && i < PyList_GET_SIZE(finals); i++) {
        PyObject *one = route(plan, &p, PyList_GET_ITEM(finals, i));

        if (one == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, one);
    }
    Py_DECREF(finals);
    return out;
}

PyObject *
mm_resolve_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *plan, *address, *out;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "resolve_plain() takes 2 arguments");
        return NULL;
    }
    plan = args[0];
    address = args[1];
    if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) != 10) {
        PyErr_SetString(PyExc_TypeError, "resolve_plain(): the plan is a 10-tuple");
        return NULL;
    }
    if (!PyUnicode_Check(address) || !PyUnicode_IS_ASCII(address))
        Py_RETURN_NOTIMPLEMENTED;
    out = resolve(plan, address);
    if (out == NULL) {
        /* Whatever went wrong, the Python path answers (and reports) it. */
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    return out;
}
