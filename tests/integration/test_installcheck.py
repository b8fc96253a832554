"""The pg_regress suite packagers run (`make installcheck`, test/sql and test/expected), run here the
way they would: against the shared test server (ruvllm and AGE preloaded) and against a stock
server that preloads nothing, which is what the suite promises to need.

pg_regress writes results/ and regression.diffs into its output directory; the checkout is not
writable by the user the tests run as, so that goes to a temporary directory.
"""
import os
import subprocess
from pathlib import Path

import pytest

from helpers import HAVE_PG, private_server

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not HAVE_PG, reason="PostgreSQL 17 is not here: run the tests with `make test`")


def installcheck(outdir, host, port, user, password=None):
    env = dict(os.environ, PGHOST=str(host), PGPORT=str(port), PGUSER=user)
    if password:
        env["PGPASSWORD"] = password
    run = subprocess.run(["make", "-s", "-C", str(ROOT), "installcheck",
                          f"EXTRA_REGRESS_OPTS=--outputdir={outdir}"],
                         env=env, capture_output=True, text=True)
    diffs = outdir / "regression.diffs"
    assert run.returncode == 0, (run.stdout + run.stderr
                                 + (diffs.read_text() if diffs.exists() else "(no regression.diffs)"))
    # Every test ran: pg_regress names each one with "ok" (a test it could not run fails the run).
    tests = sorted(p.stem for p in (ROOT / "test" / "sql").glob("*.sql"))
    assert tests and all(f" {name} " in run.stdout for name in tests), run.stdout
    return run.stdout


def test_installcheck_on_the_preloaded_test_server(pg, tmp_path):
    installcheck(tmp_path, pg.host, pg.port, pg.user, pg.password)


def test_installcheck_on_a_stock_server(tmp_path):
    with private_server(tmp_path) as srv:
        installcheck(tmp_path / "out", "127.0.0.1", srv.port, "postgres")
