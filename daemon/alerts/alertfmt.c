/*
 * alertfmt: wire formats, classification, Retry-After and rate arithmetic for alerts (see alertfmt.h).
 */
#include "alerts/alertfmt.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "err.h"

static const char *const alertfmt_channel_names[ALERT_CH_COUNT] = {"pagerduty", "slack", "webhook"};

const char *alertfmt_channel_name(AlertChannel ch)
{
    return (unsigned)ch < ALERT_CH_COUNT ? alertfmt_channel_names[ch] : "unknown";
}

int alertfmt_channel_parse(const char *name, AlertChannel *ret)
{
    for (unsigned i = 0; i < ALERT_CH_COUNT; i++) {
        if (name && strcmp(name, alertfmt_channel_names[i]) == 0) {
            *ret = (AlertChannel)i;
            return 0;
        }
    }
    return -EINVAL;
}

void alertfmt_msg_free_fields(AlertMsg *m)
{
    if (!m)
        return;
    free(m->kind);
    free(m->condition);
    free(m->summary);
    free(m->dedup_key);
    json_decref(m->details);
    memset(m, 0, sizeof(*m));
}

json_t *alertfmt_msg_to_json(const AlertMsg *m)
{
    json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s?,s:b,s:s,s:I,s:s,s:I}", "seq", (json_int_t)m->seq, "channel",
                          alertfmt_channel_name(m->channel), "severity", events_severity_name(m->severity), "kind",
                          m->kind, "condition", m->condition, "resolved", m->resolved, "summary", m->summary,
                          "ts_ms", (json_int_t)m->ts_ms, "dedup_key", m->dedup_key, "occurrences",
                          (json_int_t)m->occurrences);
    if (o && m->details)
        json_object_set(o, "details", m->details);
    return o;
}

int alertfmt_msg_from_json(const json_t *j, AlertMsg *ret)
{
    AlertMsg m = {0};
    const char *ch = NULL, *sev = NULL, *kind = NULL, *cond = NULL, *summary = NULL, *key = NULL;
    json_int_t seq = 0, ts = 0, occ = 1;
    int resolved = 0;
    json_error_t jerr;

    if (json_unpack_ex((json_t *)(uintptr_t)j, &jerr, 0, "{s:I,s:s,s:s,s:s,s:b,s:s,s:I,s:s,s?I}", "seq", &seq,
                       "channel", &ch, "severity", &sev, "kind", &kind, "resolved", &resolved, "summary", &summary,
                       "ts_ms", &ts, "dedup_key", &key, "occurrences", &occ) < 0)
        return -EINVAL;
    const json_t *jc = json_object_get(j, "condition");
    if (jc && !json_is_null(jc) && !(cond = json_string_value(jc)))
        return -EINVAL;
    if (seq <= 0 || alertfmt_channel_parse(ch, &m.channel) < 0 || events_severity_parse(sev, &m.severity) < 0)
        return -EINVAL;
    m.seq = (uint64_t)seq;
    m.ts_ms = ts;
    m.resolved = resolved;
    m.occurrences = occ > 0 ? (uint64_t)occ : 1;
    m.kind = strdup(kind);
    m.condition = cond ? strdup(cond) : NULL;
    m.summary = strdup(summary);
    m.dedup_key = strdup(key);
    json_t *d = json_object_get(j, "details");
    m.details = json_is_object(d) ? json_incref(d) : NULL;
    if (!m.kind || !m.summary || !m.dedup_key || (cond && !m.condition)) {
        alertfmt_msg_free_fields(&m);
        return -ENOMEM;
    }
    *ret = m;
    return 0;
}

void alertfmt_iso8601(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];

    gmtime_r(&t, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%.20s.%03u+0000", base, (unsigned)(((ms % 1000) + 1000) % 1000));
}

void alertfmt_dedup_key(const char *cluster, const char *condition, int64_t boot_ms, uint64_t ev_seq, char *out,
                        size_t n)
{
    char key[2048];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (condition)
        snprintf(key, sizeof(key), "drsup:%s:%s", cluster, condition);
    else
        snprintf(key, sizeof(key), "drsup:%s:event:%lld.%llu", cluster, (long long)boot_ms,
                 (unsigned long long)ev_seq);
    if (strlen(key) > ALERTFMT_PD_DEDUP_MAX &&
        EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) == 1) {
        char *p = key + ALERTFMT_PD_DEDUP_MAX - 17;
        *p++ = '~';
        for (unsigned i = 0; i < 8; i++)
            p += sprintf(p, "%02x", md[i]);
    }
    snprintf(out, n, "%s", key);
}

char *alertfmt_truncate_utf8(const char *s, size_t max_chars)
{
    size_t chars = 0, i = 0, cut = 0;

    if (max_chars == 0)
        return strdup("");
    for (i = 0; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max_chars - 1)
                cut = i;
            chars++;
        }
    }
    if (chars <= max_chars)
        return strdup(s);
    char *o = malloc(cut + 4);
    if (!o)
        return NULL;
    memcpy(o, s, cut);
    memcpy(o + cut, "\xe2\x80\xa6", 4); /* "…" */
    return o;
}

static const char *alertfmt_component(const AlertMsg *m, char *buf, size_t n)
{
    const char *src = m->condition ? m->condition : m->kind;
    size_t len;

    if (!m->condition) {
        const char *dot = strrchr(m->kind, '.');
        src = dot ? dot + 1 : m->kind;
    }
    len = strcspn(src, ".:");
    snprintf(buf, n, "%.*s", (int)len, src);
    return buf;
}

json_t *alertfmt_pagerduty(const AlertMsg *m, const AlertCtx *ctx, const char *routing_key)
{
    char ts[40], comp[128];

    if (m->resolved)
        return json_pack("{s:s,s:s,s:s}", "routing_key", routing_key, "dedup_key", m->dedup_key, "event_action",
                         "resolve");
    char *summary = alertfmt_truncate_utf8(m->summary, ALERTFMT_PD_SUMMARY_MAX);
    if (!summary)
        return NULL;
    alertfmt_iso8601(m->ts_ms, ts, sizeof(ts));
    json_t *custom = json_pack("{s:s?,s:s,s:I,s:s,s:s}", "condition", m->condition, "cluster", ctx->cluster,
                               "occurrences", (json_int_t)m->occurrences, "what_the_daemon_does",
                               alertfmt_action_text(m), "look_closer", alertfmt_drctl_hint(m));
    if (custom && m->details)
        json_object_set(custom, "details", m->details);
    json_t *o = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o*},s:s}", "routing_key", routing_key,
                          "event_action", "trigger", "dedup_key", m->dedup_key, "payload", "summary", summary,
                          "source", ctx->source, "severity", events_severity_name(m->severity), "timestamp", ts,
                          "component", alertfmt_component(m, comp, sizeof(comp)), "group", ctx->cluster, "class",
                          m->kind, "custom_details", custom, "client", "drsupervisor");
    free(summary);
    return o;
}

/* Append raw (already safe) text; same cutting rules as alertfmt_slack_escape. */
static bool alertfmt_append(char *buf, size_t max, const char *s)
{
    size_t len = strlen(buf);
    for (; *s; s++) {
        size_t clen = 1;
        unsigned char c = (unsigned char)*s;
        if (c >= 0xF0)
            clen = 4;
        else if (c >= 0xE0)
            clen = 3;
        else if (c >= 0xC0)
            clen = 2;
        if (len + clen >= max) {
            buf[len] = '\0';
            return false;
        }
        for (size_t k = 0; k < clen && s[k]; k++)
            buf[len++] = s[k];
        s += clen - 1;
    }
    buf[len] = '\0';
    return true;
}

bool alertfmt_slack_escape(char *buf, size_t max, const char *s)
{
    char one[5];
    for (; *s; s++) {
        const char *piece = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
        if (!piece) {
            size_t clen = 1;
            unsigned char c = (unsigned char)*s;
            if (c >= 0xF0)
                clen = 4;
            else if (c >= 0xE0)
                clen = 3;
            else if (c >= 0xC0)
                clen = 2;
            size_t k = 0;
            for (; k < clen && s[k]; k++)
                one[k] = s[k];
            one[k] = '\0';
            s += k - 1;
            piece = one;
        }
        size_t len = strlen(buf), plen = strlen(piece);
        if (len + plen >= max)
            return false;
        memcpy(buf + len, piece, plen + 1);
    }
    return true;
}

const char *alertfmt_action_text(const AlertMsg *m)
{
    const char *a = m->details ? json_string_value(json_object_get(m->details, "action")) : NULL;
    if (a)
        return a;
    if (m->resolved)
        return "nothing more: the condition has cleared and the alert is resolved";
    if (!strncmp(m->kind, "probe.", 6))
        return "probing continues; recovery scenarios start when their detectors confirm the failure, "
               "and this alert resolves by itself when the probe succeeds again";
    if (!strncmp(m->kind, "alert.test", 10))
        return "nothing: this is a test alert sent by an operator (drctl alert test)";
    return "recorded in the journal; no automatic action";
}

const char *alertfmt_drctl_hint(const AlertMsg *m)
{
    const char *h = m->details ? json_string_value(json_object_get(m->details, "drctl")) : NULL;
    if (h)
        return h;
    if (!strncmp(m->kind, "alert.", 6))
        return "drctl alerts";
    if (!strncmp(m->kind, "backup.", 7))
        return "drctl backups";
    return "drctl status";
}

static const char *alertfmt_emoji(const AlertMsg *m)
{
    if (m->resolved)
        return ":white_check_mark:";
    switch (m->severity) {
    case SEV_CRITICAL:
        return ":rotating_light:";
    case SEV_ERROR:
        return ":red_circle:";
    case SEV_WARNING:
        return ":warning:";
    case SEV_INFO:
    default:
        return ":information_source:";
    }
}

static void alertfmt_upper(const char *s, char *out, size_t n)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        out[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
    out[i] = '\0';
}

static json_t *alertfmt_section(const char *text)
{
    return json_pack("{s:s,s:{s:s,s:s}}", "type", "section", "text", "type", "mrkdwn", "text", text);
}

static json_t *alertfmt_slack_one(const AlertMsg *m, const AlertCtx *ctx)
{
    char head[ALERTFMT_SLACK_SECTION_MAX + 1] = "", doing[ALERTFMT_SLACK_SECTION_MAX + 1] = "";
    char text[ALERTFMT_SLACK_SECTION_MAX + 1] = "", sev[16], ts[40], occ[64] = "";
    const char *label = m->resolved ? "RESOLVED" : sev;
    const size_t max = sizeof(head);

    alertfmt_upper(events_severity_name(m->severity), sev, sizeof(sev));
    alertfmt_iso8601(m->ts_ms, ts, sizeof(ts));
    if (m->occurrences > 1)
        snprintf(occ, sizeof(occ), " (seen %llu times)", (unsigned long long)m->occurrences);

    /* Fallback text: plain, escaped. */
    snprintf(text, sizeof(text), "[%s] ", label);
    alertfmt_slack_escape(text, max, ctx->cluster);
    alertfmt_append(text, max, ": ");
    alertfmt_slack_escape(text, max, m->summary);
    alertfmt_append(text, max, occ);

    snprintf(head, sizeof(head), "%s *%s* ", alertfmt_emoji(m), label);
    alertfmt_append(head, max, "cluster *");
    alertfmt_slack_escape(head, max, ctx->cluster);
    alertfmt_append(head, max, "* on ");
    alertfmt_slack_escape(head, max, ctx->source);
    if (m->condition) {
        alertfmt_append(head, max, " \xc2\xb7 `");
        alertfmt_slack_escape(head, max, m->condition);
        alertfmt_append(head, max, "`");
    }
    alertfmt_append(head, max, "\n");
    alertfmt_slack_escape(head, max, m->summary);
    alertfmt_append(head, max, occ);

    alertfmt_append(doing, max, "*What the daemon is doing:* ");
    alertfmt_slack_escape(doing, max, alertfmt_action_text(m));
    alertfmt_append(doing, max, "\n*Look closer:* `");
    alertfmt_slack_escape(doing, max, alertfmt_drctl_hint(m));
    alertfmt_append(doing, max, "`");

    char ctxline[512] = "";
    alertfmt_append(ctxline, sizeof(ctxline), "drsupervisor \xc2\xb7 ");
    alertfmt_slack_escape(ctxline, sizeof(ctxline), m->kind);
    alertfmt_append(ctxline, sizeof(ctxline), " \xc2\xb7 ");
    alertfmt_append(ctxline, sizeof(ctxline), ts);

    return json_pack("{s:s,s:[o,o,{s:s,s:[{s:s,s:s}]}]}", "text", text, "blocks", alertfmt_section(head),
                     alertfmt_section(doing), "type", "context", "elements", "type", "mrkdwn", "text", ctxline);
}

static json_t *alertfmt_slack_group(const AlertMsg *const *msgs, size_t n, const AlertCtx *ctx)
{
    char head[ALERTFMT_SLACK_SECTION_MAX + 1] = "", list[ALERTFMT_SLACK_SECTION_MAX + 1] = "";
    char text[ALERTFMT_SLACK_SECTION_MAX + 1] = "", tmp[256];
    size_t counts[SEV_CRITICAL + 1] = {0}, resolved = 0, shown = 0;
    const size_t max = sizeof(head);
    Severity worst = SEV_INFO;

    for (size_t i = 0; i < n; i++) {
        if (msgs[i]->resolved)
            resolved++;
        else {
            counts[msgs[i]->severity]++;
            if (msgs[i]->severity > worst)
                worst = msgs[i]->severity;
        }
    }
    snprintf(tmp, sizeof(tmp), "%zu alerts for cluster ", n);
    alertfmt_append(text, max, tmp);
    alertfmt_slack_escape(text, max, ctx->cluster);
    char parts[200] = "";
    for (int s = SEV_CRITICAL; s >= SEV_INFO; s--) {
        if (counts[s]) {
            snprintf(tmp, sizeof(tmp), "%s%zu %s", parts[0] ? ", " : "", counts[s], events_severity_name((Severity)s));
            alertfmt_append(parts, sizeof(parts), tmp);
        }
    }
    if (resolved) {
        snprintf(tmp, sizeof(tmp), "%s%zu resolved", parts[0] ? ", " : "", resolved);
        alertfmt_append(parts, sizeof(parts), tmp);
    }
    alertfmt_append(text, max, ": ");
    alertfmt_append(text, max, parts);

    AlertMsg probe = {.severity = worst, .resolved = resolved == n};
    snprintf(head, sizeof(head), "%s *%zu alerts* for cluster *", alertfmt_emoji(&probe), n);
    alertfmt_slack_escape(head, max, ctx->cluster);
    alertfmt_append(head, max, "* on ");
    alertfmt_slack_escape(head, max, ctx->source);
    alertfmt_append(head, max, " (");
    alertfmt_append(head, max, parts);
    alertfmt_append(head, max, "), grouped into one message");

    /* Newest last; keep room for the "and N more" line. */
    for (size_t i = 0; i < n; i++) {
        char line[1200] = "", sev[16];
        alertfmt_upper(msgs[i]->resolved ? "resolved" : events_severity_name(msgs[i]->severity), sev, sizeof(sev));
        snprintf(line, sizeof(line), "\xe2\x80\xa2 *%s* ", sev);
        alertfmt_slack_escape(line, sizeof(line), msgs[i]->summary);
        if (msgs[i]->occurrences > 1) {
            snprintf(tmp, sizeof(tmp), " (seen %llu times)", (unsigned long long)msgs[i]->occurrences);
            alertfmt_append(line, sizeof(line), tmp);
        }
        alertfmt_append(line, sizeof(line), "\n");
        if (strlen(list) + strlen(line) + 40 >= max)
            break;
        alertfmt_append(list, max, line);
        shown++;
    }
    if (shown < n) {
        snprintf(tmp, sizeof(tmp), "\xe2\x80\xa6 and %zu more (`drctl alerts`)", n - shown);
        alertfmt_append(list, max, tmp);
    }
    return json_pack("{s:s,s:[o,o,o]}", "text", text, "blocks", alertfmt_section(head), alertfmt_section(list),
                     alertfmt_section("*Look closer:* `drctl alerts` and `drctl status`"));
}

json_t *alertfmt_slack(const AlertMsg *const *msgs, size_t n, const AlertCtx *ctx)
{
    if (n == 0)
        return NULL;
    return n == 1 ? alertfmt_slack_one(msgs[0], ctx) : alertfmt_slack_group(msgs, n, ctx);
}

json_t *alertfmt_webhook(const AlertMsg *m, const AlertCtx *ctx, int64_t sent_ms)
{
    char ts[40];
    alertfmt_iso8601(m->ts_ms, ts, sizeof(ts));
    json_t *ev = json_pack("{s:s,s:I,s:s,s:s,s:s?,s:b,s:s,s:s,s:s}", "timestamp", ts, "ts_ms", (json_int_t)m->ts_ms,
                           "severity", events_severity_name(m->severity), "kind", m->kind, "condition", m->condition,
                           "resolved", m->resolved, "summary", m->summary, "what_the_daemon_does",
                           alertfmt_action_text(m), "look_closer", alertfmt_drctl_hint(m));
    if (ev && m->details)
        json_object_set(ev, "details", m->details);
    return json_pack("{s:i,s:s,s:s,s:s,s:I,s:I,s:I,s:o*}", "version", 1, "source", ctx->source, "cluster",
                     ctx->cluster, "dedup_key", m->dedup_key, "delivery", (json_int_t)m->seq, "sent_ms",
                     (json_int_t)sent_ms, "occurrences", (json_int_t)m->occurrences, "event", ev);
}

int alertfmt_hmac_hex(const void *key, size_t key_len, const void *body, size_t body_len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (key_len > (size_t)0x7fffffff ||
        !HMAC(EVP_sha256(), key, (int)key_len, body, body_len, md, &mdlen) || mdlen != 32)
        return DR_EINTERNAL;
    for (unsigned i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    out[64] = '\0';
    return 0;
}

AlertOutcome alertfmt_classify(AlertChannel ch, int err, long status, const char *body)
{
    if (err != 0)
        return ALERTFMT_RETRY;
    if (status == 429 || status >= 500 || status < 200)
        return ALERTFMT_RETRY;
    switch (ch) {
    case ALERT_CH_PAGERDUTY:
        if (status == 202)
            return ALERTFMT_ACCEPTED;
        break;
    case ALERT_CH_SLACK:
        if (status == 200) {
            size_t len = body ? strlen(body) : 0;
            while (len > 0 && (body[len - 1] == '\n' || body[len - 1] == '\r' || body[len - 1] == ' '))
                len--;
            return len == 2 && !strncmp(body, "ok", 2) ? ALERTFMT_ACCEPTED : ALERTFMT_RETRY;
        }
        break;
    case ALERT_CH_WEBHOOK:
    default:
        if (status >= 200 && status < 300)
            return ALERTFMT_ACCEPTED;
        break;
    }
    if (status >= 300 && status < 500)
        return ALERTFMT_PERMANENT;
    return ALERTFMT_RETRY;
}

int alertfmt_retry_after_ms(const char *value, int64_t now_ms, uint64_t *ret_ms)
{
    char *end = NULL;
    struct tm tm;

    if (!value || !*value)
        return -EINVAL;
    errno = 0;
    unsigned long long s = strtoull(value, &end, 10);
    if (value[0] >= '0' && value[0] <= '9' && end && *end == '\0' && errno == 0) {
        if (s > 86400ULL * 7)
            s = 86400ULL * 7;
        *ret_ms = (uint64_t)s * 1000;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -EINVAL;
    int64_t at = (int64_t)timegm(&tm) * 1000;
    *ret_ms = at > now_ms ? (uint64_t)(at - now_ms) : 0;
    return 0;
}

void alertfmt_bucket_init(AlertBucket *b, double rate_per_s, double burst, uint64_t now_ms)
{
    b->rate_per_ms = rate_per_s / 1000.0;
    b->burst = burst < 1.0 ? 1.0 : burst;
    b->tokens = b->burst;
    b->last_ms = now_ms;
}

uint64_t alertfmt_bucket_take(AlertBucket *b, uint64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->rate_per_ms;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    double wait = (1.0 - b->tokens) / b->rate_per_ms;
    uint64_t w = (uint64_t)wait;
    return (double)w < wait ? w + 1 : (w ? w : 1);
}

bool alertfmt_route_matches(const ConfigAlertRoute *r, Severity sev, const char *kind, const char *condition)
{
    if ((int)sev < r->min_severity)
        return false;
    if (r->kind && fnmatch(r->kind, kind ? kind : "", 0) != 0)
        return false;
    if (r->condition && (!condition || fnmatch(r->condition, condition, 0) != 0))
        return false;
    return true;
}
