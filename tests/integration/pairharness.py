"""
pairharness: what several integration test files share about a pair.

- rewind_pair: the world of test_switchover and test_fencing, one per module: pg1 a primary, pg2
  its standby made with pg_basebackup -R, both with what pg_rewind needs (REWIND_SETTINGS), an
  alert receiver, and the daemon's environment built on them and started (test_failover's
  start_env); everything is cleaned up after the module.
- webhook_alerts: the alerts section of test_ha's daemons: every event of warning and above to the
  receiver's /hook, tagged with the node as the source, retried fast.
"""
from alert_receiver import Receiver
from pgharness import PgCluster

REWIND_SETTINGS = {"wal_log_hints": "on", "full_page_writes": "on"}


def rewind_pair(tmp_path_factory, name, make_env):
    """A module fixture's body (yield from it): make_env(tmp, pg1, pg2, rx) builds the environment,
    which is started, yielded, and cleaned up with the clusters and the receiver."""
    from test_failover import start_env
    tmp = tmp_path_factory.mktemp(name)
    pg1 = PgCluster(settings=REWIND_SETTINGS)
    pg2 = PgCluster(settings=REWIND_SETTINGS)
    env = None
    try:
        pg1.init()
        pg1.start()
        pg2.init_standby(pg1, "pg2")
        pg2.start()
        rx = Receiver().start()
        env = start_env(make_env(tmp, pg1, pg2, rx))
        yield env
    finally:
        if env:
            env.cleanup()
            env.rx.stop()
        pg2.cleanup()
        pg1.cleanup()


def webhook_alerts(rx, source):
    return {"source": source, "webhook": {"url": rx.url("/hook")}, "group_window": "100ms",
            "retry": {"base": "100ms", "cap": "400ms"},
            "routes": [{"match": {"min_severity": "warning"}, "channels": ["webhook"]}]}
