#!/usr/bin/env python3
"""bench/retention: witness-log retention by partition, against a row-by-row DELETE.

    make bench-retention                            # 1M witness rows over 30 days, ~3 min
    RUVLLM_BENCH_SCALE=small make bench-retention   # 50K rows, a ~20 s smoke run, not recorded

`make bench-retention` runs this inside the ruvllm root as the postgres user. It starts its own
throwaway PostgreSQL 17 (socket only, data under /var/tmp, i.e. on disk rather than the root's
tmpfs /tmp, so commits and checkpoints pay for real I/O), with `make up`'s settings and
shared_preload_libraries = 'age,ruvllm', and then:

  1. makes the witness log's daily partitions for the past 30 days with plain DDL, as a DBA
     backfilling would (ruvllm.witness_make_partitions only makes yesterday onward);
  2. loads the witness rows spread over those days with set-based INSERT ... SELECT FROM
     generate_series (timed, but not the measured thing), then VACUUM ANALYZE;
  3. copies that database three times (CREATE DATABASE ... TEMPLATE), and on the four identical
     copies measures, one after the other:
       - ruvllm_set_retention('witness', '7 days', 'drop'); SELECT ruvllm_apply_retention();
       - the same with action 'archive';
       - the drop's statements by hand in one transaction (DETACH PARTITION, DROP TABLE, COMMIT
         timed apart: where the drop's time goes);
       - DELETE FROM ruvllm.witness of the same rows (those of the UTC days that retention
         removes), then the VACUUM that makes their space reusable.

It prints one markdown section; at default scale bench/run.sh records it in
bench/RESULTS.md (`--record`).
"""
import datetime
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for results.py, common.py
import results  # noqa: E402
from common import Server, cli, log, machine, make_up_settings, print_report  # noqa: E402

SECTION = "## bench/retention"
DAYS = 30                 # the witness log spans the past DAYS days
KEEP = "7 days"           # the retention setting measured
EMBEDDED_EVERY = 100      # one row in this many has a query_embedding (an HNSW insert each)
VECTOR_POOL = 10_000      # distinct 384-d vectors the embeddings are drawn from
FEATURE_POOL = 1000       # distinct router-feature vectors the rows draw from

SCALES = {
    "small": dict(rows=50_000, batch=25_000),
    "default": dict(rows=1_000_000, batch=100_000),
}

# On top of `make up`'s settings. No autovacuum: the copies need a source database nobody is
# connected to, and the VACUUM after the DELETE is measured here, not left to a worker.
EXTRA_SETTINGS = {"autovacuum": "off"}

# Word lists for the questions and answers (the operations topics of bench/query's corpus).
VERBS = ["rotate", "vacuum", "reindex", "archive", "tune", "monitor", "restore", "drop", "restart",
         "scale", "drain", "roll back", "revoke", "renew", "reconcile", "debug"]
OBJECTS = ["the witness log", "the WAL segments", "a bloated index", "the statistics",
           "the replication slot", "shared buffers", "a long transaction", "the pg_hba rules",
           "a pod that keeps crashing", "the persistent volume", "an expired certificate",
           "the API keys", "a failed card payment", "the monthly invoice", "a stale DNS record",
           "the TLS handshake", "a drifting model", "the checkpoint", "the bundle size",
           "the on-call rota"]
CONDITIONS = ["after a failover", "during peak load", "when disk usage passes 80%",
              "before a major upgrade", "while a backup runs", "at night", "after an incident",
              "at month end", "between regions", "when accuracy drops", "on a Friday release",
              "after a node reboot"]
ANSWER_SENTENCES = [
    "Check the runbook for the exact order of steps and who has to approve the change.",
    "Do it in a maintenance window and tell the on-call engineer before you start.",
    "Watch the dashboards for at least fifteen minutes afterwards and roll back on any alarm.",
    "The last time this was done it took about twenty minutes and needed no downtime.",
    "Take a backup first and make sure it can be restored on the staging cluster.",
    "If the first attempt fails, collect the logs and open a ticket with the platform team.",
    "The change is recorded in the audit trail; link the ticket in the change log.",
    "Most of the time goes into waiting for replication to catch up, not into the change itself.",
]


def sql_array(words):
    """An SQL array literal of the words, for LOAD_SQL (so with '%' doubled for psycopg)."""
    return "ARRAY[" + ", ".join("'" + w.replace("'", "''").replace("%", "%%") + "'"
                                for w in words) + "]"


# Each INSERT loads rows lo..hi-1 of n, spread evenly (with jitter) from %(t0)s over DAYS days.
# The innermost level draws the random numbers once per row (OFFSET 0 keeps the planner from
# folding it into the next level, which would draw them again at every use).
LOAD_SQL = f"""
INSERT INTO ruvllm.witness (
    request_id, session_id, tenant, query, query_embedding, model, context_size, temperature,
    top_p, confidence, routing_confidence, used_default, policy_version, model_probs, explored,
    quality, judge_score, groundedness, relevance, rating, correction, feedback_at, embedding_ms,
    retrieval_ms, routing_ms, attention_ms, generation_ms, total_ms, prompt_tokens,
    completion_tokens, context_node_ids, response, response_embedding, features, cache_hit, error,
    error_sqlstate, created_at)
SELECT gen_random_uuid(),
       CASE WHEN t.r_session < 0.4 THEN 'sess-' || to_hex(t.g / 5) END,
       (ARRAY['', '', 'acme', 'globex', 'initech'])[1 + t.g %% 5],
       t.query,
       eq.v,
       t.model,
       t.context_size,
       0.7, 0.9,
       CASE WHEN NOT t.failed THEN round((0.35 + 0.6 * t.r_conf)::numeric, 3) END,
       round(t.r_route::numeric, 3),
       t.r_route < 0.2,
       1 + (t.g * 3 / %(n)s)::int,
       jsonb_build_object('smollm2-135m-instruct', round(t.p_small::numeric, 3),
                          'gemma-3-270m', round((1 - t.p_small)::numeric, 3)),
       t.r_explore < 0.05,
       CASE WHEN t.judged THEN round((0.3 + 0.6 * t.r_q)::numeric, 3) END,
       CASE WHEN t.judged THEN 1 + floor(t.r_q * 4.99)::int END,
       CASE WHEN NOT t.failed THEN round((0.3 + 0.6 * t.r_conf)::numeric, 3) END,
       CASE WHEN NOT t.failed THEN round((0.4 + 0.5 * t.r_q)::numeric, 3) END,
       CASE WHEN t.r_rating < 0.03 THEN 1 + floor(t.r_q * 4.99)::int END,
       CASE WHEN t.r_rating < 0.003 THEN 'The runbook moved; see the new page.' END,
       CASE WHEN t.r_rating < 0.03 THEN t.created_at + interval '2 minutes' END,
       t.embedding_ms, t.retrieval_ms, t.routing_ms, t.attention_ms, t.generation_ms,
       t.embedding_ms + t.retrieval_ms + t.routing_ms + t.attention_ms
           + coalesce(t.generation_ms, 0) + 3.5,
       t.prompt_tokens, t.completion_tokens,
       CASE WHEN NOT t.cache_hit THEN
           ARRAY[gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
                 gen_random_uuid()] END,
       CASE WHEN NOT t.failed THEN t.response END,
       er.v,
       f.features,
       t.cache_hit,
       CASE WHEN t.failed THEN 'canceling statement due to statement timeout' END,
       CASE WHEN t.failed THEN '57014' END,
       t.created_at
  FROM (
    SELECT r.*,
           r.r_fail < 0.005 AS failed,
           r.r_fail >= 0.005 AND r.r_judge < 0.8 AS judged,
           r.r_cache < 0.05 AS cache_hit,
           CASE WHEN r.r_model < 0.8 THEN 'smollm2-135m-instruct' ELSE 'gemma-3-270m' END AS model,
           CASE WHEN r.r_model < 0.8 THEN 0.55 + 0.4 * r.r_route
                ELSE 0.45 - 0.4 * r.r_route END AS p_small,
           (ARRAY[512, 1024, 2048])[1 + floor(r.r_ctx * 2.99)::int] AS context_size,
           CASE WHEN r.r_cache < 0.05 THEN 0 ELSE 200 + floor(r.r_ctx * 900)::int END AS prompt_tokens,
           CASE WHEN r.r_cache < 0.05 THEN 0 ELSE 16 + floor(r.r_len * 112)::int END AS completion_tokens,
           round((9 + 12 * r.r_ms1)::numeric, 2)::real AS embedding_ms,
           CASE WHEN r.r_cache < 0.05 THEN 0 ELSE round((70 + 160 * r.r_ms2)::numeric, 2) END::real
               AS retrieval_ms,
           round((1 + 3 * r.r_ms3)::numeric, 2)::real AS routing_ms,
           round((4 + 8 * r.r_ms1)::numeric, 2)::real AS attention_ms,
           CASE WHEN r.r_fail < 0.005 THEN NULL WHEN r.r_cache < 0.05 THEN 0
                ELSE round(((16 + r.r_len * 112) / (20 + 35 * r.r_ms3) * 1000
                            + (200 + r.r_ctx * 900) * 2)::numeric, 1) END::real AS generation_ms,
           format('How do I %%s %%s %%s?', w.verb, w.object, w.condition) AS query,
           format('To %%s %%s %%s, start with %%s. %%s %%s', w.verb, w.object, w.condition,
                  w.object2, w.sentence1, w.sentence2) AS response
      FROM (
        SELECT g,
               %(t0)s::timestamptz + interval '{DAYS} days' * ((g + random()) / %(n)s) AS created_at,
               random() AS r_session, random() AS r_conf, random() AS r_route,
               random() AS r_explore, random() AS r_judge, random() AS r_q, random() AS r_rating,
               random() AS r_fail, random() AS r_cache, random() AS r_model, random() AS r_ctx,
               random() AS r_len, random() AS r_ms1, random() AS r_ms2, random() AS r_ms3,
               random() AS r_w1, random() AS r_w2, random() AS r_w3, random() AS r_w4,
               random() AS r_s1, random() AS r_s2
          FROM generate_series(%(lo)s, %(hi)s - 1) AS g
        OFFSET 0) r
      CROSS JOIN LATERAL (
        SELECT ({sql_array(VERBS)})[1 + floor(r.r_w1 * {len(VERBS)})::int] AS verb,
               ({sql_array(OBJECTS)})[1 + floor(r.r_w2 * {len(OBJECTS)})::int] AS object,
               ({sql_array(CONDITIONS)})[1 + floor(r.r_w3 * {len(CONDITIONS)})::int] AS condition,
               ({sql_array(OBJECTS)})[1 + floor(r.r_w4 * {len(OBJECTS)})::int] AS object2,
               ({sql_array(ANSWER_SENTENCES)})[1 + floor(r.r_s1 * {len(ANSWER_SENTENCES)})::int]
                   AS sentence1,
               ({sql_array(ANSWER_SENTENCES)})[1 + floor(r.r_s2 * {len(ANSWER_SENTENCES)})::int]
                   AS sentence2) w
    OFFSET 0) t
  LEFT JOIN bench_vectors eq
         ON t.g %% {EMBEDDED_EVERY} = 0 AND eq.i = (t.g / {EMBEDDED_EVERY}) %% {VECTOR_POOL}
  LEFT JOIN bench_vectors er ON t.judged AND er.i = t.g %% {VECTOR_POOL}
  JOIN bench_features f ON f.i = t.g %% {FEATURE_POOL}
"""

# Pools the rows draw from, per load session (temporary tables). Vectors: random directions (the
# witness's own HNSW index, not retrieval, is what they feed); features: 128 reals.
POOLS_SQL = f"""
CREATE TEMP TABLE bench_vectors AS
SELECT i, (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384 + 0 * i))::vector(384) AS v
  FROM generate_series(0, {VECTOR_POOL - 1}) AS i;
CREATE UNIQUE INDEX ON bench_vectors (i);
CREATE TEMP TABLE bench_features AS
SELECT i, (SELECT array_agg(round((random() * 2 - 1)::numeric, 4)::real)
             FROM generate_series(1, 128 + 0 * i)) AS features
  FROM generate_series(0, {FEATURE_POOL - 1}) AS i;
CREATE UNIQUE INDEX ON bench_features (i);
ANALYZE bench_vectors;
ANALYZE bench_features;
"""

# The witness partitions with their rows and on-disk size (table, TOAST and indexes).
PARTS_SQL = """
SELECT c.relname, pg_total_relation_size(c.oid)
  FROM pg_partition_tree('ruvllm.witness') p JOIN pg_class c ON c.oid = p.relid
 WHERE p.isleaf ORDER BY c.relname"""


def fmt_s(secs):
    return f"{secs * 1000:.0f} ms" if secs < 1 else f"{secs:.1f} s" if secs < 100 else f"{secs:.0f} s"


def fmt_ratio(x):
    return f"{x:.2f}" if x < 1 else f"{x:.1f}" if x < 10 else f"{x:,.0f}"


def truncate_probe(workdir, mib=256):
    """Seconds to free the blocks of a file of `mib` MiB (written and fsynced first) on the file
    system of workdir: what dropping a table's files costs there, apart from PostgreSQL."""
    path = Path(workdir) / "truncate-probe"
    block = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(mib):
            os.write(fd, block)
        os.fsync(fd)
        t0 = time.perf_counter()
        os.ftruncate(fd, 0)
        os.fsync(fd)
        return time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink()


def fmt_bytes(n):
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


class Bench:
    def __init__(self, scale):
        self.scale = scale
        self.cfg = SCALES[scale]
        self.out = {}
        self.timeline = []

    def phase(self, name, t0):
        self.timeline.append((name, time.perf_counter() - t0))

    # -- the data ----------------------------------------------------------------------------------

    def backfill_partitions(self, conn):
        """The witness_pYYYYMMDD partitions of the past DAYS days that install did not make, with
        the DDL a DBA would write (UTC days, as ruvllm.witness_make_partitions makes them)."""
        now = conn.execute("SELECT now()").fetchone()[0].astimezone(datetime.timezone.utc)
        first = (now - datetime.timedelta(days=DAYS)).date()
        made = 0
        day = first
        while day <= now.date():
            name = f"witness_p{day:%Y%m%d}"
            if conn.execute("SELECT to_regclass(%s)", [f"ruvllm.{name}"]).fetchone()[0] is None:
                nxt = day + datetime.timedelta(days=1)
                conn.execute(f"CREATE TABLE ruvllm.{name} PARTITION OF ruvllm.witness "
                             f"FOR VALUES FROM ('{day} 00:00:00+00') TO ('{nxt} 00:00:00+00')")
                made += 1
            day += datetime.timedelta(days=1)
        return now, made

    def load(self, server):
        n, batch = self.cfg["rows"], self.cfg["batch"]
        admin = server.connect("postgres")
        admin.execute("CREATE DATABASE retention_drop")
        admin.close()
        conn = server.connect("retention_drop")
        conn.execute("CREATE EXTENSION ruvllm CASCADE")
        self.out["pg_version"] = conn.execute("SHOW server_version").fetchone()[0]
        self.out["ruvllm"] = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'").fetchone()[0]
        self.out["settings"] = {k: conn.execute(f"SHOW {k}").fetchone()[0]
                                for k in ("shared_buffers", "max_wal_size", "autovacuum")}
        t0 = time.perf_counter()
        now, made = self.backfill_partitions(conn)
        self.phase("partitions", t0)
        log(f"made {made} daily witness partitions by hand (the past {DAYS} days)")
        self.out["made_partitions"] = made
        conn.execute("SELECT setseed(0.42)")
        conn.execute(POOLS_SQL)
        t0_rows = now - datetime.timedelta(days=DAYS)
        log(f"load {n} witness rows over {DAYS} days, {batch} per INSERT ... SELECT")
        t0 = time.perf_counter()
        for lo in range(0, n, batch):
            conn.execute(LOAD_SQL, {"lo": lo, "hi": min(lo + batch, n), "n": n, "t0": t0_rows})
            log(f"  {min(lo + batch, n)} rows, {time.perf_counter() - t0:.0f} s")
        self.out["load_s"] = time.perf_counter() - t0
        self.phase("load", t0)
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE ruvllm.witness")
        self.out["vacuum_analyze_s"] = time.perf_counter() - t0
        self.phase("VACUUM ANALYZE", t0)
        row = conn.execute("""
            SELECT count(*), count(query_embedding), count(*) FILTER (WHERE cache_hit),
                   count(error), min(created_at), max(created_at),
                   avg(length(query)), avg(length(response)), count(response_embedding)
              FROM ruvllm.witness""").fetchone()
        self.out["data"] = dict(rows=row[0], embedded=row[1], cache_hits=row[2], errors=row[3],
                                first=row[4], last=row[5], query_len=float(row[6]),
                                response_len=float(row[7]), response_embedded=row[8])
        parts = conn.execute(PARTS_SQL).fetchall()
        self.out["partitions_before"] = len(parts)
        self.out["bytes_before"] = sum(b for _, b in parts)
        self.out["default_rows"] = conn.execute(
            "SELECT count(*) FROM ruvllm.witness_default").fetchone()[0]
        self.out["heap_bytes"], self.out["table_bytes"] = conn.execute("""
            SELECT sum(pg_relation_size(relid)), sum(pg_table_size(relid))
              FROM pg_partition_tree('ruvllm.witness') WHERE isleaf""").fetchone()
        log(f"  {row[0]} rows in {len(parts)} partitions, {fmt_bytes(self.out['bytes_before'])}")
        conn.close()

    def copies(self, server):
        admin = server.connect("postgres")
        t0 = time.perf_counter()
        for name in ("retention_archive", "retention_steps", "retention_delete"):
            log(f"copy the database: {name}")
            admin.execute(f"CREATE DATABASE {name} TEMPLATE retention_drop STRATEGY FILE_COPY")
        self.phase("copies", t0)
        admin.close()

    # -- the measurements ------------------------------------------------------------------------

    def count(self, conn):
        return conn.execute("SELECT count(*) FROM ruvllm.witness").fetchone()[0]

    def retention(self, server, dbname, action):
        conn = server.connect(dbname)
        before = self.count(conn)
        parts_before = {name: size for name, size in conn.execute(PARTS_SQL)}
        conn.execute("CHECKPOINT")
        t0 = time.perf_counter()
        conn.execute("SELECT ruvllm_set_retention('witness', %s::interval, %s::text)", [KEEP, action])
        set_s = time.perf_counter() - t0
        log(f"ruvllm_apply_retention(), witness kept {KEEP}, action {action}")
        t0 = time.perf_counter()
        done = conn.execute("SELECT ruvllm_apply_retention()").fetchone()[0]
        secs = time.perf_counter() - t0
        after = self.count(conn)
        parts = done["witness"]["partitions"]
        archived = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'ruvllm_archive'").fetchone()[0]
        conn.close()
        res = dict(secs=secs, set_s=set_s, partitions=parts, removed=before - after,
                   default_deleted=done["witness"]["default_rows_deleted"], archived=archived,
                   bytes=sum(parts_before.get(p, 0) for p in parts), result=done)
        log(f"  {fmt_s(secs)}: {len(parts)} partitions, {before - after} rows")
        return res

    def by_hand(self, server, dbname, parts):
        """The drop's statements by hand in one transaction, each step timed: where its time goes."""
        conn = server.connect(dbname)
        conn.execute("CHECKPOINT")
        conn.autocommit = False
        log(f"by hand: detach and drop {len(parts)} partitions, then commit")
        t0 = time.perf_counter()
        for part in parts:
            conn.execute(f"ALTER TABLE ruvllm.witness DETACH PARTITION ruvllm.{part}")
        t1 = time.perf_counter()
        for part in parts:
            conn.execute(f"DROP TABLE ruvllm.{part}")
        t2 = time.perf_counter()
        conn.commit()
        t3 = time.perf_counter()
        conn.close()
        log(f"  detach {fmt_s(t1 - t0)}, drop {fmt_s(t2 - t1)}, commit {fmt_s(t3 - t2)}")
        return dict(detach_s=t1 - t0, drop_s=t2 - t1, commit_s=t3 - t2)

    def delete(self, server, dbname, boundary):
        conn = server.connect(dbname)
        before = self.count(conn)
        size = lambda: conn.execute(
            "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('ruvllm.witness') "
            "WHERE isleaf").fetchone()[0]
        bytes0 = size()
        plan = [r[0] for r in conn.execute(
            "EXPLAIN DELETE FROM ruvllm.witness WHERE created_at < %s", [boundary])]
        conn.execute("CHECKPOINT")
        log(f"DELETE FROM ruvllm.witness WHERE created_at < '{boundary}'")
        t0 = time.perf_counter()
        cur = conn.execute("DELETE FROM ruvllm.witness WHERE created_at < %s", [boundary])
        secs = time.perf_counter() - t0
        deleted = cur.rowcount
        after = self.count(conn)
        bytes1 = size()
        log(f"  {fmt_s(secs)}: {deleted} rows; VACUUM ruvllm.witness")
        t0 = time.perf_counter()
        conn.execute("VACUUM ruvllm.witness")
        vac_s = time.perf_counter() - t0
        bytes2 = size()
        log(f"  VACUUM {fmt_s(vac_s)}")
        conn.close()
        scans = {m.group(2): m.group(1) for line in plan
                 for m in [re.search(r"(\w+ Scan)(?: using \S+)? on (witness_p\d{8})", line)] if m}
        return dict(secs=secs, removed=before - after, deleted=deleted, vacuum_s=vac_s,
                    bytes_before=bytes0, bytes_after_delete=bytes1, bytes_after_vacuum=bytes2,
                    scans=scans)

    def run(self):
        t_all = time.perf_counter()
        self.load_start = os.getloadavg()
        self.started = datetime.datetime.now(datetime.timezone.utc)
        # On disk, not the root's tmpfs /tmp: see the docstring.
        work = tempfile.mkdtemp(prefix="ruvllm-bench-retention-", dir="/var/tmp")
        try:
            self.out["truncate_probe_s"] = truncate_probe(work)
            server = Server(work, name="bench/retention")
            settings = dict(make_up_settings(), **EXTRA_SETTINGS)
            server.start(settings)
            try:
                self.load(server)
                self.copies(server)
                t0 = time.perf_counter()
                self.out["drop"] = self.retention(server, "retention_drop", "drop")
                self.out["archive"] = self.retention(server, "retention_archive", "archive")
                self.out["steps"] = self.by_hand(server, "retention_steps",
                                                 self.out["drop"]["partitions"])
                # The same rows: those of the UTC days the drop removed, up to the day after the
                # last one (the rows of the cutoff's own day stay, as with the partitions).
                last = max(self.out["drop"]["partitions"])
                boundary = datetime.datetime.strptime(last[len("witness_p"):], "%Y%m%d").replace(
                    tzinfo=datetime.timezone.utc) + datetime.timedelta(days=1)
                self.out["boundary"] = boundary
                self.out["delete"] = self.delete(server, "retention_delete", boundary.isoformat())
                self.phase("measurements", t0)
            finally:
                server.stop(check=False)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.load_end = os.getloadavg()
        self.total_s = time.perf_counter() - t_all

    # -- the report --------------------------------------------------------------------------------

    def report(self):
        o, d = self.out, self.out["data"]
        drop, arch, dele = o["drop"], o["archive"], o["delete"]
        cpu, cores, mem, system = machine()
        scale_env = "" if self.scale == "default" else f"RUVLLM_BENCH_SCALE={self.scale} "
        L = [SECTION, ""]
        L.append(f"`{scale_env}make bench-retention`, {self.started:%Y-%m-%d %H:%M} UTC: {cpu}, "
                 f"{cores} cores, {mem:.0f} GiB, {system}; PostgreSQL {o['pg_version']}, ruvllm "
                 f"{o['ruvllm']}. Load average (1/5/15 min) "
                 f"{'/'.join(f'{x:.1f}' for x in self.load_start)} at the start, "
                 f"{'/'.join(f'{x:.1f}' for x in self.load_end)} at the end (other jobs share the "
                 f"machine); the run took {self.total_s / 60:.1f} min.")
        L.append("")
        emb_share = d["embedded"] / d["rows"]
        scan_kinds = {}
        for kind in dele["scans"].values():
            scan_kinds[kind] = scan_kinds.get(kind, 0) + 1
        utc = datetime.timezone.utc
        L.append(
            f"**Data.** {d['rows']:,} witness rows spread evenly over the past {DAYS} days "
            f"({d['first'].astimezone(utc):%Y-%m-%d %H:%M} to {d['last'].astimezone(utc):%Y-%m-%d %H:%M} "
            f"UTC), "
            f"{o['partitions_before'] - 1} daily partitions holding them or made ahead "
            f"({o['made_partitions']} of them made by hand with `CREATE TABLE "
            f"ruvllm.witness_pYYYYMMDD PARTITION OF ruvllm.witness FOR VALUES FROM (day) TO (next "
            f"day)`, the rest by install) plus the default one ({o['default_rows']} rows). Loaded "
            f"with set-based `INSERT ... SELECT FROM generate_series` ({self.cfg['batch']:,} rows "
            f"per statement) in {o['load_s']:.0f} s, then `VACUUM ANALYZE` ({o['vacuum_analyze_s']:.0f} "
            f"s); loading is not what is measured. Every column is filled as the pipeline fills it: "
            f"question (templated, {d['query_len']:.0f} characters on average) and answer "
            f"({d['response_len']:.0f}), model and router probabilities, the stage latencies and "
            f"total, tokens, quality scores, 5 context node ids, 128 router features; "
            f"{d['cache_hits'] / d['rows']:.0%} cache hits, {d['errors'] / d['rows']:.1%} failed "
            f"calls. Embeddings: {d['response_embedded'] / d['rows']:.0%} of rows (the answers the "
            f"judge scored) carry a response_embedding, random 384-d directions stored out of line "
            f"in TOAST as real ones are; **but only {emb_share:.0%} of rows ({d['embedded']:,}) "
            f"carry a query_embedding**, which in the product every row has: to keep the load time "
            f"sane, as each is an insert into its partition's HNSW index. So the HNSW indexes hold {emb_share:.0%} of their entries and each row lacks "
            f"~1.5 KB of TOAST; a full index and the extra TOAST row would make the DELETE and "
            f"above all the VACUUM after it (which removes every index entry) slower, not the "
            f"partition drop. Rows take {o['table_bytes'] / d['rows']:,.0f} bytes with TOAST "
            f"({o['heap_bytes'] / d['rows']:,.0f} in the heap), {fmt_bytes(o['bytes_before'])} in "
            f"all with indexes.")
        L.append("")
        L.append(
            "**Method.** One throwaway server (`make up`'s settings, so shared_buffers "
            f"{o['settings']['shared_buffers']}, max_wal_size {o['settings']['max_wal_size']}; "
            "autovacuum off; data on disk) with four identical copies of the loaded database "
            "(`CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY`, so their files were just "
            "written and sit in the OS page cache: a DELETE of days that are cold on disk would "
            "read them first); on each, a `CHECKPOINT`, then one statement timed at the client "
            "(Unix socket, autocommit, so the commit is in it). "
            f"Retention is `SELECT ruvllm_set_retention('witness', '{KEEP}', action)` then "
            f"`SELECT ruvllm_apply_retention()`, the timed statement; it removes the partitions of "
            f"the whole UTC days before the cutoff (now() − {KEEP}), so the DELETE is given the same "
            f"rows: `DELETE FROM ruvllm.witness WHERE created_at < '{o['boundary']:%Y-%m-%d %H:%M}+00'` "
            f"(the start of the cutoff's UTC day; its plan: "
            + ", ".join(f"{k.lower()} of {v}" for k, v in scan_kinds.items())
            + " partitions), "
            "then `VACUUM ruvllm.witness`, which a DELETE needs before the space can be reused. "
            "Archiving only changes the catalog; dropping also truncates and unlinks the "
            "partitions' files at commit, which takes longer the more bytes they hold (but no "
            "row is visited). On the fourth copy, the drop's statements by hand in one "
            f"transaction: {len(o['drop']['partitions'])} `DETACH PARTITION` "
            f"{fmt_s(o['steps']['detach_s'])}, {len(o['drop']['partitions'])} `DROP TABLE` "
            f"{fmt_s(o['steps']['drop_s'])}, `COMMIT` {fmt_s(o['steps']['commit_s'])}; freeing a "
            f"256 MB file (ftruncate + fsync) took {fmt_s(o['truncate_probe_s'])} on this "
            "machine's file system. `DETACH PARTITION` takes an ACCESS EXCLUSIVE lock on "
            "ruvllm.witness, held to the end of the transaction: the witness writer and readers "
            "of the log wait for the whole call (ruvllm_query's rows meanwhile wait in the "
            "writer's 1 MB queue in shared memory; a caller whose row does not fit there writes "
            "it itself, and so waits too).")
        L.append("")
        L.append("| on the same data | partitions | rows removed | time | × drop | × archive |")
        L.append("| --- | --- | --- | --- | --- | --- |")
        ref, ref2 = drop["secs"], arch["secs"]
        L.append(f"| `ruvllm_apply_retention()`, action drop: detach and drop the expired daily "
                 f"partitions ({fmt_bytes(drop['bytes'])} freed) | {len(drop['partitions'])} | "
                 f"{drop['removed']:,} | **{fmt_s(drop['secs'])}** | 1 | {fmt_ratio(ref / ref2)} |")
        L.append(f"| `ruvllm_apply_retention()`, action archive: detach them and move them to schema "
                 f"ruvllm_archive ({arch['archived']} tables there after) | "
                 f"{len(arch['partitions'])} | {arch['removed']:,} | **{fmt_s(arch['secs'])}** | "
                 f"{fmt_ratio(ref2 / ref)} | 1 |")
        L.append(f"| `DELETE FROM ruvllm.witness WHERE created_at < …`, row by row "
                 f"({fmt_bytes(dele['bytes_before'] - dele['bytes_after_delete'])} freed) | — | "
                 f"{dele['removed']:,} | {fmt_s(dele['secs'])} | **{fmt_ratio(dele['secs'] / ref)}** "
                 f"| **{fmt_ratio(dele['secs'] / ref2)}** |")
        freed = dele["bytes_before"] - dele["bytes_after_vacuum"]
        both = dele["secs"] + dele["vacuum_s"]
        L.append(f"| then `VACUUM ruvllm.witness` (the emptied partitions' tables truncated: "
                 f"{fmt_bytes(freed)} freed in all, {fmt_bytes(dele['bytes_after_vacuum'])} left) | — "
                 f"| — | {fmt_s(dele['vacuum_s'])} | {fmt_ratio(both / ref)} with the DELETE | "
                 f"{fmt_ratio(both / ref2)} with the DELETE |")
        L.append("")
        met = "met" if max(drop["secs"], arch["secs"]) < 10 else "**not met**"
        L.append(f"Target: a retention run on a witness log of {d['rows']:,} rows over {DAYS} days "
                 f"finishes in seconds: drop {fmt_s(drop['secs'])}, archive {fmt_s(arch['secs'])}: "
                 f"{met}. `ruvllm_set_retention` itself took {fmt_s(drop['set_s'])}. Same rows "
                 f"removed by all three: "
                 f"{'yes' if drop['removed'] == arch['removed'] == dele['removed'] else 'no'}; "
                 f"rows of the default partition deleted: {drop['default_deleted']}.")
        L.append("")
        L.append("Time by phase: " + ", ".join(f"{n} {fmt_s(s)}" for n, s in self.timeline) + ".")
        return "\n".join(L).rstrip() + "\n"


def record(report_path, results_path):
    """Replace (or add) this benchmark's section of bench/RESULTS.md; other sections are kept."""
    results.record_section(SECTION, report_path, results_path)


def main():
    args, scale = cli("retention", __doc__, record, SCALES)
    bench = Bench(scale)
    bench.run()
    print_report(bench.report(), args.out)


if __name__ == "__main__":
    main()
