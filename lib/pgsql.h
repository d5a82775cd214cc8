/*
 * pgsql: small SQL helpers on top of lib/pgconn, for administration of a server's databases.
 *
 * Owns the quoting of identifiers and conninfo values (pure functions), and PgSqlSeq: a list of
 * statements run one after the other on a connection of its own to a conninfo (the admin
 * statements around a restore: DROP, CREATE, ALTER ... RENAME, COMMENT ON DATABASE), ending with
 * one callback. Mechanism only: it does not log, and knows nothing of what the statements mean.
 * Loop thread only.
 */
#ifndef DRSUP_PGSQL_H
#define DRSUP_PGSQL_H

#include <stddef.h>

#include <libpq-fe.h>
#include <uv.h>

#include "pgconn.h"

/* `name` as a quoted SQL identifier: in double quotes, every '"' doubled (a"b -> "a""b"). 0, or
 * -ENAMETOOLONG when it does not fit in n bytes (then out is "" if n > 0, which no statement
 * accepts as a name). */
int pgsql_quote_ident(const char *name, char *out, size_t n);

/* conninfo (key=value form) with " dbname='<dbname>'" appended, the value's quotes and backslashes
 * escaped: the last dbname wins, so it names that database on the same server. malloc'd; NULL on
 * OOM. */
char *pgsql_conninfo_dbname(const char *conninfo, const char *dbname);

typedef struct PgSqlSeq PgSqlSeq;

/*
 * How a sequence ended.
 * status 0: every statement succeeded; res is the last one's result.
 * status < 0: statement number `done` (0-based: `done` statements succeeded before it) failed with
 *   pgconn's status (DR_EDB, -ETIMEDOUT, ...) and errmsg (libpq's message); or the sequence was
 *   cancelled (DR_ECANCELED). res is NULL. A cancelled statement may or may not have taken effect
 *   on the server.
 * res and errmsg are borrowed, valid only during the callback.
 */
typedef struct PgSqlSeqResult {
    int status;
    size_t done;
    const PGresult *res;
    const char *errmsg;
} PgSqlSeqResult;

typedef void (*PgSqlSeqDoneFn)(const PgSqlSeqResult *r, void *data);

/*
 * Run the n statements (copied) in order on a new connection to conninfo (opts may be NULL); the
 * first failure ends the sequence. Returns 0 and later calls done(data) exactly once, on a later
 * loop turn (never from inside this call or pgsql_seq_cancel()), after which the sequence frees
 * itself and closes its connection; *ret_seq (may be NULL) is the handle until then. Or returns
 * without calling done: -EINVAL (n == 0, or a conninfo libpq cannot parse) or -ENOMEM.
 */
int pgsql_seq_start(uv_loop_t *loop, const char *conninfo, const PgConnOptions *opts, const char *const *stmts,
                    size_t n, PgSqlSeqDoneFn done, void *data, PgSqlSeq **ret_seq);

/* Stop: the statement in flight is abandoned (its connection closed) and done() follows with
 * DR_ECANCELED, unless the sequence already ended (then done() follows as it was). Only valid
 * until done() ran. */
void pgsql_seq_cancel(PgSqlSeq *s);

#endif
