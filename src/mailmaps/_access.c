/*
 * mailmaps._speedups.decide_plain(): smtpd's answer to one RCPT TO (smtpd_check.c) in C, for
 * a configuration whose restriction lists use only permit, reject, defer, permit_mynetworks,
 * permit_sasl_authenticated, check_{client,helo,sender,recipient}_access,
 * permit_auth_destination, {reject,defer}_unauth_destination and reject_unlisted_recipient,
 * with smtpd_delay_reject = yes.  AccessPolicy._plain_plan() decides whether a configuration
 * qualifies and hands over what the evaluation needs (the plan, below).
 *
 * mailmaps.access is the reference: this hands back (NotImplemented) everything it does not
 * answer exactly as the Python path would, and the Python path then decides the session from
 * the start.  Handed back: a table answer other than OK, RELAY, a number, DUNNO, REJECT,
 * DEFER or 4NN/5NN text (restriction classes, HOLD, FILTER, DISCARD, PREPEND, WARN, INFO,
 * REDIRECT, BCC, HANGUP, DEFER_IF_*: their side effects and warnings live in Python);
 * anything the Python path would log (a reply code or DSN it must repair, a DSN it maps to
 * another class); any field or value that is not printable ASCII; addresses that need
 * quoting; a HELO name that smtpd would rewrite; a table or the resolver failing; a route
 * to the error or retry transport; and sessions before MAIL FROM or with no recipient.
 * Nothing here logs.
 */
#include "_speedups.h"

#include <string.h>

enum { DUNNO = 0, OK = 1, REJECT = 2, HAND_BACK = -1 };

/* Step kinds: the numbers AccessPolicy._plain_plan() gives restrictions. */
enum {
    K_PERMIT = 1,
    K_REJECT,
    K_DEFER,
    K_MYNETWORKS,
    K_CLIENT_ACCESS,
    K_HELO_ACCESS,
    K_SENDER_ACCESS,
    K_RECIPIENT_ACCESS,
    K_AUTH_DEST,
    K_UNAUTH_DEST,
    K_DEFER_UNAUTH_DEST,
    K_UNLISTED_RECIPIENT,
    K_SASL_PERMIT,
};

/* Reply codes, in the plan's order. */
enum {
    C_REJECT,
    C_DEFER,
    C_MAP_REJECT,
    C_MAP_DEFER,
    C_RELAY,
    C_LOCAL,
    C_VIRTUAL,
    C_RELAY_RCPT,
    C_COUNT
};

/* Recipient validation maps, in the plan's order (each (all, fixed) or None). */
enum { M_RCPT_CANONICAL, M_CANONICAL, M_VIRTUAL_ALIAS, M_LOCAL, M_MAILBOX, M_RELAY, M_COUNT };

#define F_ROUTED 0x2L
#define F_ERROR 0x4L
#define F_FAIL 0x8L
#define F_CLASS_LOCAL 0x100L
#define F_CLASS_ALIAS 0x200L
#define F_CLASS_VIRTUAL 0x400L
#define F_CLASS_RELAY 0x800L

#define REPLY_LIMIT 510

static const char CLIENT[] = "Client host", HELO[] = "Helo command",
                  SENDER[] = "Sender address", RECIPIENT[] = "Recipient address";

typedef struct {
    /* the plan */
    PyObject *decision, *resolve, *mynetworks, *stages, *search_args, *rcpt_maps, *null_key;
    PyObject *double_bounce, *fields;
    long codes[C_COUNT];
    int access_parent, allow_untrusted, soft_bounce, unlisted_recipient, local_rcpt_maps;
    int show_table, sasl_enabled, sender_routing;
    long access_bits, rcpt_bits;
    SearchParams params;
    /* the session */
    PyObject *name, *addr, *namaddr, *helo, *sender, *recipient, *sasl_username;
    /* the evaluation */
    const char *where, *reject_stage;
    int rcpt_checked;
    PyObject *decided_by; /* borrowed: a step's label */
    PyObject *entry;      /* owned: (table, key, value) of the deciding answer */
    PyObject *last_entry; /* owned: the answer the current step looked at */
    PyObject *reply;      /* owned: the reject reply */
    PyObject *sender_route, *recipient_route; /* owned: remembered when the sender is moot */
} Ctx;

/* --- text ----------------------------------------------------------------------------------- */

/* The ASCII text of a str whose every character is printable ASCII, or NULL. */
static const char *
printable_ascii(PyObject *text, Py_ssize_t *n)
{
    const char *s;
    Py_ssize_t i;

    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text))
        return NULL;
    s = (const char *)PyUnicode_DATA(text);
    *n = PyUnicode_GET_LENGTH(text);
    for (i = 0; i < *n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            return NULL;
    }
    return s;
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The length of the RFC 3463 code that s starts with ([245].d{1,3}.d{1,3} before a space or
 * the end: dsn_valid()), or 0. */
static Py_ssize_t
dsn_length(const char *s, Py_ssize_t n)
{
    Py_ssize_t i = 1, part, digits;

    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    for (part = 0; part < 2; part++) {
        i++;
        for (digits = 0; i < n && is_digit(s[i]) && digits < 3; digits++)
            i++;
        if (digits == 0)
            return 0;
        if (part == 0 && (i >= n || s[i] != '.'))
            return 0;
    }
    return (i == n || s[i] == ' ') ? i : 0;
}

static Py_ssize_t
skip_spaces(const char *s, Py_ssize_t i, Py_ssize_t n)
{
    while (i < n && s[i] == ' ')
        i++;
    return i;
}

/* smtpd_dsn_fix(): whether dsn stays as it is for reply_class (a change is logged by the
 * Python path, so it answers those). */
static int
dsn_unchanged(const char *dsn, const char *reply_class)
{
    static const char *sender_map[] = {"1.7", "1.8", "1.7", "1.7", "1.0", "1.7", "1.7", "1.8"};
    static const char *recipient_map[] = {"1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.3",
                                          "1.2"};
    const char *micro = dsn + 4, *result;
    int single;

    if (!(is_digit(dsn[0]) && dsn[1] == '.' && dsn[2] == '1' && dsn[3] == '.'))
        return 1;
    single = micro[0] >= '1' && micro[0] <= '8' && micro[1] == '\0';
    if (reply_class == SENDER)
        result = single ? sender_map[micro[0] - '1'] : "1.0";
    else if (reply_class == RECIPIENT)
        result = single ? recipient_map[micro[0] - '1'] : "1.0";
    else
        result = "0.0";
    return strcmp(dsn + 2, result) == 0;
}

/* --- replies -------------------------------------------------------------------------------- */

/* smtpd_check_reject(): "code dsn <name>: class rejected: why" (or, with no class, "code dsn
 * <name>: why"), as smtpd sends it; the stage's status. */
static int
reject(Ctx *c, long code, const char *dsn, PyObject *name, const char *reply_class,
       const char *why, Py_ssize_t why_len)
{
    char buf[REPLY_LIMIT + 64];
    Py_ssize_t n, name_len, room;
    const char *name_text = printable_ascii(name, &name_len);
    int len;

    if (name_text == NULL || code < 400 || code > 599)
        return HAND_BACK;
    if (reply_class != NULL && !dsn_unchanged(dsn, reply_class))
        return HAND_BACK;
    len = snprintf(buf, sizeof buf, "%ld %s <", code, dsn);
    if (len < 0 || dsn_length(buf + 4, len - 4) == 0)
        return HAND_BACK;
    n = len;
    room = (Py_ssize_t)sizeof buf - n;
    if (name_len > room)
        name_len = room;
    memcpy(buf + n, name_text, (size_t)name_len);
    n += name_len;
    len = reply_class != NULL
              ? snprintf(buf + n, sizeof buf - (size_t)n, ">: %s rejected: ", reply_class)
              : snprintf(buf + n, sizeof buf - (size_t)n, ">: ");
    if (len < 0)
        return HAND_BACK;
    n += len;
    if (n > (Py_ssize_t)sizeof buf)
        n = sizeof buf;
    room = (Py_ssize_t)sizeof buf - n;
    if (why_len > room)
        why_len = room;
    memcpy(buf + n, why, (size_t)why_len);
    n += why_len;
    if (n > REPLY_LIMIT)
        n = REPLY_LIMIT;
    if (c->soft_bounce && buf[0] == '5')
        buf[0] = '4';
    buf[4] = buf[0];
    Py_XSETREF(c->reply, PyUnicode_FromStringAndSize(buf, n));
    if (c->reply == NULL) {
        PyErr_Clear();
        return HAND_BACK;
    }
    c->reject_stage = c->where;
    return REJECT;
}

/* check_table_result(): what an access(5) answer means, for the answers handled here. */
static int
table_result(Ctx *c, PyObject *value, PyObject *reply_name, const char *reply_class)
{
    Py_ssize_t n, cmd_len, text, i, d;
    const char *v = printable_ascii(value, &n), *dsn;
    char dsn_buf[16];
    long code;

    if (v == NULL || n == 0)
        return HAND_BACK;
    for (cmd_len = 0; cmd_len < n && v[cmd_len] != ' '; cmd_len++)
        ;
    text = skip_spaces(v, cmd_len, n);
#define WORD(w) (cmd_len == (Py_ssize_t)strlen(w) && PyOS_strnicmp(v, w, (size_t)cmd_len) == 0)
    if (WORD("DUNNO"))
        return DUNNO;
    if (WORD("OK") || WORD("RELAY"))
        return OK;
    for (i = 0; i < n && is_digit(v[i]); i++)
        ;
    if (i == n)
        return OK; /* a number */
    if (WORD("REJECT") || WORD("DEFER")) {
        code = c->codes[v[0] == 'R' || v[0] == 'r' ? C_MAP_REJECT : C_MAP_DEFER];
        dsn = v[0] == 'R' || v[0] == 'r' ? "5.7.1" : "4.7.1";
    } else if (cmd_len == 3 && text < n && (v[0] == '4' || v[0] == '5') && is_digit(v[1]) &&
               is_digit(v[2])) {
        code = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
        dsn = v[0] == '4' ? "4.7.1" : "5.7.1";
    } else {
        return HAND_BACK;
    }
#undef WORD
    /* dsn_split(): a leading enhanced status code in the text replaces the default */
    d = dsn_length(v + text, n - text);
    if (d > 0) {
        if (d >= (Py_ssize_t)sizeof dsn_buf)
            return HAND_BACK;
        memcpy(dsn_buf, v + text, (size_t)d);
        dsn_buf[d] = '\0';
        dsn = dsn_buf;
        text = skip_spaces(v, text + d, n);
    }
    if (text == n)
        return reject(c, code, dsn, reply_name, reply_class, "Access denied", 13);
    return reject(c, code, dsn, reply_name, reply_class, v + text, n - text);
}

/* _answer(): remember the entry, then what it means. */
static int
answer(Ctx *c, PyObject *table, PyObject *key, PyObject *value, PyObject *reply_name,
       const char *reply_class)
{
    Py_XSETREF(c->last_entry, PyTuple_Pack(3, table, key, value));
    if (c->last_entry == NULL) {
        PyErr_Clear();
        return HAND_BACK;
    }
    return table_result(c, value, reply_name, reply_class);
}

/* --- access tables -------------------------------------------------------------------------- */

/* The first of keys (ASCII, given as offsets into text) with a value: keys after the first go
 * to the exact-key tables only.  *found says whether one had a value. */
static int
walk(Ctx *c, PyObject *maps, PyObject *table, const char *text, const Py_ssize_t *starts,
     const Py_ssize_t *ends, int nkeys, PyObject *reply_name, const char *reply_class,
     int *found)
{
    int i, status;

    *found = 0;
    for (i = 0; i < nkeys; i++) {
        PyObject *key = NULL, *value;

        value = mm_look(PyTuple_GET_ITEM(maps, i == 0 ? 0 : 1), text + starts[i],
                        ends[i] - starts[i], &key);
        if (value == MM_HAND_BACK) {
            Py_XDECREF(key);
            return HAND_BACK;
        }
        if (value == NULL)
            continue;
        *found = 1;
        status = answer(c, table, key, value, reply_name, reply_class);
        Py_DECREF(key);
        Py_DECREF(value);
        return status;
    }
    return DUNNO;
}

#define MAX_KEYS 128

/* check_domain_access(): the name, then its parent domains. */
static int
domain_access(Ctx *c, PyObject *maps, PyObject *table, PyObject *domain, PyObject *reply_name,
              const char *reply_class, int *found)
{
    Py_ssize_t starts[MAX_KEYS], ends[MAX_KEYS], n, i, start = 0;
    const char *s;
    int nkeys = 0, numeric = 1;

    if (!PyUnicode_IS_ASCII(domain))
        return HAND_BACK;
    s = (const char *)PyUnicode_DATA(domain);
    n = PyUnicode_GET_LENGTH(domain);
    for (i = 0; i < n; i++) {
        if (s[i] == ':')
            return HAND_BACK; /* maybe an IPv6 address: no parent domains (Python decides) */
        if (!is_digit(s[i]) && s[i] != '.')
            numeric = 0;
    }
    if (numeric)
        return HAND_BACK; /* maybe an IPv4 address */
    while (start < n) {
        Py_ssize_t dot;

        if (nkeys == MAX_KEYS)
            return HAND_BACK;
        starts[nkeys] = start;
        ends[nkeys++] = n;
        for (dot = start + 1; dot < n && s[dot] != '.'; dot++)
            ;
        if (dot >= n)
            break;
        start = c->access_parent ? dot + 1 : dot;
    }
    return walk(c, maps, table, s, starts, ends, nkeys, reply_name, reply_class, found);
}

/* check_addr_access(): the address, then shorter prefixes at "." (or ":" for IPv6). */
static int
addr_access(Ctx *c, PyObject *maps, PyObject *table, PyObject *address, PyObject *reply_name,
            const char *reply_class, int *found)
{
    Py_ssize_t starts[MAX_KEYS], ends[MAX_KEYS], n, cut;
    const char *s;
    char delim;
    int nkeys = 0;

    if (!PyUnicode_IS_ASCII(address))
        return HAND_BACK;
    s = (const char *)PyUnicode_DATA(address);
    n = PyUnicode_GET_LENGTH(address);
    delim = memchr(s, ':', (size_t)n) != NULL ? ':' : '.';
    starts[nkeys] = 0;
    ends[nkeys++] = n;
    for (cut = n - 1; cut >= 0; cut--) {
        if (s[cut] != delim)
            continue;
        if (nkeys == MAX_KEYS)
            return HAND_BACK;
        starts[nkeys] = 0;
        ends[nkeys++] = cut;
    }
    return walk(c, maps, table, s, starts, ends, nkeys, reply_name, reply_class, found);
}

/* --- routes --------------------------------------------------------------------------------- */

static PyObject *
attribute_name(PyObject **cache, const char *name)
{
    if (*cache == NULL)
        *cache = PyUnicode_InternFromString(name);
    return *cache;
}

/* AccessPolicy.resolve(sender, address): the route's flags, and its recipient (a new
 * reference, ASCII) with the index of its last "@" (-1 for none); with transport, whether
 * the route goes to the error or retry transport. */
static int
route(Ctx *c, PyObject *sender, PyObject *address, long *flags, PyObject **recipient,
      Py_ssize_t *at, int *special)
{
    static PyObject *flags_name, *recipient_name, *transport_name;
    PyObject *args[2] = {sender, address}, *r, *f, *rcpt, *t, **memo = NULL;

    /* Without sender-dependent routing the route depends on the address alone: asked once. */
    if (!c->sender_routing)
        memo = address == c->recipient ? &c->recipient_route
               : address == c->sender  ? &c->sender_route
                                       : NULL;
    if (attribute_name(&flags_name, "flags") == NULL ||
        attribute_name(&recipient_name, "recipient") == NULL ||
        attribute_name(&transport_name, "transport") == NULL) {
        PyErr_Clear();
        return HAND_BACK;
    }
    if (memo != NULL && *memo != NULL) {
        r = Py_NewRef(*memo);
    } else {
        r = PyObject_Vectorcall(c->resolve, args, 2, NULL);
        if (r == NULL) {
            PyErr_Clear();
            return HAND_BACK;
        }
        if (memo != NULL)
            *memo = Py_NewRef(r);
    }
    f = PyObject_GetAttr(r, flags_name);
    rcpt = PyObject_GetAttr(r, recipient_name);
    t = special != NULL ? PyObject_GetAttr(r, transport_name) : NULL;
    Py_DECREF(r);
    if (f == NULL || rcpt == NULL || !PyUnicode_Check(rcpt) || !PyUnicode_IS_ASCII(rcpt) ||
        (special != NULL && (t == NULL || !PyUnicode_Check(t)))) {
        Py_XDECREF(f);
        Py_XDECREF(rcpt);
        Py_XDECREF(t);
        PyErr_Clear();
        return HAND_BACK;
    }
    if (special != NULL) {
        *special = PyUnicode_CompareWithASCIIString(t, "error") == 0 ||
                   PyUnicode_CompareWithASCIIString(t, "retry") == 0;
        Py_DECREF(t);
    }
    *flags = PyLong_AsLong(f);
    Py_DECREF(f);
    if ((*flags == -1 && PyErr_Occurred()) || (*flags & F_FAIL)) {
        PyErr_Clear();
        Py_DECREF(rcpt);
        return HAND_BACK; /* a lookup failed: the Python path says so */
    }
    *at = PyUnicode_FindChar(rcpt, '@', 0, PyUnicode_GET_LENGTH(rcpt), -1);
    *recipient = rcpt;
    return OK;
}

/* _bad_syntax(): the resolver flags the address as malformed (1), or not (0). */
static int
bad_syntax(Ctx *c, PyObject *address)
{
    PyObject *rcpt;
    long flags;
    Py_ssize_t at;

    if (route(c, Py_None, address, &flags, &rcpt, &at, NULL) != OK)
        return HAND_BACK;
    Py_DECREF(rcpt);
    return (flags & F_ERROR) != 0;
}

/* permit_auth_destination(): OK for mail this host takes, else DUNNO. */
static int
auth_destination(Ctx *c)
{
    PyObject *rcpt;
    long flags;
    Py_ssize_t at;

    if (route(c, c->sender, c->recipient, &flags, &rcpt, &at, NULL) != OK)
        return HAND_BACK;
    Py_DECREF(rcpt);
    if (at < 0)
        return OK;
    if (!c->allow_untrusted && (flags & F_ROUTED))
        return DUNNO;
    if (flags & (F_CLASS_LOCAL | F_CLASS_ALIAS | F_CLASS_VIRTUAL | F_CLASS_RELAY))
        return OK;
    return DUNNO;
}

/* check_mail_access(): the resolved address in the access search order. */
static int
mail_access(Ctx *c, PyObject *maps, PyObject *table, PyObject *address, PyObject *other,
            const char *reply_class)
{
    PyObject *rcpt, *key = NULL, *value;
    long flags;
    Py_ssize_t at, ext_start, ext_len, n;
    const char *s;
    int status;

    if (route(c, other, address, &flags, &rcpt, &at, NULL) != OK)
        return HAND_BACK;
    s = (const char *)PyUnicode_DATA(rcpt);
    n = PyUnicode_GET_LENGTH(rcpt);
    if (at < 0 || !c->params.usable || !mm_is_plain(s, n, &at)) {
        Py_DECREF(rcpt);
        return HAND_BACK;
    }
    value = mm_search(PyTuple_GET_ITEM(maps, 0), PyTuple_GET_ITEM(maps, 1), c->access_bits,
                      &c->params, s, n, at, &ext_start, &ext_len, &key);
    if (value == MM_HAND_BACK) {
        Py_XDECREF(key);
        Py_DECREF(rcpt);
        return HAND_BACK;
    }
    if (value == NULL) {
        Py_XDECREF(key);
        Py_DECREF(rcpt);
        return DUNNO;
    }
    status = answer(c, table, key != NULL ? key : rcpt, value, address, reply_class);
    Py_XDECREF(key);
    Py_DECREF(value);
    Py_DECREF(rcpt);
    if (status == OK && reply_class == RECIPIENT && !c->allow_untrusted && (flags & F_ROUTED))
        return DUNNO;
    return status;
}

/* --- recipient validation ------------------------------------------------------------------- */

/* The address is in the maps (mail_addr_find() finds a value): 1, 0, or HAND_BACK. */
static int
listed(Ctx *c, PyObject *maps, const char *s, Py_ssize_t n, Py_ssize_t at)
{
    PyObject *value;
    Py_ssize_t ext_start, ext_len;

    if (maps == Py_None)
        return 0;
    value = mm_search(PyTuple_GET_ITEM(maps, 0), PyTuple_GET_ITEM(maps, 1), c->rcpt_bits,
                      &c->params, s, n, at, &ext_start, &ext_len, NULL);
    if (value == MM_HAND_BACK)
        return HAND_BACK;
    if (value == NULL)
        return 0;
    Py_DECREF(value);
    return 1;
}

/* address is local@... (ASCII case-insensitively) */
static int
match_left(PyObject *local, const char *s, Py_ssize_t n)
{
    Py_ssize_t len = PyUnicode_GET_LENGTH(local);

    return PyUnicode_IS_ASCII(local) && len < n && s[len] == '@' &&
           PyOS_strnicmp(s, (const char *)PyUnicode_DATA(local), (size_t)len) == 0;
}

/* check_recipient_rcpt_maps(): the recipient must be known to its address class's tables. */
static int
unlisted_recipient(Ctx *c)
{
    PyObject *rcpt, **maps = &PyTuple_GET_ITEM(c->rcpt_maps, 0), *table;
    long flags, code;
    Py_ssize_t at, n;
    const char *s, *table_name;
    char why[64];
    int i, hit, special;

    if (c->rcpt_checked)
        return DUNNO;
    c->rcpt_checked = 1;
    if (route(c, c->sender, c->recipient, &flags, &rcpt, &at, &special) != OK)
        return HAND_BACK;
    s = (const char *)PyUnicode_DATA(rcpt);
    n = PyUnicode_GET_LENGTH(rcpt);
    if (!c->params.usable || !mm_is_plain(s, n, &at)) {
        Py_DECREF(rcpt);
        return HAND_BACK;
    }
    for (i = M_RCPT_CANONICAL; i <= M_VIRTUAL_ALIAS; i++) {
        hit = listed(c, maps[i], s, n, at);
        if (hit != 0) {
            Py_DECREF(rcpt);
            return hit == 1 ? DUNNO : HAND_BACK;
        }
    }
    if (special) { /* the error or retry transport: rejected with its text */
        Py_DECREF(rcpt);
        return HAND_BACK;
    }
    if (flags & F_CLASS_LOCAL) {
        if (!c->local_rcpt_maps || match_left(c->double_bounce, s, n) ||
            (at == 10 && PyOS_strnicmp(s, "postmaster", 10) == 0) ||
            (at == 13 && PyOS_strnicmp(s, "mailer-daemon", 13) == 0)) {
            Py_DECREF(rcpt);
            return DUNNO;
        }
        table = maps[M_LOCAL];
        code = c->codes[C_LOCAL];
        table_name = "local recipient";
    } else if (flags & F_CLASS_ALIAS) {
        Py_DECREF(rcpt);
        return DUNNO;
    } else if (flags & F_CLASS_VIRTUAL) {
        table = maps[M_MAILBOX];
        code = c->codes[C_VIRTUAL];
        table_name = "virtual mailbox";
    } else if (flags & F_CLASS_RELAY) {
        table = maps[M_RELAY];
        code = c->codes[C_RELAY_RCPT];
        table_name = "relay recipient";
    } else {
        Py_DECREF(rcpt);
        return DUNNO;
    }
    if (table == Py_None && !(flags & F_CLASS_LOCAL)) {
        Py_DECREF(rcpt);
        return DUNNO;
    }
    hit = listed(c, table, s, n, at);
    Py_DECREF(rcpt);
    if (hit != 0)
        return hit == 1 ? DUNNO : HAND_BACK;
    snprintf(why, sizeof why, "User unknown%s%s%s", c->show_table ? " in " : "",
             c->show_table ? table_name : "", c->show_table ? " table" : "");
    return reject(c, code, "5.1.1", c->recipient, RECIPIENT, why, (Py_ssize_t)strlen(why));
}

/* --- restriction lists ---------------------------------------------------------------------- */

/* One restriction: (kind, label, maps, table). */
static int
step(Ctx *c, PyObject *item, PyObject *reply_name, const char *reply_class)
{
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
    PyObject *maps = PyTuple_GET_ITEM(item, 2), *table = PyTuple_GET_ITEM(item, 3), *hit;
    int status, found;

    switch (kind) {
    case K_PERMIT:
        return OK;
    case K_REJECT:
        return reject(c, c->codes[C_REJECT], "5.7.1", reply_name, reply_class, "Access denied",
                      13);
    case K_DEFER:
        return reject(c, c->codes[C_DEFER], "4.3.2", reply_name, reply_class,
                      "Try again later", 15);
    case K_MYNETWORKS: {
        PyObject *args[2] = {c->name, c->addr};

        hit = PyObject_Vectorcall(c->mynetworks, args, 2, NULL);
        if (hit == NULL) {
            PyErr_Clear();
            return HAND_BACK;
        }
        status = PyObject_IsTrue(hit);
        Py_DECREF(hit);
        return status < 0 ? HAND_BACK : status ? OK : DUNNO;
    }
    case K_CLIENT_ACCESS:
        status = domain_access(c, maps, table, c->name, c->namaddr, CLIENT, &found);
        if (status != DUNNO || found)
            return status;
        return addr_access(c, maps, table, c->addr, c->namaddr, CLIENT, &found);
    case K_HELO_ACCESS:
        if (c->helo == Py_None)
            return DUNNO;
        return domain_access(c, maps, table, c->helo, c->helo, HELO, &found);
    case K_SENDER_ACCESS: {
        if (PyUnicode_GET_LENGTH(c->sender) > 0)
            return mail_access(c, maps, table, c->sender, c->recipient, SENDER);
        if (!PyUnicode_IS_ASCII(c->null_key) || PyUnicode_GET_LENGTH(c->null_key) == 0)
            return HAND_BACK;
        PyObject *key = NULL, *value = mm_look(PyTuple_GET_ITEM(maps, 0),
                                               (const char *)PyUnicode_DATA(c->null_key),
                                               PyUnicode_GET_LENGTH(c->null_key), &key);

        if (value == MM_HAND_BACK) {
            Py_XDECREF(key);
            return HAND_BACK;
        }
        if (value == NULL)
            return DUNNO;
        status = answer(c, table, key, value, c->sender, SENDER);
        Py_DECREF(key);
        Py_DECREF(value);
        return status;
    }
    case K_RECIPIENT_ACCESS:
        return mail_access(c, maps, table, c->recipient, c->sender, RECIPIENT);
    case K_AUTH_DEST:
        return auth_destination(c);
    case K_UNAUTH_DEST:
    case K_DEFER_UNAUTH_DEST:
        status = auth_destination(c);
        if (status != DUNNO)
            return status == OK ? DUNNO : status;
        if (kind == K_UNAUTH_DEST)
            return reject(c, c->codes[C_RELAY], "5.7.1", c->recipient, NULL,
                          "Relay access denied", 19);
        return reject(c, c->codes[C_RELAY] - 100, "4.7.1", c->recipient, NULL,
                      "Relay access denied", 19);
    case K_UNLISTED_RECIPIENT:
        if (PyUnicode_GET_LENGTH(c->recipient) == 0)
            return DUNNO;
        return unlisted_recipient(c);
    case K_SASL_PERMIT:
        if (!c->sasl_enabled)
            return DUNNO;
        status = PyObject_IsTrue(c->sasl_username);
        return status < 0 ? HAND_BACK : status ? OK : DUNNO;
    }
    return HAND_BACK;
}

/* generic_checks(): the restrictions in turn until one decides. */
static int
generic(Ctx *c, PyObject *steps, PyObject *reply_name, const char *reply_class)
{
    Py_ssize_t i;
    int status = DUNNO;

    for (i = 0; i < PyTuple_GET_SIZE(steps); i++) {
        PyObject *item = PyTuple_GET_ITEM(steps, i);

        Py_CLEAR(c->last_entry);
        status = step(c, item, reply_name, reply_class);
        if (status == HAND_BACK)
            return HAND_BACK;
        if (status != DUNNO) {
            c->decided_by = PyTuple_GET_ITEM(item, 1);
            Py_XSETREF(c->entry, c->last_entry);
            c->last_entry = NULL;
            break;
        }
    }
    return status;
}

/* One stage of the delayed checks: its restrictions, from a clean slate. */
static int
stage(Ctx *c, int index, const char *where, PyObject *reply_name, const char *reply_class)
{
    c->where = where;
    c->decided_by = NULL;
    Py_CLEAR(c->entry);
    return generic(c, PyTuple_GET_ITEM(c->stages, index), reply_name, reply_class);
}

/* --- the decision --------------------------------------------------------------------------- */

static PyObject *
decision(Ctx *c, const char *stage_name, PyObject *reply)
{
    PyTypeObject *type = (PyTypeObject *)c->decision;
    PyObject *values[12], *obj, *empty = PyTuple_New(0);
    const char *action;
    Py_ssize_t i;

    if (empty == NULL)
        return NULL;
    if (reply != NULL)
        action = PyUnicode_READ_CHAR(reply, 0) == '5' ? "reject" : "defer";
    else
        action = c->decided_by != NULL ? "permit" : "dunno";
    values[0] = PyUnicode_InternFromString(stage_name);
    values[1] = PyUnicode_InternFromString(action);
    values[2] = reply != NULL ? Py_NewRef(reply) : PyUnicode_FromString("250 2.1.5 Ok");
    values[3] = Py_NewRef(c->decided_by != NULL ? c->decided_by : Py_None);
    values[4] = Py_NewRef(c->entry != NULL ? c->entry : Py_None);
    values[5] = Py_NewRef(Py_None); /* hold */
    values[6] = Py_NewRef(Py_None); /* filter */
    values[7] = Py_NewRef(Py_None); /* redirect */
    for (i = 8; i < 12; i++)
        values[i] = Py_NewRef(empty); /* bcc, prepend, warnings, trace */
    Py_DECREF(empty);
    obj = NULL;
    if (values[0] != NULL && values[1] != NULL && values[2] != NULL)
        obj = type->tp_alloc(type, 0);
    /* a frozen dataclass: its fields set as its generated __init__ sets them */
    for (i = 0; obj != NULL && i < 12; i++) {
        if (PyObject_GenericSetAttr(obj, PyTuple_GET_ITEM(c->fields, i), values[i]) < 0)
            Py_CLEAR(obj);
    }
    for (i = 0; i < 12; i++)
        Py_XDECREF(values[i]);
    return obj;
}

/* REJECT with reply when the resolver flags address as malformed, else DUNNO. */
static int
syntax_reply(Ctx *c, PyObject *address, const char *reply)
{
    int bad = bad_syntax(c, address);

    if (bad != 1)
        return bad == 0 ? DUNNO : HAND_BACK;
    c->reply = PyUnicode_FromString(reply);
    if (c->reply == NULL) {
        PyErr_Clear();
        return HAND_BACK;
    }
    return REJECT;
}

/* The checks up to the RCPT TO reply: REJECT (the reply in c->reply, the stage that refused
 * in *stage_name), OK or DUNNO to accept, or HAND_BACK. */
static int
evaluate(Ctx *c, const char **stage_name)
{
    int status, rcpt_status, bad;
    Py_ssize_t len;

    /* smtpd_check_addr() at MAIL FROM and RCPT TO */
    bad = PyUnicode_GET_LENGTH(c->sender) > 0
              ? syntax_reply(c, c->sender, "501 5.1.7 Bad sender address syntax")
              : DUNNO;
    if (bad == DUNNO) {
        *stage_name = "RCPT";
        bad = syntax_reply(c, c->recipient, "501 5.1.3 Bad recipient address syntax");
    } else {
        *stage_name = "MAIL";
    }
    if (bad != DUNNO)
        return bad;
    /* smtpd_delay_reject: the client, HELO and sender restrictions run at RCPT TO */
    status = stage(c, 0, "CONNECT", c->namaddr, CLIENT);
    if (status == DUNNO || status == OK) {
        if (c->helo != Py_None)
            status = stage(c, 1, "HELO", c->helo, HELO);
        if (status == DUNNO || status == OK)
            status = stage(c, 2, "MAIL", c->sender, SENDER);
    }
    if (status == HAND_BACK)
        return HAND_BACK;
    *stage_name = "RCPT";
    if (status == REJECT) {
        *stage_name = c->reject_stage;
        return REJECT;
    }
    c->where = "RCPT";
    c->decided_by = NULL;
    Py_CLEAR(c->entry);
    for (len = 3; len < 5; len++) {
        rcpt_status = generic(c, PyTuple_GET_ITEM(c->stages, len), c->recipient, RECIPIENT);
        if (rcpt_status == HAND_BACK)
            return HAND_BACK;
        status = rcpt_status;
        if (status == REJECT)
            break;
    }
    if (status != REJECT && c->unlisted_recipient)
        status = unlisted_recipient(c);
    if (status == REJECT)
        *stage_name = c->reject_stage;
    return status;
}

/*
 * decide_plain(plan, session) -> Decision | NotImplemented
 *
 * plan: (Decision, Decision's field names, policy.resolve, mynetworks.match, stages, codes,
 * flags, search parameters, access search bits, recipient maps, recipient search bits,
 * smtpd_null_access_lookup_key, double_bounce_sender, address_verify probe address), with
 * stages the client, HELO, sender, first and second recipient lists as tuples of
 * (kind, label, (all, fixed), table name) steps.
 */
PyObject *
mm_decide_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *plan, *session, *codes, *flags, *probe, *out = NULL;
    const char *stage_name = "RCPT";
    Ctx c;
    int i, status;

    if (nargs != 2 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 14) {
        PyErr_SetString(PyExc_TypeError, "decide_plain(plan, session): plan is a 14-tuple");
        return NULL;
    }
    plan = args[0];
    session = args[1];
    memset(&c, 0, sizeof c);
    c.decision = PyTuple_GET_ITEM(plan, 0);
    c.fields = PyTuple_GET_ITEM(plan, 1);
    c.resolve = PyTuple_GET_ITEM(plan, 2);
    c.mynetworks = PyTuple_GET_ITEM(plan, 3);
    c.stages = PyTuple_GET_ITEM(plan, 4);
    codes = PyTuple_GET_ITEM(plan, 5);
    flags = PyTuple_GET_ITEM(plan, 6);
    c.search_args = PyTuple_GET_ITEM(plan, 7);
    c.access_bits = PyLong_AsLong(PyTuple_GET_ITEM(plan, 8));
    c.rcpt_maps = PyTuple_GET_ITEM(plan, 9);
    c.rcpt_bits = PyLong_AsLong(PyTuple_GET_ITEM(plan, 10));
    c.null_key = PyTuple_GET_ITEM(plan, 11);
    c.double_bounce = PyTuple_GET_ITEM(plan, 12);
    probe = PyTuple_GET_ITEM(plan, 13);
    if (!PyType_Check(c.decision) || !PyTuple_Check(c.fields) ||
        PyTuple_GET_SIZE(c.fields) != 12 || !PyTuple_Check(c.stages) ||
        PyTuple_GET_SIZE(c.stages) != 5 || !PyTuple_Check(codes) ||
        PyTuple_GET_SIZE(codes) != C_COUNT || !PyTuple_Check(flags) ||
        PyTuple_GET_SIZE(flags) != 8 || !PyTuple_Check(c.rcpt_maps) ||
        PyTuple_GET_SIZE(c.rcpt_maps) != M_COUNT || !PyUnicode_Check(c.null_key) ||
        !PyUnicode_Check(c.double_bounce) || !PyUnicode_Check(probe)) {
        PyErr_SetString(PyExc_TypeError, "decide_plain(): a malformed plan");
        return NULL;
    }
    for (i = 0; i < C_COUNT; i++) {
        c.codes[i] = PyLong_AsLong(PyTuple_GET_ITEM(codes, i));
        if (c.codes[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    c.access_parent = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 0));
    c.allow_untrusted = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 1));
    c.soft_bounce = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 2));
    c.unlisted_recipient = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 3));
    c.local_rcpt_maps = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 4));
    c.show_table = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 5));
    c.sasl_enabled = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 6));
    c.sender_routing = PyObject_IsTrue(PyTuple_GET_ITEM(flags, 7));
    if (PyErr_Occurred() || mm_search_params(c.search_args, &c.params) < 0)
        return NULL;

    c.name = PyObject_GetAttrString(session, "client_name");
    c.addr = PyObject_GetAttrString(session, "client_address");
    c.helo = PyObject_GetAttrString(session, "helo");
    c.sender = PyObject_GetAttrString(session, "sender");
    c.recipient = PyObject_GetAttrString(session, "recipient");
    c.sasl_username = PyObject_GetAttrString(session, "sasl_username");
    if (c.name == NULL || c.addr == NULL || c.helo == NULL || c.sender == NULL ||
        c.recipient == NULL || c.sasl_username == NULL)
        goto done;
    /* sessions that stop before the checks, and names smtpd would rewrite, go to Python */
    if (!PyUnicode_Check(c.name) || !PyUnicode_Check(c.addr) || !PyUnicode_Check(c.sender) ||
        !PyUnicode_Check(c.recipient) || PyUnicode_GET_LENGTH(c.recipient) == 0 ||
        !PyUnicode_IS_ASCII(c.recipient) || !PyUnicode_IS_ASCII(c.sender))
        goto hand_back;
    if (c.helo == Py_None)
        goto hand_back; /* smtpd_helo_required decides */
    {
        Py_ssize_t n, k;
        const char *h = PyUnicode_Check(c.helo) ? printable_ascii(c.helo, &n) : NULL;

        if (h == NULL || n == 0)
            goto hand_back;
        for (k = 0; k < n; k++) {
            if (strchr(" <>()\\\";@", h[k]) != NULL)
                goto hand_back; /* collapsed or neutered by smtpd */
        }
    }
    {
        PyObject *lower = PyObject_CallMethod(c.recipient, "lower", NULL);
        int same;

        if (lower == NULL)
            goto done;
        same = PyUnicode_Compare(lower, probe) == 0 ||
               PyUnicode_CompareWithASCIIString(lower, "postmaster") == 0;
        Py_DECREF(lower);
        if (same)
            goto hand_back; /* address verification probes, postmaster: not checked */
    }
    c.namaddr = PyUnicode_FromFormat("%U[%U]", c.name, c.addr);
    if (c.namaddr == NULL)
        goto done;
    status = evaluate(&c, &stage_name);
    if (status == HAND_BACK)
        goto hand_back;
    out = decision(&c, stage_name, status == REJECT ? c.reply : NULL);
    goto done;
hand_back:
    PyErr_Clear();
    out = Py_NewRef(Py_NotImplemented);
done:
    Py_XDECREF(c.name);
    Py_XDECREF(c.addr);
    Py_XDECREF(c.helo);
    Py_XDECREF(c.sender);
    Py_XDECREF(c.recipient);
    Py_XDECREF(c.sasl_username);
    Py_XDECREF(c.namaddr);
    Py_XDECREF(c.entry);
    Py_XDECREF(c.last_entry);
    Py_XDECREF(c.reply);
    Py_XDECREF(c.sender_route);
    Py_XDECREF(c.recipient_route);
    return out;
}
