"""For DBAs and analysts: BI views, semantic audit search, health and metrics, on a real database."""
import re

import psycopg
import pytest

from helpers import ask, scalar, seed, witness_rows

VIEWS = ("requests", "daily_quality", "daily_latency", "model_usage", "problem_requests",
         "feedback_agreement")
PLAIN = {"uuid", "text", "timestamp with time zone", "date", "integer", "bigint", "smallint", "real",
         "double precision", "numeric", "boolean"}


def test_bi_views_are_plain_commented_and_readable(db):
    seed(db)
    ok = ask(db, "What does VACUUM do?", constraints={"max_tokens": 8})
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        ask(db, "hi", constraints={"bogus": 1})
    witness_rows(db)
    db.execute("SELECT ruvllm_feedback(%s, 1)", (ok["request_id"],))
    types = db.execute("""SELECT table_name, column_name, data_type FROM information_schema.columns
                           WHERE table_schema = 'ruvllm' AND table_name = ANY(%s)""", (list(VIEWS),)).fetchall()
    assert {t for t, _, _ in types} == set(VIEWS)
    assert [(t, c, d) for t, c, d in types if d not in PLAIN] == []
    uncommented = db.execute("""
        SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
         WHERE n.nspname = 'ruvllm' AND c.relkind = 'v' AND col_description(c.oid, a.attnum) IS NULL""").fetchall()
    assert uncommented == []
    assert scalar(db, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE n.nspname = 'ruvllm' AND c.relkind = 'v' AND obj_description(c.oid) IS NULL") == 0
    req = db.execute("SELECT succeeded, model, cost, context_nodes FROM ruvllm.requests ORDER BY created_at").fetchall()
    assert [r[0] for r in req] == [True, False] and req[0][1] and req[0][2] >= 0 and req[0][3] >= 1
    problems = db.execute("SELECT problem, error_sqlstate FROM ruvllm.problem_requests ORDER BY created_at").fetchall()
    assert problems == [("low quality", None), ("failed", "22023")]
    stages = {r[0] for r in db.execute("SELECT stage FROM ruvllm.daily_latency")}
    assert stages == {"embedding", "retrieval", "routing", "attention", "generation", "total"}
    assert scalar(db, "SELECT sum(requests) FROM ruvllm.model_usage") == 1
    assert scalar(db, "SELECT rated FROM ruvllm.feedback_agreement") == 1


def test_witness_search_finds_similar_requests_of_this_tenant(db):
    seed(db)
    for q in ("What does VACUUM do?", "What is the capital of France?"):
        ask(db, q, constraints={"max_tokens": 8})
    witness_rows(db)
    rows = db.execute("SELECT question, similarity FROM ruvllm_witness_search('How does vacuuming work?', 5)").fetchall()
    assert [r[0] for r in rows][0] == "What does VACUUM do?" and rows[0][1] > rows[1][1]
    assert db.execute("SELECT count(*) FROM ruvllm_witness_search('vacuum', 5, now() + interval '1 h')").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM ruvllm_witness_search('vacuum', 5, NULL, 0.0)").fetchone()[0] == 0
    db.execute("SELECT ruvllm_create_tenant('other')")
    db.execute("SET ruvllm.tenant = 'other'")
    assert db.execute("SELECT count(*) FROM ruvllm_witness_search('vacuum')").fetchone()[0] == 0
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        db.execute("SELECT * FROM ruvllm_witness_search('vacuum', 0)")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT * FROM ruvllm_witness_search('')")


def test_health_reports_models_router_and_problems(db):
    h = scalar(db, "SELECT ruvllm_health()")
    assert h["status"] == "healthy", h
    assert h["router_version"] == 1 and h["memory_nodes"] == 0
    assert all(m["ok"] for m in h["models"].values())
    db.execute("UPDATE ruvllm.models SET path = '/nonexistent.gguf' WHERE name = 'gemma-3-270m'")
    h = scalar(db, "SELECT ruvllm_health()")
    assert h["status"] == "degraded" and not h["models"]["gemma-3-270m"]["ok"]
    db.execute("UPDATE ruvllm.models SET enabled = false WHERE name = 'smollm2-135m-instruct'")
    assert scalar(db, "SELECT ruvllm_health()")["status"] == "critical"


def test_metrics_are_prometheus_text(db):
    seed(db)
    ask(db, "What does VACUUM do?", constraints={"max_tokens": 8})
    ask(db, "What does VACUUM do?", constraints={"max_tokens": 8})   # a cache hit
    witness_rows(db)
    text = scalar(db, "SELECT ruvllm_metrics()")
    sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')
    for line in text.strip().splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert 'ruvllm_requests{status="ok"} 1' in text and 'ruvllm_requests{status="cache_hit"} 1' in text
    buckets = [int(v) for v in re.findall(r'ruvllm_stage_latency_ms_bucket\{stage="total",le="[^"]+"\} (\d+)', text)]
    assert buckets == sorted(buckets) and buckets[-1] == 2


def test_retention_drops_or_archives_whole_witness_days_and_expires_the_rest(db):
    seed(db)
    r = ask(db, "What does VACUUM do?", session="old-session", constraints={"max_tokens": 8})
    witness_rows(db)
    # A partition of three days ago (as an install three days old would have), with a row in it.
    old_day = scalar(db, "SELECT (now() AT TIME ZONE 'UTC')::date - 3")
    yesterday = f"witness_p{old_day:%Y%m%d}"
    db.execute(f"CREATE TABLE ruvllm.{yesterday} PARTITION OF ruvllm.witness FOR VALUES FROM "
               f"('{old_day} 00:00+00') TO ('{old_day} 00:00+00'::timestamptz + interval '1 day')")
    db.execute("UPDATE ruvllm.witness SET created_at = created_at - interval '3 days' WHERE request_id = %s",
               (r["request_id"],))
    db.execute("UPDATE ruvllm.sessions SET last_active = now() - interval '3 days'")
    db.execute("SELECT ruvllm_run_loop('background')")
    db.execute("UPDATE ruvllm.loop_runs SET finished_at = now() - interval '3 days'")
    db.execute("SELECT ruvllm_set_retention('witness', '2 days', 'archive')")
    for target in ("sessions", "loop_runs", "response_cache"):
        db.execute("SELECT ruvllm_set_retention(%s, '2 days')", (target,))
    done = scalar(db, "SELECT ruvllm_apply_retention()")
    assert yesterday in done["witness"]["partitions"] and done["witness"]["action"] == "archive"
    assert done["sessions"] == 1 and done["loop_runs"] == 1
    assert scalar(db, f"SELECT count(*) FROM ruvllm_archive.{yesterday}") == 1
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE request_id = %s", (r["request_id"],)) == 0
    # The partitions of the days ahead are there, and a second run has nothing left to do.
    assert scalar(db, """SELECT count(*) FROM generate_series((now() AT TIME ZONE 'UTC')::date,
                            (now() AT TIME ZONE 'UTC')::date + 7, '1 day') d
                          WHERE to_regclass('ruvllm.witness_p' || to_char(d, 'YYYYMMDD')) IS NOT NULL""") == 8
    again = scalar(db, "SELECT ruvllm_apply_retention()")
    assert again["witness"]["partitions"] == [] and again["sessions"] == 0
    assert db.execute("SELECT target, keep::text, action FROM ruvllm.retention ORDER BY target").fetchall()[-1] == \
        ("witness", "2 days", "archive")


def test_without_a_witness_setting_retention_archives_after_witness_archive_after(db):
    db.execute("CREATE TABLE ruvllm.witness_p20000101 PARTITION OF ruvllm.witness "
               "FOR VALUES FROM ('2000-01-01 00:00+00') TO ('2000-01-02 00:00+00')")
    db.execute("""INSERT INTO ruvllm.witness (request_id, query, created_at) VALUES
                  (gen_random_uuid(), 'in a partition', '2000-01-01 12:00+00'),
                  (gen_random_uuid(), 'in the default partition', '2000-01-05 12:00+00')""")
    db.execute("SET ruvllm.witness_archive_after = '400d'")
    done = scalar(db, "SELECT ruvllm_apply_retention()")
    assert done["witness"]["partitions"] == ["witness_p20000101"] and done["witness"]["action"] == "archive"
    assert done["witness"]["default_rows_archived"] == 1 and done["witness"]["default_rows_deleted"] == 0
    assert scalar(db, "SELECT query FROM ruvllm_archive.witness_p20000101") == "in a partition"
    assert scalar(db, "SELECT query FROM ruvllm.witness_archive") == "in the default partition"
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE created_at < '2001-01-01'") == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.retention") == 0


@pytest.mark.parametrize("args, error", [
    (("memory", "1 day"), psycopg.errors.InvalidParameterValue),
    (("witness", "-1 day"), psycopg.errors.InvalidParameterValue),
    (("witness", "0"), psycopg.errors.InvalidParameterValue),
    (("witness", "200 years"), psycopg.errors.InvalidParameterValue),
    (("sessions", "1 day", "archive"), psycopg.errors.InvalidParameterValue),
    ((None, "1 day"), psycopg.errors.NullValueNotAllowed),
])
def test_bad_retention_settings_change_nothing(db, args, error):
    with pytest.raises(error):
        db.execute(f"SELECT ruvllm_set_retention({', '.join(['%s'] * len(args))})", args)
    assert scalar(db, "SELECT count(*) FROM ruvllm.retention") == 0
