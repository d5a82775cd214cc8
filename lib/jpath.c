/*
 * jpath: dot-and-index paths over jansson values (see jpath.h for the language).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpath.h"

/* One step: a name of [p, p+len) or, when *index >= 0, a list index. Returns the rest, or NULL
 * when the path is malformed at p. */
static const char *jpath_step(const char *p, const char **name, size_t *len, long *index)
{
    *name = NULL;
    *len = 0;
    *index = -1;
    if (*p == '[') {
        char *end = NULL;
        if (p[1] < '0' || p[1] > '9')
            return NULL;
        *index = strtol(p + 1, &end, 10);
        if (!end || *end != ']' || *index < 0)
            return NULL;
        return end + 1;
    }
    *name = p;
    while (p[*len] && p[*len] != '.' && p[*len] != '[' && p[*len] != ']')
        (*len)++;
    if (*len == 0 || p[*len] == ']')
        return NULL;
    return p + *len;
}

/* Walk the path; with root NULL only the syntax is checked. Returns false when malformed. */
static bool jpath_walk(const json_t *root, const char *path, const json_t **ret, const char **bad)
{
    const json_t *cur = root;
    const char *p = path;
    bool first = true;

    while (*p) {
        const char *name;
        size_t len;
        long index;
        if (!first && *p == '.') {
            p++;
            if (*p == '[' || *p == '\0') {
                *bad = p;
                return false;
            }
        } else if (!first && *p != '[') {
            *bad = p;
            return false;
        }
        const char *next = jpath_step(p, &name, &len, &index);
        if (!next) {
            *bad = p;
            return false;
        }
        if (root && cur) {
            if (index >= 0) {
                cur = json_is_array(cur) ? json_array_get(cur, (size_t)index) : NULL;
            } else {
                char key[256];
                if (len >= sizeof(key))
                    cur = NULL;
                else {
                    memcpy(key, name, len);
                    key[len] = '\0';
                    cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
                }
            }
        }
        p = next;
        first = false;
    }
    *ret = cur;
    return true;
}

const json_t *jpath_get(const json_t *root, const char *path)
{
    const json_t *v = NULL;
    const char *bad;

    if (!root || !path)
        return NULL;
    return jpath_walk(root, path, &v, &bad) ? v : NULL;
}

bool jpath_valid(const char *path, char *why, size_t whylen)
{
    const json_t *v;
    const char *bad = NULL;

    if (!path)
        return false;
    if (jpath_walk(NULL, path, &v, &bad))
        return true;
    if (why)
        snprintf(why, whylen, "malformed path '%s' at offset %zu (fields separated by '.', list indexes as [N])",
                 path, (size_t)(bad - path));
    return false;
}
