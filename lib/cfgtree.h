/*
 * cfgtree: YAML documents as a tree of nodes with positions, and typed getters that collect
 * "FILE:LINE:COL: what is wrong" errors.
 *
 * Owns the mechanism of configuration parsing, not its schema: the daemon's schema (which keys
 * exist, their types and defaults) lives in daemon/config*.c and walks the tree with these getters.
 * Every getter marks the key it reads as used, so cfg_check_unknown() can refuse unknown keys.
 * Errors accumulate in a CfgCtx so one run reports every problem, not only the first.
 * Blocking (reads a file); the daemon calls it at start and from the thread pool on reload.
 */
#ifndef DRSUP_CFGTREE_H
#define DRSUP_CFGTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum { CFG_NODE_SCALAR, CFG_NODE_MAP, CFG_NODE_SEQ } CfgNodeKind;

typedef struct CfgNode CfgNode;
struct CfgNode {
    CfgNodeKind kind;
    unsigned line, col;  /* 1-based position of the node in the file */
    char *scalar;        /* CFG_NODE_SCALAR: the text as written */
    bool plain;          /* scalar was unquoted (so "null"/"~" mean null) */
    size_t n;            /* MAP: number of pairs; SEQ: number of items */
    char **keys;         /* MAP: key texts */
    CfgNode **keynodes;  /* MAP: key nodes (for positions) */
    CfgNode **items;     /* MAP: values; SEQ: items */
    bool *used;          /* MAP: key was read by a getter */
};

typedef struct CfgCtx {
    char *file;    /* name used in messages */
    char **errors; /* "FILE:LINE:COL: message" */
    size_t n_errors;
} CfgCtx;

/* Parse a whole YAML document. On a syntax error returns DR_ECONFIG with the error in ctx. */
int cfg_parse_file(CfgCtx *ctx, const char *path, CfgNode **ret_root);
int cfg_parse_string(CfgCtx *ctx, const char *text, size_t len, CfgNode **ret_root);
void cfg_node_free(CfgNode *node);

void cfg_ctx_init(CfgCtx *ctx, const char *file);
void cfg_ctx_done(CfgCtx *ctx);
/* All errors joined with newlines, or NULL when there are none. Caller frees. */
char *cfg_ctx_join_errors(const CfgCtx *ctx);

void cfg_error(CfgCtx *ctx, const CfgNode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The value of key in a mapping (marks it used) or NULL. */
const CfgNode *cfg_get(const CfgNode *map, const char *key);

/*
 * Typed getters. `map` may be NULL (section absent): then the default applies, or a required key is
 * reported missing at `where`. Each returns true when a value was set (from the file or default),
 * false after recording an error. `path` names the section in messages, e.g. "database".
 */
typedef struct CfgSection {
    CfgCtx *ctx;
    const CfgNode *map;   /* NULL when the section is absent */
    const CfgNode *where; /* node to point at for missing keys (parent), may be NULL */
    char path[160];       /* "database", "control", ... ("" for top level) */
} CfgSection;

/* Open a sub-section: a mapping under key, or absent. Errors if present and not a mapping. */
CfgSection cfg_section(const CfgSection *parent, const char *key, bool required);
bool cfg_string(const CfgSection *s, const char *key, bool required, const char *def, char **ret);
bool cfg_bool(const CfgSection *s, const char *key, bool def, bool *ret);
bool cfg_int(const CfgSection *s, const char *key, int64_t min, int64_t max, int64_t def, int64_t *ret);
bool cfg_duration_ms(const CfgSection *s, const char *key, bool required, uint64_t def, uint64_t min,
                     uint64_t *ret);
bool cfg_size(const CfgSection *s, const char *key, uint64_t def, uint64_t min, uint64_t max, uint64_t *ret);
bool cfg_mode(const CfgSection *s, const char *key, mode_t def, mode_t *ret);
/* One of a NULL-terminated list of names; ret gets the index. */
bool cfg_enum(const CfgSection *s, const char *key, const char *const *names, int def, int *ret);
/* A sequence of scalars (a single scalar is accepted as a list of one), with a NULL after the last
 * (usable as an argv). Absent, null or an empty list: *ret = NULL and *ret_n = 0, so a caller may
 * put its defaults there without leaking. */
bool cfg_string_list(const CfgSection *s, const char *key, char ***ret, size_t *ret_n);
/* Refuse keys that no getter read. Call after reading every key of the section. */
void cfg_check_unknown(const CfgSection *s);

/* Standalone parsers (used by getters and by drctl arguments). 0 or -EINVAL. */
int cfg_parse_duration_ms(const char *text, uint64_t *ret_ms);
int cfg_parse_size(const char *text, uint64_t *ret_bytes);
/* "250ms", "26h", "1m30s"; writes at most n bytes. */
void cfg_format_duration(uint64_t ms, char *out, size_t n);

#endif
