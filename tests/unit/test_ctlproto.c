/*
 * Unit tests for lib/ctlproto: line framing (splits, over-long lines, CRLF) and the request/reply
 * codec; and for daemon/roles: the operator decision.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"
#include "err.h"
#include "core/roles.h"

typedef struct Lines {
    char got[16][128];
    int n;
    int dropped;
} Lines;

static int collect(void *ctx, const char *line, size_t len)
{
    Lines *l = ctx;
    if (!line) {
        l->dropped++;
        snprintf(l->got[l->n++], sizeof(l->got[0]), "<dropped>");
        return 0;
    }
    assert_int_equal(strlen(line), len);
    snprintf(l->got[l->n++], sizeof(l->got[0]), "%s", line);
    return 0;
}

static void test_linebuf_splits_anywhere(void **state)
{
    (void)state;
    const char *stream = "{\"a\":1}\n{\"b\":2}\r\n\n{\"c\":3}\n";
    size_t len = strlen(stream);
    for (size_t step = 1; step <= len; step++) {
        CtlLineBuf lb;
        Lines l = {0};
        ctl_linebuf_init(&lb, 64);
        for (size_t off = 0; off < len; off += step)
            assert_int_equal(ctl_linebuf_feed(&lb, stream + off, off + step > len ? len - off : step, collect, &l), 0);
        assert_int_equal(l.n, 4);
        assert_string_equal(l.got[0], "{\"a\":1}");
        assert_string_equal(l.got[1], "{\"b\":2}");
        assert_string_equal(l.got[2], "");
        assert_string_equal(l.got[3], "{\"c\":3}");
        ctl_linebuf_done(&lb);
    }
}

static void test_linebuf_drops_overlong_lines_once_and_recovers(void **state)
{
    (void)state;
    CtlLineBuf lb;
    Lines l = {0};
    char big[100];
    memset(big, 'x', sizeof(big));
    ctl_linebuf_init(&lb, 16);
    assert_int_equal(ctl_linebuf_feed(&lb, "ok1\n", 4, collect, &l), 0);
    /* An over-long line arriving in pieces is reported once, then ignored to its newline. */
    assert_int_equal(ctl_linebuf_feed(&lb, big, 30, collect, &l), 0);
    assert_int_equal(ctl_linebuf_feed(&lb, big, 70, collect, &l), 0);
    assert_int_equal(ctl_linebuf_feed(&lb, "tail\nok2\n", 9, collect, &l), 0);
    assert_int_equal(l.dropped, 1);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.got[0], "ok1");
    assert_string_equal(l.got[1], "<dropped>");
    assert_string_equal(l.got[2], "ok2");
    /* Exactly at the limit is fine. */
    l.n = 0;
    assert_int_equal(ctl_linebuf_feed(&lb, "0123456789abcdef\n", 17, collect, &l), 0);
    assert_string_equal(l.got[0], "0123456789abcdef");
    ctl_linebuf_done(&lb);
}

static void test_request_parse(void **state)
{
    (void)state;
    CtlRequest req;
    char err[256];
    const char *ok = "{\"id\":42,\"cmd\":\"status\",\"args\":{\"x\":true}}";
    assert_int_equal(ctl_request_parse(ok, strlen(ok), &req, err, sizeof(err)), 0);
    assert_string_equal(req.cmd, "status");
    assert_int_equal(json_integer_value(req.id), 42);
    assert_true(json_is_true(json_object_get(req.args, "x")));
    ctl_request_done(&req);

    const char *noargs = "{\"cmd\":\"ping\"}";
    assert_int_equal(ctl_request_parse(noargs, strlen(noargs), &req, err, sizeof(err)), 0);
    assert_true(json_is_null(req.id));
    assert_true(json_is_object(req.args));
    ctl_request_done(&req);

    static const struct {
        const char *line;
        const char *msg;
        bool has_id;
    } bad[] = {
        {"nope", "invalid JSON", false},
        {"[1]", "must be a JSON object", false},
        {"{\"id\":3}", "'cmd' must be a non-empty string", true},
        {"{\"id\":3,\"cmd\":\"\"}", "'cmd' must be a non-empty string", true},
        {"{\"id\":3,\"cmd\":5}", "'cmd' must be a non-empty string", true},
        {"{\"id\":{},\"cmd\":\"x\"}", "'id' must be a number, string or null", false},
        {"{\"id\":4,\"cmd\":\"x\",\"args\":[]}", "'args' must be an object", true},
        {"{\"id\":4,\"cmd\":\"x\",\"extra\":1}", "unknown field 'extra'", true},
        {"{\"cmd\":\"x\",\"cmd\":\"y\"}", "invalid JSON", false},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ctl_request_parse(bad[i].line, strlen(bad[i].line), &req, err, sizeof(err)), DR_EPROTO);
        if (!strstr(err, bad[i].msg))
            fail_msg("'%s': got '%s', want '%s'", bad[i].line, err, bad[i].msg);
        assert_int_equal(!json_is_null(req.id), bad[i].has_id);
        ctl_request_done(&req);
    }
}

static void test_replies(void **state)
{
    (void)state;
    json_t *id = json_string("abc");
    json_t *res = json_pack("{s:i}", "n", 1);
    char *s = ctl_reply_ok(id, res);
    assert_string_equal(s, "{\"id\":\"abc\",\"ok\":true,\"result\":{\"n\":1}}\n");
    free(s);
    s = ctl_reply_error(id, "busy", "a backup is running \"now\"");
    assert_string_equal(s, "{\"id\":\"abc\",\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"a backup is running \\\"now\\\"\"}}\n");
    free(s);
    s = ctl_request_line(7, "status", NULL);
    assert_string_equal(s, "{\"id\":7,\"cmd\":\"status\",\"args\":{}}\n");
    free(s);
    json_decref(id);
    json_decref(res);
}

/* Every request gets an answer, even when the error message would not be valid UTF-8 (JSON strings
 * must be): jansson's message for a bad escape quotes the raw bytes, and "'%.64s'" can cut a
 * character in two. Such a reply used to be NULL, so the client waited for an answer that never came. */
static void test_error_reply_with_invalid_utf8_still_answers(void **state)
{
    (void)state;
    static const char line[] = "{\"id\":\"a\",\"cmd\":\"halt\",\"args\":{\"reason\":\"db \\u0\xd0\x9a\xc6\xdd\x82\x82\xf2\xf2";
    CtlRequest req;
    char err[512];
    assert_int_equal(ctl_request_parse(line, sizeof(line) - 1, &req, err, sizeof(err)), DR_EPROTO);
    char *r = ctl_reply_error(req.id, "protocol_error", err);
    assert_non_null(r);
    json_t *back = json_loads(r, 0, NULL);
    assert_non_null(back);
    json_decref(back);
    free(r);
    ctl_request_done(&req);

    /* A two-byte character cut after its first byte, a stray continuation byte, an overlong
     * encoding and a UTF-16 surrogate: each bad byte becomes '?', the rest is kept. */
    r = ctl_reply_error(json_null(), "unknown_command", "unknown command 'x\xc3' \x80 \xc0\xaf \xed\xa0\x80 \xc3\xa9");
    assert_non_null(r);
    back = json_loads(r, 0, NULL);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(json_object_get(back, "error"), "message")),
                        "unknown command 'x?' ? ?? ??? \xc3\xa9");
    json_decref(back);
    free(r);
}

static void test_roles(void **state)
{
    (void)state;
    uid_t members[] = {1001};
    char group[] = "ops";
    RolePolicy p = {.daemon_uid = 999, .has_group = true, .operators_gid = 500, .group_name = group,
                    .member_uids = members, .n_members = 1};
    PeerCred root = {.uid = 0, .gid = 0};
    PeerCred self = {.uid = 999, .gid = 999};
    PeerCred primary = {.uid = 1000, .gid = 500};
    PeerCred supp = {.uid = 1002, .gid = 100, .groups = {20, 500}, .n_groups = 2};
    PeerCred listed = {.uid = 1001, .gid = 100};
    PeerCred stranger = {.uid = 1003, .gid = 100, .groups = {20}, .n_groups = 1};
    const char *why;

    assert_int_equal(roles_decide(&p, &root, &why), ROLE_OPERATOR);
    assert_int_equal(roles_decide(&p, &self, &why), ROLE_OPERATOR);
    assert_int_equal(roles_decide(&p, &primary, &why), ROLE_OPERATOR);
    assert_int_equal(roles_decide(&p, &supp, &why), ROLE_OPERATOR);
    assert_int_equal(roles_decide(&p, &listed, &why), ROLE_OPERATOR);
    assert_int_equal(roles_decide(&p, &stranger, &why), ROLE_READER);
    assert_non_null(strstr(why, "not in the operators group"));
    p.has_group = false;
    assert_int_equal(roles_decide(&p, &primary, &why), ROLE_READER);
    assert_non_null(strstr(why, "no operators group"));
    assert_int_equal(roles_decide(&p, &root, &why), ROLE_OPERATOR);
}

static void test_roles_policy_build(void **state)
{
    (void)state;
    RolePolicy p;
    char err[128];
    assert_int_equal(roles_policy_build("root", &p, err, sizeof(err)), 0);
    assert_true(p.has_group);
    assert_int_equal(p.operators_gid, 0);
    roles_policy_done(&p);
    assert_int_equal(roles_policy_build("no-such-group-xyz", &p, err, sizeof(err)), DR_ECONFIG);
    assert_string_equal(err, "operators group 'no-such-group-xyz' does not exist");
    assert_int_equal(roles_policy_build(NULL, &p, err, sizeof(err)), 0);
    assert_false(p.has_group);
    roles_policy_done(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linebuf_splits_anywhere),
        cmocka_unit_test(test_linebuf_drops_overlong_lines_once_and_recovers),
        cmocka_unit_test(test_request_parse),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_error_reply_with_invalid_utf8_still_answers),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_roles_policy_build),
    };
    return cmocka_run_group_tests_name("ctlproto", tests, NULL, NULL);
}
