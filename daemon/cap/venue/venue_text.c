/*
 * venue_text: the pure text work of the venue adapter: expanding {{reason}}-style templates
 * (JSON-escaped, percent-encoded or raw) and reading the platform's mode from an answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/venue/venue.h"

/* ---- templates and answers ---- */

char *venue_expand(const char *tmpl, char how, const char *const vars[][2], size_t n_vars)
{
    size_t cap = strlen(tmpl) * 2 + 64, o = 0;
    char *out = malloc(cap);

    if (!out)
        return NULL;
#define VENUE_PUT(ch)                                                                                \
    do {                                                                                             \
        if (o + 8 >= cap) {                                                                          \
            char *n_ = realloc(out, cap *= 2);                                                       \
            if (!n_) {                                                                               \
                free(out);                                                                           \
                return NULL;                                                                         \
            }                                                                                        \
            out = n_;                                                                                \
        }                                                                                            \
        out[o++] = (ch);                                                                             \
    } while (0)
    for (const char *p = tmpl; *p;) {
        const char *val = NULL;
        size_t skip = 0;
        if (p[0] == '{' && p[1] == '{') {
            for (size_t i = 0; i < n_vars; i++) {
                size_t kl = strlen(vars[i][0]);
                if (strncmp(p + 2, vars[i][0], kl) == 0 && strncmp(p + 2 + kl, "}}", 2) == 0) {
                    val = vars[i][1] ? vars[i][1] : "";
                    skip = kl + 4;
                }
            }
        }
        if (!val) {
            VENUE_PUT(*p++);
            continue;
        }
        for (const unsigned char *s = (const unsigned char *)val; *s; s++) {
            if (how == 'j' && (*s == '"' || *s == '\\')) {
                VENUE_PUT('\\');
                VENUE_PUT((char)*s);
            } else if (how == 'j' && *s < 0x20) {
                char esc[8];
                snprintf(esc, sizeof(esc), "\\u%04x", *s);
                for (char *e = esc; *e; e++)
                    VENUE_PUT(*e);
            } else if (how == 'u' && !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                                       (*s >= '0' && *s <= '9') || strchr("-._~", *s))) {
                char esc[4];
                snprintf(esc, sizeof(esc), "%%%02X", *s);
                for (char *e = esc; *e; e++)
                    VENUE_PUT(*e);
            } else {
                VENUE_PUT((char)*s);
            }
        }
        p += skip;
    }
    out[o] = '\0';
#undef VENUE_PUT
    return out;
}

VenueMode venue_parse_mode(const ConfigVenue *cfg, const json_t *answer, const char *text)
{
    char buf[128];
    const char *value = NULL;

    if (json_is_object(answer)) {
        value = json_string_value(json_object_get(answer, cfg->mode_field ? cfg->mode_field : "mode"));
    } else if (json_is_string(answer)) {
        value = json_string_value(answer);
    } else if (text) {
        size_t n = 0;
        while (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')
            text++;
        while (text[n] && n + 1 < sizeof(buf) && text[n] != '\n' && text[n] != '\r') {
            buf[n] = text[n];
            n++;
        }
        while (n > 0 && buf[n - 1] == ' ')
            n--;
        buf[n] = '\0';
        value = buf;
    }
    if (!value)
        return VENUE_MODE_UNKNOWN;
    static const VenueMode modes[3] = {VENUE_MODE_HALTED, VENUE_MODE_SHADOW, VENUE_MODE_LIVE};
    for (int m = 0; m < 3; m++)
        for (size_t i = 0; i < cfg->n_mode_values[m]; i++)
            if (strcmp(value, cfg->mode_values[m][i]) == 0)
                return modes[m];
    return VENUE_MODE_UNKNOWN;
}

