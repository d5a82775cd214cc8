"""
Alert delivery end to end: the real daemon, a loopback receiver standing in for PagerDuty, Slack
and a webhook. Payloads are checked field by field against the PagerDuty Events API v2 and Slack
incoming-webhook contracts; retries, Retry-After, dead letters, grouping and restarts are
observed on the receiver and through `drctl alerts`.
"""
import hashlib
import hmac
import os
import re

import pytest

from drsup import Daemon, wait_until

ROUTING_KEY = "R0123456789abcdef0123456789abcd"
HMAC_SECRET = "s3cret-hmac-key"


def secret(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text + "\n")
    os.chmod(p, 0o600)
    return str(p)


def alerts_config(tmp_path, rx, **over):
    cfg = {
        "source": "testhost",
        "pagerduty": {"routing_key_file": secret(tmp_path, "pd.key", ROUTING_KEY), "url": rx.url("/pd")},
        "slack": {"webhook_url_file": secret(tmp_path, "slack.url", rx.url("/slack")),
                  "retry_after_default": "1s"},
        "webhook": {"url": rx.url("/hook"), "hmac_secret_file": secret(tmp_path, "hook.key", HMAC_SECRET)},
        "retry": {"base": "100ms", "cap": "400ms", "max_attempts": 50},
        "group_window": "200ms",
        "repeat_interval": "1h",
        "timeout": "2s",
        # The daemon's database probe points at a closed port: keep its alerts out unless asked.
        "routes": [{"match": {"min_severity": "info", "kind": "alert.*"},
                    "channels": ["pagerduty", "slack", "webhook"]}],
    }
    cfg.update(over)
    return cfg


@pytest.fixture
def daemon(tmp_path, rx):
    made = []

    def make(**over):
        d = Daemon(tmp_path, {"alerts": alerts_config(tmp_path, rx, **over)})
        made.append(d)
        return d
    yield make
    for d in made:
        d.cleanup()


def outbox_files(d):
    p = os.path.join(d.state_dir, "outbox")
    return sorted(f for f in os.listdir(p) if f.endswith(".json")) if os.path.isdir(p) else []


def drained(d):
    a = d.ctl_json("alerts")
    return a if not a["outbox"] and not outbox_files(d) else None


ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def check_pd_trigger(body, key, severity, cls, group="test"):
    assert set(body) == {"routing_key", "event_action", "dedup_key", "payload", "client"}
    assert body["routing_key"] == ROUTING_KEY
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == key and len(key) <= 255
    p = body["payload"]
    assert set(p) == {"summary", "source", "severity", "timestamp", "component", "group", "class",
                      "custom_details"}
    assert 0 < len(p["summary"]) <= 1024
    assert p["source"] == "testhost"
    assert p["severity"] == severity
    assert ISO.match(p["timestamp"]), p["timestamp"]
    assert p["group"] == group and p["class"] == cls and p["component"]
    assert isinstance(p["custom_details"], dict)


def check_slack(body):
    assert set(body) == {"text", "blocks"}
    assert body["text"] and isinstance(body["blocks"], list) and 1 <= len(body["blocks"]) <= 5
    for b in body["blocks"]:
        if b["type"] == "section":
            assert b["text"]["type"] == "mrkdwn" and len(b["text"]["text"]) <= 3000
    return "\n".join(b["text"]["text"] for b in body["blocks"] if b["type"] == "section")


def test_test_alert_reaches_every_channel_with_contract_payloads(daemon, rx):
    d = daemon().start()
    r = d.ctl_json("alert", "test", "--summary", "disk <full> & slow")
    assert r["channels"] == ["pagerduty", "slack", "webhook"]
    wait_until(lambda: rx.got("/pd") and rx.got("/slack") and rx.got("/hook"), what="three deliveries")
    wait_until(lambda: drained(d), what="an empty outbox")

    (pd,) = rx.got("/pd")
    assert pd.headers["Content-Type"] == "application/json"
    check_pd_trigger(pd.json, pd.json["dedup_key"], "error", "alert.test")
    assert re.match(r"^drsup:test:event:\d+\.\d+$", pd.json["dedup_key"])
    assert pd.json["payload"]["summary"] == "disk <full> & slow"

    (sl,) = rx.got("/slack")
    text = check_slack(sl.json)
    assert "disk &lt;full&gt; &amp; slow" in text and "<full>" not in sl.body.decode()
    assert "disk &lt;full&gt; &amp; slow" in sl.json["text"]
    assert "What the daemon is doing" in text and "`drctl alerts`" in text

    (wh,) = rx.got("/hook")
    sig = hmac.new(HMAC_SECRET.encode(), wh.body, hashlib.sha256).hexdigest()
    assert wh.headers["X-Drsup-Signature"] == "sha256=" + sig
    assert abs(int(wh.headers["X-Drsup-Timestamp"]) - wh.json["sent_ms"] // 1000) <= 1
    assert wh.json["event"]["summary"] == "disk <full> & slow" and wh.json["event"]["kind"] == "alert.test"

    a = d.ctl_json("alerts")
    assert all(a["channels"][c]["delivered"] == 1 for c in ("pagerduty", "slack", "webhook"))
    assert d.ctl_json("status")["components"]["alerts"]["health"] == "up"
    # Secrets never reach the log.
    log = d.log()
    assert ROUTING_KEY not in log and HMAC_SECRET not in log and "/slack" not in log
    d.stop()


def pd_by_action(rx, action, status=None):
    return [r for r in rx.got("/pd", status) if r.json and r.json.get("event_action") == action]


def test_burst_for_one_condition_is_one_page_and_one_grouped_slack_message(daemon, rx):
    d = daemon().start()
    r = d.ctl_json("alert", "test", "--condition", "disk.full:test", "--count", "200", "--severity", "critical")
    assert r["events"] == 200
    wait_until(lambda: rx.got("/pd") and rx.got("/slack") and len(rx.got("/hook")) >= 1, what="deliveries")
    a = wait_until(lambda: drained(d), what="an empty outbox")
    (cond,) = [c for c in a["conditions"] if c["kind"] == "alert.test"]
    assert cond["condition"] == "disk.full:test" and cond["occurrences"] == 200 and cond["suppressed"] == 199 * 3
    assert len(rx.got("/pd")) == 1 and len(rx.got("/slack")) == 1 and len(rx.got("/hook")) == 1
    (pd,) = rx.got("/pd")
    check_pd_trigger(pd.json, "drsup:test:disk.full:test", "critical", "alert.test")
    assert pd.json["payload"]["component"] == "disk"
    (sl,) = rx.got("/slack")
    text = check_slack(sl.json)
    assert "seen 200 times" in text and "`disk.full:test`" in text

    # The resolution closes the same PagerDuty alert and is posted to Slack.
    d.ctl_json("alert", "test", "--condition", "disk.full:test", "--resolve")
    wait_until(lambda: pd_by_action(rx, "resolve") and len(rx.got("/slack")) == 2, what="the resolution")
    (res,) = pd_by_action(rx, "resolve")
    assert res.json == {"routing_key": ROUTING_KEY, "dedup_key": "drsup:test:disk.full:test",
                        "event_action": "resolve"}
    assert "RESOLVED" in rx.got("/slack")[1].json["text"]
    a = wait_until(lambda: drained(d), what="an empty outbox")
    assert [c for c in a["conditions"] if c["kind"] == "alert.test"] == []
    d.stop()


def test_retries_follow_backoff_and_retry_after_and_400_is_not_retried(daemon, rx):
    rx.script("/pd", [500, 503, (429, {"Retry-After": "1"})])
    rx.script("/slack", [429])              # no Retry-After: the configured default (1s) applies
    rx.script("/hook", [400])               # permanent: dead-lettered at once
    d = daemon().start()
    d.ctl_json("alert", "test", "--condition", "retry.check:test")
    wait_until(lambda: rx.got("/pd", 202), timeout=15, what="PagerDuty to accept")
    pds = rx.got("/pd")
    assert [r.status for r in pds] == [500, 503, 429, 202]
    assert len({r.json["dedup_key"] for r in pds}) == 1
    gaps = [b.time - a.time for a, b in zip(pds, pds[1:])]
    # Equal jitter on base 100ms: first retry after 50..100ms, second 100..200ms; then Retry-After: 1.
    assert 0.04 <= gaps[0] <= 0.6 and 0.09 <= gaps[1] <= 0.8, gaps
    assert gaps[2] >= 0.95, gaps

    wait_until(lambda: rx.got("/slack", 200), timeout=10, what="Slack to accept")
    sl = rx.got("/slack")
    assert [r.status for r in sl] == [429, 200] and sl[1].time - sl[0].time >= 0.95

    a = wait_until(lambda: drained(d), what="an empty outbox")
    assert len(rx.got("/hook")) == 1            # 400: never retried
    (dead,) = a["dead_letters"]
    assert dead["channel"] == "webhook" and "HTTP 400" in dead["reason"] and "not retried" in dead["reason"]
    assert os.listdir(os.path.join(d.state_dir, "outbox", "dead")) == [f"{dead['seq']:016d}-webhook.json"]
    assert a["channels"]["webhook"]["dead_letters"] == 1
    assert a["channels"]["pagerduty"]["failed_attempts"] == 3
    out = d.ctl("alerts").stdout
    assert "DEAD LETTERS" in out and "HTTP 400" in out
    assert "dead-lettered" in d.log()
    d.stop()


def test_receiver_down_then_back_delivers_every_event_exactly_once(daemon, rx):
    d = daemon().start()
    rx.stop()
    for cond in ("a.down:test", "b.down:test", "c.down:test"):
        d.ctl_json("alert", "test", "--condition", cond)
    d.ctl_json("alert", "test", "--summary", "one-off while down")

    def retrying():
        a = d.ctl_json("alerts")
        pd = [e for e in a["outbox"] if e["channel"] == "pagerduty"]
        return len(a["outbox"]) == 12 and len(pd) == 4 and all(e["attempts"] >= 2 for e in pd) \
            and a["channels"]["pagerduty"]["failing"] >= 2 and "paused_until_ms" in a["channels"]["pagerduty"]
    wait_until(retrying, what="deliveries retrying while the receiver is down")
    assert len(outbox_files(d)) == 12
    out = d.ctl("alerts").stdout
    assert "retrying" in out
    assert d.ctl_json("status")["components"]["alerts"]["health"] == "down"

    rx.start()
    wait_until(lambda: drained(d), timeout=15, what="an empty outbox")
    keys = [r.json["dedup_key"] for r in rx.got("/pd", 202)]
    assert sorted(keys[:3]) == sorted(f"drsup:test:{c}.down:test" for c in "abc") or len(set(keys)) == 4
    assert len(keys) == 4 and len(set(keys)) == 4
    deliveries = [r.headers["X-Drsup-Delivery"] for r in rx.got("/hook", 200)]
    assert len(deliveries) == 4 and len(set(deliveries)) == 4
    # Slack: whatever was queued while it was unreachable went out grouped, each event once.
    texts = "\n".join(check_slack(r.json) for r in rx.got("/slack", 200))
    for cond in ("a.down:test", "b.down:test", "c.down:test"):
        assert texts.count(cond) <= 1
    assert "one-off while down" in texts and len(rx.got("/slack", 200)) < 4
    assert d.ctl_json("status")["components"]["alerts"]["health"] == "up"
    d.stop()


def test_kill9_mid_delivery_then_restart_delivers_all_without_new_incidents(daemon, rx):
    rx.script("/pd", ["hang"])
    rx.script("/slack", ["hang"])
    d = daemon()
    d.start()
    d.ctl_json("alert", "test", "--condition", "db.down:test")
    wait_until(lambda: rx.got("/pd") and rx.got("/slack"), what="two deliveries in flight")
    # A slow Slack and a hung PagerDuty do not hold up the webhook.
    wait_until(lambda: rx.got("/hook", 200), what="the webhook delivery")
    d.ctl_json("alert", "test", "--condition", "db.down:test", "--resolve")
    d.ctl_json("alert", "test", "--summary", "queued before the crash")
    # Wait until every delivery is durably in the outbox (an event a crash interrupts before that
    # point existed only in memory).
    wait_until(lambda: all(e["state"] not in ("writing", "waiting") for e in d.ctl_json("alerts")["outbox"]),
               what="the outbox writes")
    before = outbox_files(d)
    assert len(before) >= 4
    max_seq_before = max(int(f.split("-")[0]) for f in before)
    d.kill9()
    rx.release()
    rx.script("/pd", [])
    d.start()
    wait_until(lambda: drained(d), timeout=15, what="an empty outbox after restart")
    assert "unreadable" not in d.log()
    pd_ok = rx.got("/pd", 202)
    # The hung trigger was superseded by the newer resolve for the same key (newest state per key).
    triggers = [r for r in pd_ok if r.json["event_action"] == "trigger"]
    resolves = [r for r in pd_ok if r.json["event_action"] == "resolve"]
    assert [r.json["dedup_key"] for r in resolves] == ["drsup:test:db.down:test"]
    keys = [r.json["dedup_key"] for r in triggers]
    assert keys.count("drsup:test:db.down:test") <= 1
    # A delivery accepted just before the kill may be sent again, but under the same dedup key:
    # PagerDuty folds it into the same alert, never a new incident.
    one_off = [k for k in keys if k.startswith("drsup:test:event:")]
    assert len(one_off) >= 1 and len(set(one_off)) == 1
    # New deliveries after the restart continue the sequence.
    d.ctl_json("alert", "test", "--channel", "webhook")
    wait_until(lambda: drained(d) and len(rx.got("/hook", 200)) >= 4, what="the webhook")
    seqs = [int(r.headers["X-Drsup-Delivery"]) for r in rx.got("/hook", 200)]
    assert seqs[-1] > max_seq_before
    d.stop()


def test_heartbeat_dead_letter_cascade_and_operator_errors(daemon, rx, tmp_path):
    rx.script("/slack", [(404, {})])        # revoked webhook ("no_service"): permanent
    d = daemon(heartbeat={"url": rx.url("/hb"), "interval": "200ms"},
               routes=[{"match": {"min_severity": "error", "kind": "alerts.*"}, "channels": ["pagerduty", "slack"]}])
    d.start()
    wait_until(lambda: len(rx.got("/hb")) >= 3, what="heartbeats")
    d.ctl_json("alert", "test", "--channel", "slack", "--summary", "lost in slack")
    # The dead Slack delivery is paged through PagerDuty, never back to Slack.
    wait_until(lambda: rx.got("/pd", 202), what="the dead letter to be paged")
    (page,) = rx.got("/pd")
    assert page.json["payload"]["class"] == "alerts.delivery"
    assert "slack" in page.json["payload"]["summary"] and "HTTP 404" in page.json["payload"]["summary"]
    assert "lost in slack" in page.json["payload"]["summary"]
    a = wait_until(lambda: drained(d), what="an empty outbox")
    assert len(rx.got("/slack")) == 1 and a["dead_letters"][0]["channel"] == "slack"
    # Slack stays broken in the status model although PagerDuty works.
    st = d.ctl_json("status")["components"]["alerts"]
    assert st["health"] == "down" and "slack: refused" in st["last_error"]["message"]
    assert "HTTP 404" in st["last_error"]["message"]
    a = d.ctl_json("alerts")
    assert a["heartbeat"]["configured"] and a["heartbeat"]["ok"] >= 3
    p = d.ctl("alert", "test", "--channel", "fax")
    assert p.returncode == 1 and "unknown channel 'fax'" in p.stderr
    p = d.ctl("alert", "test", "--resolve")
    assert p.returncode == 1 and "--resolve needs --condition" in p.stderr
    assert d.ctl("alert", "test", "--count", "0").returncode == 2
    assert d.ctl("alert", "nope").returncode == 2
    d.stop()


def test_group_readable_secret_is_refused_and_never_printed(tmp_path, rx):
    cfg = alerts_config(tmp_path, rx)
    os.chmod(cfg["pagerduty"]["routing_key_file"], 0o640)
    d = Daemon(tmp_path, {"alerts": cfg})
    import subprocess
    from drsup import DAEMON
    p = subprocess.run([DAEMON, "--check-config", "--config", d.config_path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 2
    assert "routing_key_file" in p.stdout and "group or others" in p.stdout and "0640" in p.stdout
    assert ROUTING_KEY not in p.stdout


def test_credentials_directory_and_disabled_alerts(tmp_path, rx):
    creds = tmp_path / "creds"
    creds.mkdir()
    secret(creds, "pd", ROUTING_KEY)
    cfg = alerts_config(tmp_path, rx)
    cfg["pagerduty"] = {"routing_key_credential": "pd", "url": rx.url("/pd")}
    d = Daemon(tmp_path, {"alerts": cfg})
    d.start(env={"CREDENTIALS_DIRECTORY": str(creds)})
    d.ctl_json("alert", "test", "--channel", "pagerduty")
    wait_until(lambda: rx.got("/pd", 202), what="PagerDuty")
    assert rx.got("/pd")[0].json["routing_key"] == ROUTING_KEY
    d.stop()

    plain = Daemon(tmp_path, name="plain").start()
    a = plain.ctl_json("alerts")
    assert a["enabled"] is False
    assert plain.ctl_json("status")["components"]["alerts"]["health"] == "disabled"
    p = plain.ctl("alert", "test")
    assert p.returncode == 1 and "not configured" in p.stderr
    plain.stop()


def test_database_down_then_up_triggers_then_resolves_one_pagerduty_alert(tmp_path, rx):
    from pgharness import PgCluster, free_port
    pg = PgCluster()
    try:
        pg.init()
        pg.port = free_port()          # nothing listens there yet: the probe fails
        cfg = alerts_config(tmp_path, rx)
        cfg["routes"] = [{"match": {"min_severity": "error", "kind": "probe.*"}, "channels": ["pagerduty", "slack"]}]
        d = Daemon(tmp_path, {"alerts": cfg, "database": {"conninfo": pg.conninfo()}})
        d.start()
        wait_until(lambda: pd_by_action(rx, "trigger", 202), what="the database.down page")
        (trig,) = pd_by_action(rx, "trigger")
        check_pd_trigger(trig.json, "drsup:test:database.down:test", "error", "probe.database")
        assert trig.json["payload"]["component"] == "database"
        wait_until(lambda: rx.got("/slack", 200), what="the Slack message")
        assert "`drctl status`" in check_slack(rx.got("/slack")[0].json)
        assert "database.down:test" in [c["condition"] for c in d.ctl_json("alerts")["conditions"]]

        pg.start()
        wait_until(lambda: pd_by_action(rx, "resolve", 202) and len(rx.got("/slack", 200)) == 2, timeout=15,
                   what="the resolution")
        (res,) = pd_by_action(rx, "resolve")
        assert res.json == {"routing_key": ROUTING_KEY, "dedup_key": "drsup:test:database.down:test",
                            "event_action": "resolve"}
        assert "database is up again" in check_slack(rx.got("/slack")[1].json)
        a = wait_until(lambda: drained(d), what="an empty outbox")
        assert "database.down:test" not in [c["condition"] for c in a["conditions"]]
        assert len(rx.got("/pd")) == 2
        d.stop()
    finally:
        pg.cleanup()


def test_hung_slack_does_not_delay_pagerduty_and_reload_applies_channels(daemon, rx, tmp_path):
    rx.script("/slack", ["hang"])
    d = daemon(timeout="5s")
    d.config["alerts"].pop("webhook")
    d.config["alerts"]["routes"][0]["channels"] = ["pagerduty", "slack"]
    d.write_config()
    d.start()
    d.ctl_json("alert", "test", "--condition", "x.y:test")
    wait_until(lambda: rx.got("/slack"), what="Slack to be hanging")
    wait_until(lambda: rx.got("/pd", 202), what="PagerDuty while Slack hangs")
    a = d.ctl_json("alerts")
    assert a["channels"]["slack"]["in_flight"] == 1 and a["channels"]["pagerduty"]["delivered"] == 1
    assert not a["channels"]["webhook"]["configured"]
    rx.release()

    # Reload: the webhook appears, with its HMAC secret, without a restart.
    d.config["alerts"]["webhook"] = {"url": rx.url("/hook"),
                                     "hmac_secret_file": secret(tmp_path, "hook2.key", "other-secret")}
    d.write_config()
    assert d.ctl("reload").returncode == 0
    d.ctl_json("alert", "test", "--channel", "webhook")
    wait_until(lambda: rx.got("/hook", 200), what="the webhook after reload")
    wh = rx.got("/hook")[0]
    assert wh.headers["X-Drsup-Signature"] == "sha256=" + hmac.new(b"other-secret", wh.body,
                                                                   hashlib.sha256).hexdigest()
    wait_until(lambda: drained(d), timeout=15, what="an empty outbox")
    d.stop()


def test_open_condition_survives_restart_and_its_resolution_pages_the_same_alert(daemon, rx):
    d = daemon().start()
    d.ctl_json("alert", "test", "--condition", "disk.full:test")
    wait_until(lambda: drained(d) and rx.got("/pd", 202) and rx.got("/slack", 200), what="the page")
    d.stop()
    d.start()
    a = d.ctl_json("alerts")
    (cond,) = [c for c in a["conditions"] if c["condition"] == "disk.full:test"]
    assert cond["channels"] == ["pagerduty", "slack", "webhook"]
    # Found again after the restart: a repeat within repeat_interval, not a second page.
    d.ctl_json("alert", "test", "--condition", "disk.full:test")
    # A resolution for something that was never open is not sent anywhere.
    d.ctl_json("alert", "test", "--condition", "never.open:test", "--resolve")
    d.ctl_json("alert", "test", "--condition", "disk.full:test", "--resolve")
    wait_until(lambda: pd_by_action(rx, "resolve", 202) and len(rx.got("/slack", 200)) == 2
               and len(rx.got("/hook", 200)) == 2, what="the resolution")
    wait_until(lambda: drained(d), what="an empty outbox")
    assert [r.json["dedup_key"] for r in rx.got("/pd")] == ["drsup:test:disk.full:test"] * 2
    assert "RESOLVED" in rx.got("/slack")[1].json["text"]
    assert all(r.json["event"]["condition"] == "disk.full:test" for r in rx.got("/hook"))
    d.stop()
    d.start()
    assert [c for c in d.ctl_json("alerts")["conditions"] if c["kind"] == "alert.test"] == []
    d.stop()


def test_a_trigger_never_delivered_goes_out_before_its_resolve_on_every_channel(daemon, rx):
    """The receiver is down while a condition opens and closes: on its return PagerDuty gets the
    trigger and then the resolve (never the resolve alone: nobody would have been paged), and Slack
    and the webhook get both, in that order."""
    d = daemon().start()
    rx.stop()
    d.ctl_json("alert", "test", "--condition", "db.crash:test", "--severity", "critical")
    d.ctl_json("alert", "test", "--condition", "db.crash:test", "--resolve")
    rx.start()
    wait_until(lambda: drained(d), timeout=15, what="an empty outbox")
    pd = [r.json for r in rx.got("/pd", 202)]
    assert [(p["event_action"], p["dedup_key"]) for p in pd] == [
        ("trigger", "drsup:test:db.crash:test"), ("resolve", "drsup:test:db.crash:test")], pd
    texts = [check_slack(r.json) for r in rx.got("/slack", 200)]
    joined = "\n".join(texts)
    assert "alert delivery works" in joined and "RESOLVED" in joined, texts
    assert joined.index("alert delivery works") < joined.index("RESOLVED"), texts
    hooks = [r.json for r in rx.got("/hook", 200)]
    assert [h["event"]["resolved"] for h in hooks] == [False, True], hooks
    d.stop()


def test_an_operator_resolves_a_condition_by_hand_and_observers_may_not(tmp_path, rx):
    """drctl alerts resolve KEY --reason R: the resolve reaches every channel that heard of the
    condition, drctl alerts shows it closed, the log says who and why; an unknown key is exit 1
    with a clear message; a reader (not an operator) is refused and nothing is resolved."""
    import shutil
    import subprocess
    import tempfile
    from drsup import DRCTL
    base = tempfile.mkdtemp(prefix="drsup-resolve-")
    os.chmod(base, 0o755)
    d = Daemon(base, {"alerts": alerts_config(tmp_path, rx), "control": {"mode": "0666"}})
    os.chmod(d.dir, 0o755)
    try:
        d.start()
        d.ctl_json("alert", "test", "--condition", "disk.full:test", "--severity", "critical")
        wait_until(lambda: drained(d) and pd_by_action(rx, "trigger", 202), what="the page")
        # A reader (uid daemon, not in the operators group) may look, not resolve.
        p = subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups", DRCTL, "--socket",
                            d.socket, "alerts", "resolve", "disk.full:test", "--reason", "not mine"],
                           capture_output=True, text=True)
        assert p.returncode == 1 and "permission_denied" in p.stderr and "operator" in p.stderr, p.stderr
        assert "disk.full:test" in [c["condition"] for c in d.ctl_json("alerts")["conditions"]]
        # Unknown key: exit 1, says so, changes nothing.
        p = d.ctl("alerts", "resolve", "disk.ful:test", "--reason", "typo")
        assert p.returncode == 1 and "no open condition 'disk.ful:test'" in p.stderr, p.stderr
        # Usage errors: no reason, an unknown action.
        assert d.ctl("alerts", "resolve", "disk.full:test").returncode == 2
        assert d.ctl("alerts", "close", "disk.full:test", "--reason", "x").returncode == 2
        assert pd_by_action(rx, "resolve") == []
        p = d.ctl("alerts", "resolve", "disk.full:test", "--reason", "disk replaced by hand")
        assert p.returncode == 0, p.stderr
        assert "disk.full:test resolved" in p.stdout and "pagerduty" in p.stdout
        wait_until(lambda: pd_by_action(rx, "resolve", 202) and len(rx.got("/slack", 200)) == 2
                   and len(rx.got("/hook", 200)) == 2, what="the resolution on every channel")
        (res,) = pd_by_action(rx, "resolve")
        assert res.json["dedup_key"] == "drsup:test:disk.full:test"
        hooks = [r.json["event"] for r in rx.got("/hook", 200)]
        assert [h["resolved"] for h in hooks] == [False, True]
        assert hooks[1]["details"]["reason"] == "disk replaced by hand" and hooks[1]["details"]["requested_by_uid"] == 0
        a = wait_until(lambda: drained(d), what="an empty outbox")
        assert [c for c in a["conditions"] if c["condition"] == "disk.full:test"] == []
        assert "resolved by an operator (uid 0): disk replaced by hand" in d.log()
        # Closed for good: a second resolve is an unknown key.
        assert d.ctl("alerts", "resolve", "disk.full:test", "--reason", "again").returncode == 1
        d.stop()
    finally:
        d.cleanup()
        shutil.rmtree(base, ignore_errors=True)
