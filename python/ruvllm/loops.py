"""The three learning loops, run by the background worker or by hand (ruvllm_run_loop).

    instant     judge new answers, write good ones back to memory, move the weights of the edges
                that fed them, offer them to the replay buffer
    background  train the router from the replay buffer and recent witness rows; promote the new
                policy version only if its held-out utility is not lower
    deep        k-means++ pattern bank over recent queries, memory compression, witness archiving
    oracle      (by hand) every enabled model answers a sample of past questions; each is judged
                and the utilities label the sample in the replay buffer

Each run is recorded in ruvllm.loop_runs, except the worker's instant runs that found nothing to
do. A run that fails is rolled back to where it started
(a subtransaction), recorded with its error and reported as a WARNING: the worker that called it
goes on, and so does a script calling ruvllm_run_loop in a loop.
"""
import datetime
import json

from . import errors

LOOPS = ("instant", "background", "deep", "oracle")
RUN_BY = ("manual", "worker")


def _impl(loop):
    # Imported on use: a backend that only runs the instant loop never loads the trainer.
    if loop == "instant":
        from .learning import instant_loop
        return instant_loop
    if loop == "background":
        from .learning import background_loop
        return background_loop
    if loop == "deep":
        from .learning import deep_loop
        return deep_loop
    from .learning import oracle_loop
    return oracle_loop


def run(plpy, loop, run_by="manual"):
    if loop not in LOOPS:
        raise errors.invalid(f"unknown loop {loop!r}", hint="Loops: " + ", ".join(LOOPS))
    if run_by not in RUN_BY:
        raise errors.invalid(f"run_by must be one of {', '.join(RUN_BY)}")
    started = datetime.datetime.now(datetime.timezone.utc)
    status, metrics, error = "ok", {}, None
    try:
        with plpy.subtransaction():
            metrics = _impl(loop)(plpy) or {}
    except Exception as e:  # noqa: BLE001 - a failed run is recorded, not raised
        status = "error"
        error = getattr(e, "message", None) or str(e) or type(e).__name__
        plpy.warning(f"ruvllm {loop} loop failed: {error}")
    if run_by == "worker" and loop == "instant" and status == "ok" and not any(metrics.values()):
        # The worker runs this loop every few seconds; runs that found nothing to do would
        # flood ruvllm.loop_runs (~43,000 rows a day per database at the default interval).
        return {"id": None, "loop": loop, "run_by": run_by, "status": status, "metrics": metrics,
                "error": None, "started_at": started.isoformat(), "finished_at": None}
    plan = plpy.prepare("""
        INSERT INTO ruvllm.loop_runs (loop, run_by, started_at, status, metrics, error)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6)
        RETURNING id, finished_at""", ["text", "text", "timestamptz", "text", "text", "text"])
    row = plpy.execute(plan, [loop, run_by, started.isoformat(), status, json.dumps(metrics), error])[0]
    return {"id": row["id"], "loop": loop, "run_by": run_by, "status": status, "metrics": metrics,
            "error": error, "started_at": started.isoformat(), "finished_at": str(row["finished_at"])}
