/* mailmaps._speedups: what its source files share. */
#ifndef MAILMAPS_SPEEDUPS_H
#define MAILMAPS_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* A lookup error, or an answer the Python path must give itself (with its diagnostics). */
#define MM_HAND_BACK ((PyObject *)1)

/* The longest address the C paths take (longer ones go to the Python path). */
#define KEY_LIMIT 1024

/* _search.c: Postfix's address search order for addresses that need no quoting. */
typedef struct {
    const char *delims;
    Py_ssize_t ndelims;
    int owner_special;
    int usable; /* all of it ASCII: else the Python path searches */
    PyObject *is_local, *myorigin, *double_bounce;
} SearchParams;

/* The first of tables' values for key (a new reference), NULL for none, or MM_HAND_BACK; with
 * hit_key, a hit leaves its key there. */
PyObject *mm_look(PyObject *tables, const char *key, Py_ssize_t len, PyObject **hit_key);
int mm_search_params(PyObject *tuple, SearchParams *p);
int mm_is_plain(const char *full, Py_ssize_t n, Py_ssize_t *at_out);
/* The value for the plain address full (its last "@" at at), or NULL, or MM_HAND_BACK; a match
 * without the extension sets ext_start/ext_len; with hit_key, a hit leaves its key there. */
PyObject *mm_search(PyObject *all, PyObject *fixed, long bits, const SearchParams *p,
                    const char *full, Py_ssize_t n, Py_ssize_t at, Py_ssize_t *ext_start,
                    Py_ssize_t *ext_len, PyObject **hit_key);
PyObject *mm_find_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *mm_first_hit(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* _resolve.c: a plain address through cleanup and trivial-rewrite. */
PyObject *mm_resolve_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* _access.c: smtpd's decision for a session whose restrictions need nothing unusual. */
PyObject *mm_decide_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
