"""
Alert delivery end to end: the real daemon, a loopback receiver standing in for PagerDuty, Slack
and a webhook. Payloads are checked field by field against the PagerDuty Events API v2 and Slack
incoming-webhook contracts; retries, Retry-After, dead letters, grouping and restarts are
observed on the receiver and through `drctl alerts`.
"""
import hashlib
import hmac
import json
import os
import re
import signal

import pytest

from alert_receiver import Receiver
from alerts_harness import Daemon, wait_until

ROUTING_KEY = "R0123456789abcdef0123456789abcd"
HMAC_SECRET = "s3cret-hmac-key"


def secret(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text + "\n")
    os.chmod(p, 0o600)
    return str(p)


@pytest.fixture
def rx():
    r = Receiver().start()
    yield r
    r.stop()


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
