/*
 * venue_map: the platform's positions and fills answers read through the configured mapping
 * (see venue_map.h and docs/venue.md). A value that is missing, null or unreadable is an error
 * naming the element, the field, the path, the action, its request and an excerpt, never a zero.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cap/venue/venue_map.h"
#include "err.h"
#include "jpath.h"

/* ---- values ---- */

/* Is [s, s+n) a decimal: [+-]digits[.digits][(e|E)[+-]digits], with at least one digit? */
static bool venue_map_is_decimal(const char *s)
{
    const char *p = s;
    bool digits = false;

    if (*p == '+' || *p == '-')
        p++;
    while (isdigit((unsigned char)*p))
        p++, digits = true;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++, digits = true;
    }
    if (!digits)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

char *venue_map_decimal(const json_t *v)
{
    char buf[64];

    if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d))
            return NULL;
        /* the shortest text that reads back as the same double */
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, sizeof(buf), "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        return strdup(buf);
    }
    if (json_is_string(v) && json_string_length(v) < 64 && venue_map_is_decimal(json_string_value(v)))
        return strdup(json_string_value(v));
    return NULL;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t venue_map_days(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool venue_map_num(const char **p, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *ret = v;
    return true;
}

/* RFC 3339: YYYY-MM-DD(T|t| )HH:MM:SS[.frac](Z|z|+HH:MM|-HH:MM); with zone_optional a missing zone
 * is UTC. */
static int venue_map_rfc3339(const char *s, bool zone_optional, int64_t *ret_us)
{
    const char *p = s;
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    int64_t frac_us = 0;

    if (!venue_map_num(&p, 4, &y) || *p++ != '-' || !venue_map_num(&p, 2, &mo) || *p++ != '-' ||
        !venue_map_num(&p, 2, &d))
        return -EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -EINVAL;
    p++;
    if (!venue_map_num(&p, 2, &h) || *p++ != ':' || !venue_map_num(&p, 2, &mi) || *p++ != ':' ||
        !venue_map_num(&p, 2, &sec))
        return -EINVAL;
    if (*p == '.' || *p == ',') {
        int64_t scale = 100000;
        p++;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        for (; isdigit((unsigned char)*p); p++, scale /= 10)
            frac_us += scale > 0 ? (*p - '0') * scale : 0;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '-' ? -1 : 1;
        if (!venue_map_num(&p, 2, &oh) || *p++ != ':' || !venue_map_num(&p, 2, &om))
            return -EINVAL;
    } else if (!zone_optional) {
        return -EINVAL;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || oh > 23 || om > 59)
        return -EINVAL;
    int64_t t = venue_map_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + (sec == 60 ? 59 : sec);
    t -= sign * (oh * 3600 + om * 60);
    *ret_us = t * 1000000 + frac_us;
    return 0;
}

/* An epoch number (JSON number or decimal string) times `scale` microseconds. */
static int venue_map_epoch(const json_t *v, int64_t scale, int64_t *ret_us)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0 || n > INT64_MAX / scale)
            return -EINVAL;
        *ret_us = (int64_t)n * scale;
        return 0;
    }
    double d;
    if (json_is_real(v))
        d = json_real_value(v);
    else if (json_is_string(v) && venue_map_is_decimal(json_string_value(v)))
        d = strtod(json_string_value(v), NULL);
    else
        return -EINVAL;
    if (!isfinite(d) || d < 0 || d * (double)scale > 9.2e18)
        return -EINVAL;
    *ret_us = (int64_t)llround(d * (double)scale);
    return 0;
}

int venue_map_time(const json_t *v, int fmt, int64_t *ret_us)
{
    switch (fmt) {
    case VENUE_TIME_RFC3339:
    case VENUE_TIME_UTC:
        return json_is_string(v) ? venue_map_rfc3339(json_string_value(v), fmt == VENUE_TIME_UTC, ret_us) : -EINVAL;
    case VENUE_TIME_S:
        return venue_map_epoch(v, 1000000, ret_us);
    case VENUE_TIME_MS:
        return venue_map_epoch(v, 1000, ret_us);
    case VENUE_TIME_US:
        return venue_map_epoch(v, 1, ret_us);
    default: /* auto */
        if (json_is_number(v))
            return venue_map_epoch(v, 1000, ret_us);
        return json_is_string(v) ? venue_map_rfc3339(json_string_value(v), false, ret_us) : -EINVAL;
    }
}

void venue_map_format_time(int64_t us, bool micro, char *out, size_t n)
{
    time_t secs = (time_t)(us >= 0 ? us / 1000000 : (us - 999999) / 1000000);
    int64_t frac = us - (int64_t)secs * 1000000;
    struct tm tm;

    gmtime_r(&secs, &tm);
    if (micro)
        snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06" PRId64 "Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    else
        snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03" PRId64 "Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, frac / 1000);
}

void venue_map_window_vars(int64_t since_ms, int64_t until_ms, const char *cursor, char buf[VENUE_WINDOW_VARS][40],
                           const char *vars[VENUE_WINDOW_VARS][2])
{
    static const char *const names[2][5] = {{"since", "since:ms", "since:s", "since:us", "since:rfc3339"},
                                            {"until", "until:ms", "until:s", "until:us", "until:rfc3339"}};
    for (int w = 0; w < 2; w++) {
        int64_t ms = w ? until_ms : since_ms;
        char(*b)[40] = buf + w * 5;
        snprintf(b[0], 40, "%" PRId64, ms);
        snprintf(b[1], 40, "%" PRId64, ms);
        snprintf(b[2], 40, "%" PRId64, ms / 1000);
        snprintf(b[3], 40, "%" PRId64, ms * 1000);
        venue_map_format_time(ms * 1000, false, b[4], 40);
        for (int f = 0; f < 5; f++) {
            vars[w * 5 + f][0] = names[w][f];
            vars[w * 5 + f][1] = b[f];
        }
    }
    vars[10][0] = "cursor";
    vars[10][1] = cursor ? cursor : "";
}

/* ---- errors ---- */

/* A compact excerpt of a JSON value (or of text) for a message. */
static void venue_map_excerpt(const json_t *v, const char *text, char *out, size_t n)
{
    char *dump = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    const char *s = dump ? dump : text ? text : "";
    size_t len = strlen(s), max = n > 4 ? n - 4 : 0;

    if (len > max && max > 0)
        snprintf(out, n, "%.*s...", (int)max, s);
    else
        snprintf(out, n, "%s", s);
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    free(dump);
}

static int venue_map_fail(char *msg, size_t msglen, const VenueMapSource *src, const char *what, size_t i,
                          const char *field, const char *path, const char *problem, const json_t *element)
{
    char ex[240];
    venue_map_excerpt(element, NULL, ex, sizeof(ex));
    snprintf(msg, msglen, "%s[%zu].%s (path \"%s\"): %s in the answer of %s (%s): %s", what, i, field, path, problem,
             src->action, src->request ? src->request : "?", ex);
    return DR_EPROTO;
}

/* The list of an answer: at m->list, or the answer when it is a list, or its `what` field. */
static const json_t *venue_map_list(const ConfigVenueMap *m, const json_t *answer, const char *text,
                                    const VenueMapSource *src, const char *what, char *msg, size_t msglen)
{
    char ex[240];
    const json_t *l;

    if (!answer) {
        venue_map_excerpt(NULL, text, ex, sizeof(ex));
        snprintf(msg, msglen, "%s: the answer of %s (%s) is not JSON: %s", what, src->action,
                 src->request ? src->request : "?", ex[0] ? ex : "(empty)");
        return NULL;
    }
    if (m->list && m->list[0])
        l = jpath_get(answer, m->list);
    else if (m->list)
        l = answer;
    else
        l = json_is_array(answer) ? answer : json_object_get(answer, what);
    if (!json_is_array(l)) {
        venue_map_excerpt(answer, NULL, ex, sizeof(ex));
        if (m->list)
            snprintf(msg, msglen, "%s: no list at path \"%s\" in the answer of %s (%s): %s", what, m->list,
                     src->action, src->request ? src->request : "?", ex);
        else
            snprintf(msg, msglen, "%s: the answer of %s (%s) is neither a list nor an object with a \"%s\" list "
                                  "(set answer.list): %s",
                     what, src->action, src->request ? src->request : "?", what, ex);
        return NULL;
    }
    return l;
}

/* A required (or, with optional, possibly unmapped: *ret NULL) field as its raw JSON value. */
static int venue_map_field(const json_t *el, const char *path, bool optional, const json_t **ret, const char **problem)
{
    *ret = NULL;
    if (!path || !path[0]) {
        *problem = "not mapped";
        return optional ? 0 : -EINVAL;
    }
    const json_t *v = jpath_get(el, path);
    if (!v || json_is_null(v)) {
        if (optional) /* an optional field the platform leaves out or sends as null: the replay gets NULL */
            return 0;
        *problem = v ? "null" : "missing";
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

static bool venue_map_in(const json_t *v, char *const *list, size_t n)
{
    const char *s = json_string_value(v);
    char num[32];

    if (!s && json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = num;
    }
    for (size_t i = 0; s && i < n; i++)
        if (strcasecmp(s, list[i]) == 0)
            return true;
    return false;
}

/* Signed quantity text from an unsigned quantity and a side (+1/-1). */
static char *venue_map_signed(const char *q, int sign)
{
    size_t n = strlen(q);
    char *out = malloc(n + 2);
    if (!out)
        return NULL;
    if (*q == '+')
        q++;
    snprintf(out, n + 2, "%s%s", sign < 0 ? "-" : "", q);
    return out;
}

/* The side of an element: +1 (long/buy), -1 (short/sell), 0 with a problem. */
static int venue_map_side(const ConfigVenueMap *m, const json_t *side, char *problem, size_t n, bool fills)
{
    if (venue_map_in(side, m->plus, m->n_plus))
        return 1;
    if (venue_map_in(side, m->minus, m->n_minus))
        return -1;
    char ex[80];
    venue_map_excerpt(side, NULL, ex, sizeof(ex));
    snprintf(problem, n, "the value %s is neither %s (%s%s) nor %s (%s%s)", ex, fills ? "buy" : "long", m->plus[0],
             m->n_plus > 1 ? ", ..." : "", fills ? "sell" : "short", m->minus[0], m->n_minus > 1 ? ", ..." : "");
    return 0;
}

/* ---- positions ---- */

int venue_map_positions(const ConfigVenueMap *m, const json_t *answer, const char *text, const VenueMapSource *src,
                        json_t **ret, char *msg, size_t msglen)
{
    const json_t *list = venue_map_list(m, answer, text, src, "positions", msg, msglen);
    json_t *out;
    size_t i;
    const json_t *el;

    *ret = NULL;
    if (!list)
        return DR_EPROTO;
    if (!(out = json_array()))
        return -ENOMEM;
    json_array_foreach(list, i, el) {
        const json_t *sym, *qty, *avg = NULL, *side = NULL;
        const char *problem = NULL;
        char sidewhy[200];
        char *q = NULL, *p = NULL;
        int r = 0;

        if (venue_map_field(el, m->symbol, false, &sym, &problem) < 0)
            r = venue_map_fail(msg, msglen, src, "positions", i, "symbol", m->symbol, problem, el);
        else if (!json_is_string(sym) || !json_string_length(sym))
            r = venue_map_fail(msg, msglen, src, "positions", i, "symbol", m->symbol, "not a non-empty string", el);
        else if (venue_map_field(el, m->quantity, false, &qty, &problem) < 0)
            r = venue_map_fail(msg, msglen, src, "positions", i, "quantity", m->quantity, problem, el);
        else if (!(q = venue_map_decimal(qty)))
            r = venue_map_fail(msg, msglen, src, "positions", i, "quantity", m->quantity, "not a number", el);
        else if (m->avg_price && m->avg_price[0] && venue_map_field(el, m->avg_price, false, &avg, &problem) < 0)
            r = venue_map_fail(msg, msglen, src, "positions", i, "avg_price", m->avg_price, problem, el);
        else if (avg && !(p = venue_map_decimal(avg)))
            r = venue_map_fail(msg, msglen, src, "positions", i, "avg_price", m->avg_price, "not a number", el);
        else if (m->side && m->side[0]) {
            if (venue_map_field(el, m->side, false, &side, &problem) < 0) {
                r = venue_map_fail(msg, msglen, src, "positions", i, "side", m->side, problem, el);
            } else if (q[0] == '-') {
                r = venue_map_fail(msg, msglen, src, "positions", i, "quantity", m->quantity,
                                   "negative although a side field is mapped (answer.side)", el);
            } else {
                int sign = venue_map_side(m, side, sidewhy, sizeof(sidewhy), false);
                char *sq = sign ? venue_map_signed(q, sign) : NULL;
                if (!sign)
                    r = venue_map_fail(msg, msglen, src, "positions", i, "side", m->side, sidewhy, el);
                else if (!sq)
                    r = -ENOMEM;
                free(q);
                q = sq;
            }
        }
        if (r == 0 && json_array_append_new(out, json_pack("{s:s,s:s,s:s?}", "symbol", json_string_value(sym),
                                                           "quantity", q, "avg_price", p)) < 0)
            r = -ENOMEM;
        free(q);
        free(p);
        if (r < 0) {
            json_decref(out);
            return r;
        }
    }
    *ret = out;
    return 0;
}

/* ---- fills ---- */

static bool venue_map_has_fill(const json_t *into, const char *id)
{
    size_t i;
    const json_t *f;
    json_array_foreach(into, i, f) {
        const char *fid = json_string_value(json_object_get(f, "fill_id"));
        if (fid && strcmp(fid, id) == 0)
            return true;
    }
    return false;
}

/* An identifier: a non-empty string, or an integer as its digits. NULL when neither. */
static char *venue_map_ident(const json_t *v)
{
    char buf[32];
    if (json_is_string(v) && json_string_length(v) > 0)
        return strdup(json_string_value(v));
    if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    }
    return NULL;
}

int venue_map_fills(const ConfigVenueMap *m, const json_t *answer, const char *text, const VenueMapSource *src,
                    json_t *into, size_t *n_page, size_t *added, int64_t *newest_us, char *msg, size_t msglen)
{
    const json_t *list = venue_map_list(m, answer, text, src, "fills", msg, msglen);
    size_t i;
    const json_t *el;
    static const char *const time_names[] = {"a number (epoch ms) or an RFC 3339 string", "an RFC 3339 time",
                                             "an RFC 3339 time", "epoch seconds", "epoch milliseconds",
                                             "epoch microseconds"};

    *n_page = *added = 0;
    *newest_us = 0;
    if (!list)
        return DR_EPROTO;
    json_array_foreach(list, i, el) {
        /* the fields, in the order of the canonical fill */
        static const char *const names[] = {"fill_id", "client_order_id", "order_id", "symbol", "side",
                                            "quantity", "price", "fee", "executed_at"};
        const char *paths[9] = {m->fill_id, m->client_order_id, m->order_id, m->symbol, m->side,
                                m->quantity, m->price, m->fee, m->executed_at};
        /* optional: client_order_id, order_id, fee (a named side is required; an unnamed one is the sign) */
        const bool optional[9] = {false, true, true, false, false, false, false, true, false};
        const json_t *raw[9];
        char *val[9] = {0};
        const char *problem = NULL;
        char why[200];
        int sign = 0, r = 0;
        int64_t us = 0;

        for (int k = 0; k < 9 && r == 0; k++) {
            if (k == 4 && (!paths[k] || !paths[k][0])) {
                raw[k] = NULL; /* the side is the quantity's sign */
                continue;
            }
            if (venue_map_field(el, paths[k], optional[k], &raw[k], &problem) < 0)
                r = venue_map_fail(msg, msglen, src, "fills", i, names[k], paths[k], problem, el);
        }
        for (int k = 0; k < 9 && r == 0; k++) {
            if (!raw[k])
                continue;
            switch (k) {
            case 0: case 1: case 2:
                if (!(val[k] = venue_map_ident(raw[k])))
                    r = venue_map_fail(msg, msglen, src, "fills", i, names[k], paths[k], "not a string or an integer", el);
                break;
            case 3:
                if (!json_is_string(raw[k]) || !json_string_length(raw[k]) || !(val[k] = strdup(json_string_value(raw[k]))))
                    r = venue_map_fail(msg, msglen, src, "fills", i, names[k], paths[k], "not a non-empty string", el);
                break;
            case 4:
                if (!(sign = venue_map_side(m, raw[k], why, sizeof(why), true)))
                    r = venue_map_fail(msg, msglen, src, "fills", i, names[k], paths[k], why, el);
                break;
            case 5: case 6: case 7:
                if (!(val[k] = venue_map_decimal(raw[k])))
                    r = venue_map_fail(msg, msglen, src, "fills", i, names[k], paths[k], "not a number", el);
                break;
            case 8:
                if (venue_map_time(raw[k], m->time, &us) < 0) {
                    snprintf(why, sizeof(why), "not %s (answer.time)", time_names[m->time]);
                    r = venue_map_fail(msg, msglen, src, "fills", i, names[k], paths[k], why, el);
                }
                break;
            default:
                break;
            }
        }
        if (r == 0) {
            /* the side: named, then the quantity is unsigned; else the quantity's sign */
            if (sign && val[5][0] == '-') {
                r = venue_map_fail(msg, msglen, src, "fills", i, "quantity", m->quantity,
                                   "negative although a side field is mapped (answer.side)", el);
            } else if (!sign) {
                sign = val[5][0] == '-' ? -1 : 1;
                size_t skip = val[5][0] == '-' || val[5][0] == '+';
                memmove(val[5], val[5] + skip, strlen(val[5] + skip) + 1);
            }
        }
        if (r == 0) {
            char when[40];
            venue_map_format_time(us, true, when, sizeof(when));
            (*n_page)++;
            if (us > *newest_us)
                *newest_us = us;
            if (!venue_map_has_fill(into, val[0])) {
                json_t *f = json_pack("{s:s,s:s?,s:s?,s:s,s:s,s:s,s:s,s:s?,s:s}", "fill_id", val[0], "client_order_id",
                                      val[1], "order_id", val[2], "symbol", val[3], "side", sign > 0 ? "buy" : "sell",
                                      "quantity", val[5], "price", val[6], "fee", val[7], "executed_at", when);
                if (!f || json_array_append_new(into, f) < 0)
                    r = -ENOMEM;
                else
                    (*added)++;
            }
        }
        for (int k = 0; k < 9; k++)
            free(val[k]);
        if (r < 0)
            return r;
    }
    return 0;
}

char *venue_map_cursor(const json_t *answer, const char *path)
{
    const json_t *c = jpath_get(answer, path);
    char buf[32];

    if (json_is_string(c) && json_string_length(c) > 0)
        return strdup(json_string_value(c));
    if (json_is_integer(c)) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(c));
        return strdup(buf);
    }
    return NULL;
}
