"""Proves the pg fixture: a real server that keeps committed data across stop/start and a crash."""
import os


def test_data_survives_restart(pg):
    pg.psql("create table t(id int primary key, v text); insert into t values (1,'a'),(2,'b');")
    assert pg.psql("select string_agg(v, ',' order by id) from t") == "a,b"
    assert pg.psql("show data_checksums") == "on"
    port = pg.port
    pg.stop()
    assert not pg.is_running()
    pg.start()
    assert pg.port == port
    assert pg.psql("select count(*) from t") == "2"


def test_kill9_then_restart(pg):
    pg.psql("create table k(x int); insert into k values (42);")
    pg.kill9()
    assert not pg.is_running()
    pg.start()  # crash recovery
    assert pg.psql("select x from k") == "42"


def test_cleanup_removes_everything(pg):
    tmp = pg.tmpdir
    assert os.path.isdir(pg.datadir)
    assert pg.conninfo("x") == "host=127.0.0.1 port=%d dbname=x user=postgres" % pg.port
    pg.cleanup()
    assert not os.path.exists(tmp)
