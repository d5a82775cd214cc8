/*
 * venue_read: reading the exchange's positions and fills through the answer mapping, every page of
 * them (venue.fills.pages), and the operator's `venue_check` command (drctl venue check) that shows what the daemon
 * understood of each read-only action (docs/venue.md).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/venue/venue_internal.h"
#include "cap/venue/venue_map.h"
#include "clock.h"
#include "core/control.h"
#include "core/core.h"
#include "err.h"

typedef struct VenueRead {
    Venue *v;
    VenueActionId id;
    int64_t since_ms, until_ms;
    char *cursor;
    int64_t pages;
    json_t *acc;
    VenueReadFn cb;
    void *data;
    char request[320];
} VenueRead;

static const char *venue_read_name(VenueActionId id)
{
    return id == VENUE_POSITIONS ? "positions" : id == VENUE_FILLS ? "fills" : "status";
}

static void venue_read_finish(VenueRead *rd, int result, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void venue_read_finish(VenueRead *rd, int result, const char *fmt, ...)
{
    char msg[1024] = "";

    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    rd->cb(result, result == 0 ? rd->acc : NULL, rd->request, msg, rd->data);
    json_decref(rd->acc);
    free(rd->cursor);
    free(rd);
}

static void venue_read_on_answer(int result, const json_t *answer, const char *text, const char *message, void *data);

static int venue_read_page(VenueRead *rd)
{
    VenueWindow w = {.since_ms = rd->since_ms, .until_ms = rd->until_ms, .cursor = rd->cursor};
    rd->pages++;
    return venue__action(rd->v, rd->id, &w, venue_read_on_answer, rd, rd->request, sizeof(rd->request));
}

static void venue_read_on_answer(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    VenueRead *rd = data;
    const ConfigVenue *cfg = venue__cfg(rd->v);
    const ConfigVenuePages *pg = &cfg->pages;
    VenueMapSource src = {.action = venue_read_name(rd->id), .request = rd->request};
    char msg[1024];
    size_t n_page = 0, added = 0;
    int64_t newest_us = 0;
    int r;

    if (result < 0) {
        venue_read_finish(rd, result, "cannot read the exchange's %s (%s): %s", src.action, rd->request,
                          message && message[0] ? message : err_str(result));
        return;
    }
    if (rd->id == VENUE_POSITIONS) {
        json_t *list = NULL;
        r = venue_map_positions(&cfg->positions_map, answer, text, &src, &list, msg, sizeof(msg));
        rd->acc = list;
        venue_read_finish(rd, r, "%s", r < 0 ? msg : "");
        return;
    }
    r = venue_map_fills(&cfg->fills_map, answer, text, &src, rd->acc, &n_page, &added, &newest_us, msg, sizeof(msg));
    if (r < 0) {
        venue_read_finish(rd, r, "%s", msg);
        return;
    }
    if (pg->by == VENUE_PAGES_CURSOR) {
        char *next = venue_map_cursor(answer, pg->cursor);
        free(rd->cursor);
        rd->cursor = next;
        if (!next) {
            venue_read_finish(rd, 0, NULL);
            return;
        }
    } else if (pg->by == VENUE_PAGES_SINCE) {
        if ((int64_t)n_page < pg->limit) {
            venue_read_finish(rd, 0, NULL);
            return;
        }
        if (added == 0) {
            venue_read_finish(rd, DR_EPROTO,
                              "fills: paging by since makes no progress: a full page of %zu fills (pages.limit %" PRId64
                              ") brought none that was not read already (%s)",
                              n_page, pg->limit, rd->request);
            return;
        }
        rd->since_ms = newest_us / 1000;
    } else {
        venue_read_finish(rd, 0, NULL);
        return;
    }
    if (rd->pages >= pg->max) {
        venue_read_finish(rd, DR_EPROTO,
                          "fills: more than %" PRId64 " pages (venue.fills.pages.max) and the platform has more (%s); "
                          "failing closed rather than reconciling with part of the fills",
                          pg->max, rd->request);
        return;
    }
    if ((r = venue_read_page(rd)) < 0)
        venue_read_finish(rd, r, "cannot read the next page of the exchange's fills: %s", err_str(r));
}

int venue_read(Venue *v, VenueActionId id, int64_t since_ms, VenueReadFn cb, void *data)
{
    VenueRead *rd;
    int r;

    if (id != VENUE_POSITIONS && id != VENUE_FILLS)
        return -EINVAL;
    if (!(rd = calloc(1, sizeof(*rd))))
        return -ENOMEM;
    *rd = (VenueRead){.v = v, .id = id, .since_ms = since_ms, .until_ms = clock_wall_ms(), .cb = cb, .data = data};
    if (id == VENUE_FILLS && !(rd->acc = json_array())) {
        free(rd);
        return -ENOMEM;
    }
    if ((r = venue_read_page(rd)) < 0) {
        json_decref(rd->acc);
        free(rd);
    }
    return r;
}

/* ---- venue_check ---- */

#define VENUE_CHECK_FILLS 10 /* the newest fills shown */

typedef struct VenueCheck {
    Venue *v;
    CtlCall *call;
    int pending;
    json_t *result;
    char status_request[320];
} VenueCheck;

static void venue_check_done(VenueCheck *vc)
{
    if (--vc->pending > 0)
        return;
    bool ok = true;
    const char *part[3] = {"status", "positions", "fills"};
    for (int i = 0; i < 3; i++) {
        const json_t *p = json_object_get(vc->result, part[i]);
        if (json_is_true(json_object_get(p, "configured")) && !json_is_true(json_object_get(p, "ok")))
            ok = false;
    }
    json_object_set_new(vc->result, "ok", json_boolean(ok));
    control_reply_ok(vc->call, vc->result);
    free(vc);
}

static void venue_check_set(VenueCheck *vc, const char *what, json_t *part)
{
    json_object_set_new(vc->result, what, part ? part : json_pack("{s:b,s:s}", "ok", 0, "error", "out of memory"));
}

static void venue_check_on_status(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    VenueCheck *vc = data;
    const ConfigVenue *cfg = venue__cfg(vc->v);
    char excerpt[160];

    snprintf(excerpt, sizeof(excerpt), "%.150s", text ? text : "");
    for (char *p = excerpt; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (result < 0) {
        venue_check_set(vc, "status", json_pack("{s:b,s:b,s:s,s:s}", "configured", 1, "ok", 0, "request",
                                                vc->status_request, "error", message && message[0] ? message : err_str(result)));
    } else {
        VenueMode m = venue_parse_mode(cfg, answer, text);
        char why[400] = "";
        if (m == VENUE_MODE_UNKNOWN)
            snprintf(why, sizeof(why), "the mode (path \"%s\") is missing or in none of venue.modes (halted: %s, shadow: "
                                       "%s, live: %s) in the answer: %s",
                     cfg->mode_field, cfg->mode_values[0][0], cfg->mode_values[1][0], cfg->mode_values[2][0], excerpt);
        venue_check_set(vc, "status", json_pack("{s:b,s:b,s:s,s:s,s:s,s:s?}", "configured", 1, "ok", m != VENUE_MODE_UNKNOWN,
                                                "request", vc->status_request, "mode", venue_mode_name(m), "answer", excerpt,
                                                "error", why[0] ? why : NULL));
    }
    venue_check_done(vc);
}

static void venue_check_on_read(VenueCheck *vc, const char *what, int result, const json_t *list, const char *request,
                                const char *message)
{
    json_t *part;
    if (result < 0) {
        part = json_pack("{s:b,s:b,s:s,s:s}", "configured", 1, "ok", 0, "request", request ? request : "", "error",
                         message && message[0] ? message : err_str(result));
    } else {
        size_t n = json_array_size(list);
        json_t *shown = json_array();
        /* fills: the newest ones (the list is in the platform's order; sort-free: the last few) */
        size_t from = !strcmp(what, "fills") && n > VENUE_CHECK_FILLS ? n - VENUE_CHECK_FILLS : 0;
        for (size_t i = from; shown && i < n; i++)
            json_array_append(shown, json_array_get(list, i));
        part = json_pack("{s:b,s:b,s:s,s:I,s:o}", "configured", 1, "ok", 1, "request", request ? request : "", "count",
                         (json_int_t)n, what, shown ? shown : json_array());
    }
    venue_check_set(vc, what, part);
    venue_check_done(vc);
}

static void venue_check_on_positions(int result, const json_t *list, const char *request, const char *message, void *data)
{
    venue_check_on_read(data, "positions", result, list, request, message);
}

static void venue_check_on_fills(int result, const json_t *list, const char *request, const char *message, void *data)
{
    venue_check_on_read(data, "fills", result, list, request, message);
}

static void venue_cmd_check(CtlCall *call, const json_t *args, void *data)
{
    Venue *v = data;
    const ConfigVenue *cfg = venue__cfg(v);
    VenueCheck *vc;
    int64_t since = clock_wall_ms() - (int64_t)v->core->cfg->reconcile.default_since_ms;
    char buf[40];

    (void)args;
    if (!venue_enabled(v)) {
        control_reply_error(call, -ENOTSUP, "no venue is configured");
        return;
    }
    if (!(vc = calloc(1, sizeof(*vc))) || !(vc->result = json_object())) {
        free(vc);
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    vc->v = v;
    vc->call = call;
    vc->pending = 1; /* released at the end, so no answer finishes the check early */
    venue_map_format_time(since * 1000, false, buf, sizeof(buf));
    json_object_set_new(vc->result, "fills_since", json_string(buf));
    static const VenueActionId ids[3] = {VENUE_STATUS, VENUE_POSITIONS, VENUE_FILLS};
    for (int i = 0; i < 3; i++) {
        const char *what = venue_read_name(ids[i]);
        int r;
        if (cfg->actions[ids[i]].kind == VENUE_ACTION_NONE) {
            venue_check_set(vc, what, json_pack("{s:b,s:b}", "configured", 0, "ok", 0));
            continue;
        }
        vc->pending++;
        if (ids[i] == VENUE_STATUS)
            r = venue__action(v, VENUE_STATUS, NULL, venue_check_on_status, vc, vc->status_request,
                              sizeof(vc->status_request));
        else
            r = venue_read(v, ids[i], since, ids[i] == VENUE_FILLS ? venue_check_on_fills : venue_check_on_positions, vc);
        if (r < 0) {
            venue_check_set(vc, what, json_pack("{s:b,s:b,s:s}", "configured", 1, "ok", 0, "error", err_str(r)));
            vc->pending--;
        }
    }
    venue_check_done(vc);
}

int venue__register_check(Venue *v)
{
    CtlCommand cmd = {"venue_check", true, venue_cmd_check, v,
                      "call status, positions and fills once and show what the daemon understood of each"};
    return control_register(v->core->control, &cmd, 1);
}
