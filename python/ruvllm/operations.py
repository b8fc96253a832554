"""Health and metrics for operators: ruvllm_health() and ruvllm_metrics()."""
from . import inference, models, witness
from .sqlglue import planner

_plan = planner()

# Stage latency histogram buckets, milliseconds (Prometheus "le" bounds).
BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
STAGES = ("embedding", "retrieval", "routing", "attention", "generation", "total")
WINDOW = "1 day"


def health(plpy):
    checks, problems = {}, []
    row = plpy.execute("SELECT count(*) AS n FROM ruvllm.nodes")[0]
    checks["memory_nodes"] = row["n"]
    pol = plpy.execute("""SELECT max(version) FILTER (WHERE status = 'promoted') AS promoted,
                                 max(version) AS newest FROM ruvllm.policies""")[0]
    checks["router_version"] = pol["promoted"]
    checks["router_newest_version"] = pol["newest"]
    if pol["promoted"] is None:
        problems.append(("critical", "no promoted router policy"))
    pool = models.Pool.load(plpy)
    loadable = {}
    for r in pool.rows:
        if r["prompt_style"] == models.EXTRACTIVE:   # no file to check: it is always there
            loadable[r["name"]] = {"enabled": r["enabled"], "path": None, "ok": True, "generates": False}
            continue
        path = models.resolve_path(r["path"], pool.models_dir)
        entry = {"enabled": r["enabled"], "path": path, "generates": True}
        try:
            models.check_file(r["name"], path, r["sha256"])
            entry["ok"] = True
        except Exception as e:  # noqa: BLE001 - reported, not raised
            entry["ok"] = False
            entry["error"] = getattr(e, "message", str(e))
            if r["enabled"]:
                problems.append(("degraded", f"model {r['name']}: {entry['error']}"))
        loadable[r["name"]] = entry
    checks["models"] = loadable
    # The judge needs a model that generates; the extractive tier alone cannot judge.
    if not any(e["ok"] and e["enabled"] and e["generates"] for e in loadable.values()):
        problems.append(("critical", "no enabled model can be loaded"))
    checks["witness_queue"], queue_problems = witness.queue_health(plpy)
    problems.extend(queue_problems)
    workers = plpy.execute("""
        SELECT count(*) FILTER (WHERE backend_type = 'ruvllm worker' AND datname = current_database()) AS worker,
               count(*) FILTER (WHERE backend_type = 'ruvllm launcher') AS launcher
          FROM pg_catalog.pg_stat_activity""")[0]
    listed = _listed_here(plpy)
    checks["worker"] = {"alive": workers["worker"] > 0, "launcher_alive": workers["launcher"] > 0,
                        "database_listed": listed}
    if listed and not workers["worker"]:
        problems.append(("degraded", "the background worker for this database is not running"))
    warnings = []
    if not listed:
        warnings.append("no background worker runs the learning loops here: nothing is judged or learned "
                        "until the database is in ruvllm.databases (ALTER SYSTEM SET ruvllm.databases = ...; "
                        "SELECT pg_reload_conf()) or ruvllm_run_loop() is called")
    default_model = plpy.execute("SELECT current_setting('ruvllm.default_model', true) AS v")[0]["v"]
    checks["default_model"] = default_model or None
    if default_model and default_model not in pool.names():
        warnings.append(f"ruvllm.default_model names {default_model!r}, which is not an enabled model: requests "
                        "the router is not confident about get the router policy's own default "
                        "(SELECT name FROM ruvllm.models WHERE enabled lists the models)")
    last = plpy.execute("""SELECT loop, max(finished_at)::text AS at,
                                  bool_or(status = 'error') FILTER (WHERE finished_at > now() - interval '1 hour') AS recent_error
                             FROM ruvllm.loop_runs GROUP BY loop""")
    checks["loops"] = {r["loop"]: {"last_run": r["at"], "error_last_hour": bool(r["recent_error"])} for r in last}
    for r in last:
        if r["recent_error"]:
            problems.append(("degraded", f"the {r['loop']} loop failed in the last hour"))
    checks["inference"], inference_problems = inference.health(plpy)
    problems += inference_problems
    levels = [lvl for lvl, _ in problems]
    checks["status"] = "critical" if "critical" in levels else "degraded" if levels else "healthy"
    checks["problems"] = [msg for _, msg in problems]
    checks["warnings"] = warnings
    return checks


def _listed_here(plpy):
    value = plpy.execute("SELECT current_setting('ruvllm.databases', true) AS v, current_database() AS d")[0]
    names = [n.strip().strip('"') for n in (value["v"] or "").split(",") if n.strip()]
    return value["d"] in names or value["d"].lower() in [n.lower() for n in names]


def _line(name, value, labels=None):
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


def _escape(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metrics(plpy):
    """Prometheus text exposition format; counters cover the last day of the witness log."""
    out = []

    def family(name, kind, help_text):
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("ruvllm_requests", "gauge", f"ruvllm_query calls in the last {WINDOW}, by status.")
    rows = plpy.execute(f"""
        SELECT CASE WHEN error IS NOT NULL THEN 'error' WHEN cache_hit THEN 'cache_hit' ELSE 'ok' END AS status,
               count(*) AS n
          FROM ruvllm.witness WHERE created_at > now() - interval '{WINDOW}' GROUP BY 1 ORDER BY 1""")
    for r in rows:
        out.append(_line("ruvllm_requests", r["n"], {"status": r["status"]}))

    family("ruvllm_model_selections", "gauge", f"Answers per model in the last {WINDOW}.")
    for r in plpy.execute(f"""SELECT model, count(*) AS n FROM ruvllm.witness
                              WHERE created_at > now() - interval '{WINDOW}' AND model IS NOT NULL
                              GROUP BY 1 ORDER BY 1"""):
        out.append(_line("ruvllm_model_selections", r["n"], {"model": r["model"]}))

    family("ruvllm_writebacks", "gauge", f"Answers written back to memory in the last {WINDOW}.")
    n = plpy.execute(f"""SELECT count(*) AS n FROM ruvllm.nodes
                         WHERE node_type = 'QAPair' AND source LIKE 'request:%'
                           AND created_at > now() - interval '{WINDOW}'""")[0]["n"]
    out.append(_line("ruvllm_writebacks", n))

    family("ruvllm_mean_quality", "gauge", f"Mean judged quality in the last {WINDOW}, by model.")
    for r in plpy.execute(f"""SELECT model, avg(quality)::float8 AS q FROM ruvllm.witness
                              WHERE created_at > now() - interval '{WINDOW}' AND quality IS NOT NULL
                              GROUP BY 1 ORDER BY 1"""):
        out.append(_line("ruvllm_mean_quality", round(r["q"], 6), {"model": r["model"]}))

    family("ruvllm_replay_size", "gauge", "Samples in the router's replay buffer.")
    out.append(_line("ruvllm_replay_size", plpy.execute("SELECT count(*) AS n FROM ruvllm.replay")[0]["n"]))

    family("ruvllm_stage_latency_ms", "histogram", f"Latency per pipeline stage in the last {WINDOW}, milliseconds.")
    cols = ", ".join(
        f"count(*) FILTER (WHERE {s}_ms <= {b}) AS {s}_le_{b}" for s in STAGES for b in BUCKETS_MS)
    sums = ", ".join(f"count({s}_ms) AS {s}_count, COALESCE(sum({s}_ms), 0)::float8 AS {s}_sum" for s in STAGES)
    # Column names come from the fixed STAGES and BUCKETS_MS above, never from input.
    r = plpy.execute(f"SELECT {cols}, {sums} FROM ruvllm.witness "
                     f"WHERE created_at > now() - interval '{WINDOW}' AND error IS NULL")[0]
    for s in STAGES:
        for b in BUCKETS_MS:
            out.append(_line("ruvllm_stage_latency_ms_bucket", r[f"{s}_le_{b}"], {"stage": s, "le": b}))
        out.append(_line("ruvllm_stage_latency_ms_bucket", r[f"{s}_count"], {"stage": s, "le": "+Inf"}))
        out.append(_line("ruvllm_stage_latency_ms_sum", round(r[f"{s}_sum"], 3), {"stage": s}))
        out.append(_line("ruvllm_stage_latency_ms_count", r[f"{s}_count"], {"stage": s}))
    return "\n".join(out) + "\n"

