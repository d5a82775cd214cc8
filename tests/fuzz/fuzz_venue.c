/*
 * fuzz_venue: libFuzzer harness for daemon/cap/venue/venue_text.c.
 *
 * Owns nothing but the checks. The first byte picks what the rest is:
 *   even: a platform's answer body, decoded as the HTTP path does (json_loadb with JSON_DECODE_ANY,
 *         the body also as text) and read with venue_parse_mode under two configurations (the
 *         defaults, and a custom mode field with several values per mode). A mode other than
 *         unknown must come from a value that appears in the body: a halt is never confirmed out of
 *         thin air. The same answer is then read as positions and as fills through
 *         venue_map under the default mapping and a dialect one (nested list, side field, epoch
 *         seconds): a read either fails with a message or gives only well-formed canonical values
 *         (a symbol, decimal text, buy/sell, an RFC 3339 time that reads back).
 *   odd:  NUL-separated template and variable values for venue_expand, in all three escapings;
 *         then the escapings are checked against their decoders: a JSON-escaped value inside a
 *         JSON string reads back as the value, a percent-encoded one decodes back to it and holds
 *         only unreserved characters and %XX.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/venue/venue.h"
#include "cap/venue/venue_map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_venue_list[3][3] = {{"halted"}, {"shadow"}, {"live"}};
static const char *const fuzz_venue_custom[3][3] = {
    {"HALTED", "stopped"}, {"PAPER", "shadow-trading"}, {"LIVE", "trading"}};

/* A venue section as the loader builds it (owned strings); made once, kept for the run. */
static void fuzz_venue_config(ConfigVenue *cfg, const char *field, const char *const values[3][3], size_t n)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->enabled = true;
    cfg->mode_field = strdup(field);
    for (int m = 0; m < 3; m++) {
        cfg->mode_values[m] = calloc(n, sizeof(char *));
        if (!cfg->mode_values[m])
            abort();
        for (size_t i = 0; i < n; i++)
            cfg->mode_values[m][i] = strdup(values[m][i]);
        cfg->n_mode_values[m] = n;
    }
}

static char *fuzz_venue_s(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* The default mapping (dialect 0) and a dialect one (1), as the loader builds them. */
static void fuzz_venue_maps(ConfigVenueMap maps[2][2])
{
    for (int d = 0; d < 2; d++) {
        for (int f = 0; f < 2; f++) {
            ConfigVenueMap *m = &maps[d][f];
            m->list = d ? fuzz_venue_s("data.items") : NULL;
            m->symbol = fuzz_venue_s(d ? "inst.code" : "symbol");
            m->quantity = fuzz_venue_s(d ? "qty" : "quantity");
            m->side = fuzz_venue_s(f ? (d ? "" : "side") : (d ? "dir" : ""));
            m->avg_price = fuzz_venue_s(d ? "" : "avg_price");
            m->fill_id = fuzz_venue_s(d ? "id" : "fill_id");
            m->client_order_id = fuzz_venue_s(d ? "" : "client_order_id");
            m->order_id = fuzz_venue_s(d ? "o[0]" : "");
            m->price = fuzz_venue_s(d ? "px" : "price");
            m->fee = fuzz_venue_s(d ? "fee" : "");
            m->executed_at = fuzz_venue_s(d ? "ts" : "executed_at");
            m->time = d ? VENUE_TIME_S : VENUE_TIME_AUTO;
            m->plus = calloc(2, sizeof(char *));
            m->minus = calloc(2, sizeof(char *));
            if (!m->plus || !m->minus)
                abort();
            m->plus[0] = fuzz_venue_s("buy");
            m->plus[1] = fuzz_venue_s("LONG");
            m->minus[0] = fuzz_venue_s("sell");
            m->minus[1] = fuzz_venue_s("SHORT");
            m->n_plus = m->n_minus = 2;
        }
    }
}

static void fuzz_venue_check_decimal(const json_t *v)
{
    char *d = venue_map_decimal(v);
    if (!json_is_string(v) || !d)
        abort();
    free(d);
}

static void fuzz_venue_map(const json_t *answer, const char *body)
{
    static ConfigVenueMap maps[2][2]; /* [dialect][positions, fills] */
    static bool ready;
    const VenueMapSource src = {.action = "fuzz", .request = "GET http://fuzz/"};
    char msg[1024];
    size_t i;
    const json_t *el;

    if (!ready) {
        fuzz_venue_maps(maps);
        ready = true;
    }
    for (int d = 0; d < 2; d++) {
        json_t *pos = NULL;
        msg[0] = '\0';
        if (venue_map_positions(&maps[d][0], answer, body, &src, &pos, msg, sizeof(msg)) == 0) {
            json_array_foreach(pos, i, el) {
                if (!json_string_length(json_object_get(el, "symbol")))
                    abort();
                fuzz_venue_check_decimal(json_object_get(el, "quantity"));
            }
        } else if (!msg[0] || pos) {
            abort(); /* a failure always says why and gives nothing */
        }
        json_decref(pos);
        json_t *fills = json_array();
        size_t n = 0, added = 0;
        int64_t newest = 0;
        msg[0] = '\0';
        if (venue_map_fills(&maps[d][1], answer, body, &src, fills, &n, &added, &newest, msg, sizeof(msg)) == 0) {
            if (added > n || added != json_array_size(fills))
                abort();
            json_array_foreach(fills, i, el) {
                const char *side = json_string_value(json_object_get(el, "side"));
                int64_t us;
                if (!side || (strcmp(side, "buy") && strcmp(side, "sell")))
                    abort();
                fuzz_venue_check_decimal(json_object_get(el, "quantity"));
                fuzz_venue_check_decimal(json_object_get(el, "price"));
                if (venue_map_time(json_object_get(el, "executed_at"), VENUE_TIME_RFC3339, &us) < 0 || us > newest)
                    abort();
            }
        } else if (!msg[0]) {
            abort();
        }
        json_decref(fills);
    }
}

static void fuzz_venue_parse(const char *body, size_t len)
{
    static ConfigVenue cfgs[2];
    static bool ready;

    if (!ready) {
        fuzz_venue_config(&cfgs[0], "mode", fuzz_venue_list, 1);
        fuzz_venue_config(&cfgs[1], "state", fuzz_venue_custom, 2);
        ready = true;
    }
    json_t *answer = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    for (int c = 0; c < 2; c++) {
        VenueMode m = venue_parse_mode(&cfgs[c], answer, body);
        if (m == VENUE_MODE_UNKNOWN)
            continue;
        if (m != VENUE_MODE_HALTED && m != VENUE_MODE_SHADOW && m != VENUE_MODE_LIVE)
            abort();
        if (json_is_object(answer) || json_is_string(answer))
            continue; /* the value came through jansson, possibly escaped */
        /* Read as plain text: the value must be in the body as written. */
        bool seen = false;
        int idx = m == VENUE_MODE_HALTED ? 0 : m == VENUE_MODE_SHADOW ? 1 : 2;
        for (size_t i = 0; i < cfgs[c].n_mode_values[idx]; i++) {
            const char *v = cfgs[c].mode_values[idx][i];
            seen = seen || memmem(body, len, v, strlen(v));
        }
        if (!seen)
            abort();
    }
    fuzz_venue_map(answer, body);
    json_decref(answer);
}

static int fuzz_venue_hex(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

static void fuzz_venue_check_escapes(const char *value)
{
    const char *vars[][2] = {{"reason", value}};

    /* Percent-encoding: only unreserved characters and %XX, and it decodes back to the value. */
    char *u = venue_expand("x={{reason}}", 'u', vars, 1);
    if (!u)
        abort();
    size_t vl = strlen(value), o = 0;
    for (const char *p = u + 2; *p; p++) {
        int ch = (unsigned char)*p;
        if (ch == '%') {
            int hi = fuzz_venue_hex(p[1]), lo = hi < 0 ? -1 : fuzz_venue_hex(p[2]);
            if (hi < 0 || lo < 0)
                abort();
            ch = hi * 16 + lo;
            p += 2;
        } else if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                     strchr("-._~", ch))) {
            abort();
        }
        if (o >= vl || (unsigned char)value[o] != ch)
            abort();
        o++;
    }
    if (o != vl)
        abort();
    free(u);

    /* JSON escaping: inside a JSON string the value reads back unchanged (when it is UTF-8 at all). */
    json_t *as_json = json_string(value);
    if (!as_json)
        return;
    json_decref(as_json);
    char *j = venue_expand("{\"r\":\"{{reason}}\"}", 'j', vars, 1);
    if (!j)
        abort();
    json_t *back = json_loads(j, 0, NULL);
    const char *r = json_string_value(json_object_get(back, "r"));
    if (!r || strcmp(r, value) != 0)
        abort();
    json_decref(back);
    free(j);
}

static void fuzz_venue_expand(const char *in, size_t len)
{
    /* template \0 reason \0 run \0 since \0 cluster; missing values stay NULL (""). */
    const char *part[5] = {NULL};
    size_t np = 0;
    for (size_t off = 0; off <= len && np < 5;) {
        part[np++] = in + off;
        off += strlen(in + off) + 1;
    }
    const char *vars[][2] = {{"reason", part[1]}, {"run", part[2]}, {"since", part[3]}, {"cluster", part[4]}};
    static const char hows[] = {'j', 'u', 'r'};
    for (size_t h = 0; h < sizeof(hows); h++) {
        char *out = venue_expand(part[0], hows[h], vars, 4);
        if (!out)
            abort();
        free(out);
    }
    if (part[1])
        fuzz_venue_check_escapes(part[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return -1;
    /* The body as the HTTP layer hands it over: NUL-terminated, possibly with NULs inside. */
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    if (data[0] % 2 == 0)
        fuzz_venue_parse(buf, size - 1);
    else
        fuzz_venue_expand(buf, size - 1);
    free(buf);
    return 0;
}
