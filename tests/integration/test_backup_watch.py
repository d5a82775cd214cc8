"""
Backups on a schedule, and the watch over them: a cron schedule really fires, a backup much
larger than its baseline and a backup older than the limit open their conditions (with events),
and a fresh backup closes them again.
"""
import json
import os
import time
import re

from drsup import Daemon, wait_until

PGBIN = "/usr/lib/postgresql/15/bin"


def make_key(path):
    with open(path, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)
    return path


def shop(pg):
    pg.psql("CREATE DATABASE shop")
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, note text);"
            "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g;", db="shop")


def config(pg, tmp_path, **backup):
    b = {"directory": os.path.join(str(tmp_path), "backups"), "prefix": "shop", "conninfo": pg.conninfo("shop"),
         "pg_dump": os.path.join(PGBIN, "pg_dump"), "pg_restore": os.path.join(PGBIN, "pg_restore"),
         "key_file": make_key(os.path.join(str(tmp_path), "backup.key"))}
    b.update(backup)
    return {"database": {"conninfo": pg.conninfo("shop")}, "backup": b}


def backup_now(d):
    """drctl backup now --wait (one asked for in the second the last one was named starts in the next)."""
    p = d.ctl("--json", "backup", "now", "--wait", timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def events(d, kind):
    return [l for l in d.log().splitlines() if "[%s]" % kind in l]


def test_size_and_age_conditions_open_and_resolve(pg, daemons, tmp_path):
    shop(pg)
    d = Daemon(tmp_path, config(pg, tmp_path, watch={"max_age": "1h", "size_change_percent": 20,
                                                     "baseline_count": 2}))
    daemons.append(d)
    d.start()
    for _ in range(2):
        backup_now(d)
    assert not [l for l in events(d, "backup.size") if "from the baseline" in l and "resolved" not in l]
    # Ten times the data: far beyond 20 % of the baseline.
    pg.psql("INSERT INTO t SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(2001, 40000) g;",
            db="shop")
    backup_now(d)
    line = wait_until(lambda: [l for l in events(d, "backup.size") if "from the baseline" in l], what="size event")[0]
    pct = float(re.search(r"is \+([0-9.]+)% from the baseline", line).group(1))
    assert pct > 100, line

    # The newest backup becomes too old: the age condition opens, the component goes down.
    d.config["backup"]["watch"]["max_age"] = "2s"
    d.write_config()
    assert d.ctl("reload").returncode == 0
    wait_until(lambda: [l for l in events(d, "backup.age") if "old (limit 2s)" in l and "resolved" not in l],
               timeout=10, what="age event")
    assert d.component("backup")["health"] == "down"
    # A fresh backup resolves it (the first evaluation after the start said "resolved" already:
    # count the ones after the opening).
    resolved_before = len([l for l in events(d, "backup.age") if "resolved" in l])
    d.config["backup"]["watch"]["max_age"] = "1h"
    d.write_config()
    assert d.ctl("reload").returncode == 0
    backup_now(d)
    wait_until(lambda: len([l for l in events(d, "backup.age") if "resolved" in l]) > resolved_before,
               what="age resolved")
    wait_until(lambda: d.component("backup")["health"] == "up", what="backup up")
    line = d.ctl("backup-status").stdout
    assert "verified" in line and "shop_backup_" in line
    d.stop()


def test_the_size_condition_waits_for_a_full_baseline(pg, daemons, tmp_path):
    shop(pg)
    d = Daemon(tmp_path, config(pg, tmp_path, watch={"max_age": "1h", "size_change_percent": 20,
                                                     "baseline_count": 2}))
    daemons.append(d)
    d.start()
    backup_now(d)
    # Ten times the data in the second backup: one earlier backup is no baseline, nothing fires.
    pg.psql("INSERT INTO t SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(2001, 40000) g;",
            db="shop")
    backup_now(d)
    assert not [l for l in events(d, "backup.size") if "from the baseline" in l]
    # The third is compared with the median of the two before it, and the change is seen.
    pg.psql("DELETE FROM t WHERE id > 2000;", db="shop")
    backup_now(d)
    line = wait_until(lambda: [l for l in events(d, "backup.size") if "from the baseline" in l], what="size event")[0]
    assert "median of 2" in line, line
    d.stop()


def test_a_cron_schedule_takes_a_verified_backup(pg, daemons, tmp_path):
    shop(pg)
    d = Daemon(tmp_path, config(pg, tmp_path, schedules=["* * * * *"]))
    daemons.append(d)
    # The schedule's clock is skewed (a test hook) so that its next minute boundary is ~8 s away
    # instead of up to a minute; the wall clock, backup names and times are not.
    skew = (52 - int(time.time()) % 60) % 60
    d.start(env={"DRSUP_TEST_SCHEDULE_SKEW_S": str(skew)} if skew else None)
    assert d.ctl_json("backups")["backups"] == []
    # The next minute boundary (UTC, as the schedule reads it) starts one by itself.
    lst = wait_until(lambda: d.ctl_json("backups")["backups"], timeout=80, interval=0.5,
                     what="a scheduled backup")
    b = lst[0]
    assert b["verified"] is True, json.dumps(b)
    assert b["name"].startswith("shop_backup_")
    d.stop()
