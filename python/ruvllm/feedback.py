"""ruvllm_feedback: a user's rating and correction of an answered request.

The rating goes onto the request's witness row (and into its quality once the instant loop has
judged it); a correction goes into memory as a high-confidence QAPair linked to the context the
answer used, so the next similar question finds it.
"""
import time

from . import errors, graph, judge, memory, native, pii, tenancy
from .sqlglue import planner

_plan = planner()


def give(plpy, request_id, rating, correction=None, wait_s=3.0):
    """Rating (1..5) onto the witness row; a correction into memory as a high-confidence QAPair."""
    if request_id is None:
        raise errors.RuvllmError(errors.NULL_VALUE_NOT_ALLOWED, "request_id must not be NULL")
    if rating is None:
        raise errors.RuvllmError(errors.NULL_VALUE_NOT_ALLOWED, "rating must not be NULL")
    if not 1 <= rating <= 5:
        raise errors.RuvllmError(errors.NUMERIC_VALUE_OUT_OF_RANGE,
                                 f"rating must be between 1 and 5, not {rating}")
    if correction is not None:
        memory.check_content(correction, "correction")
    tenant = tenancy.current(plpy)
    find = _plan(plpy, "find", """
        SELECT created_at, query, context_node_ids::text[] AS ctx, judge_score, groundedness,
               relevance FROM ruvllm.witness
         WHERE request_id = $1::uuid AND tenant = $2 AND error IS NULL""", ["text", "text"])
    rows = plpy.execute(find, [str(request_id), tenant])
    deadline = time.monotonic() + wait_s
    while not rows and time.monotonic() < deadline and _queue_pending(plpy):
        # The row may still be in the witness queue: the writer commits within milliseconds.
        time.sleep(0.02)
        rows = plpy.execute(find, [str(request_id), tenant])
    if not rows:
        raise errors.RuvllmError(errors.NO_DATA_FOUND, f"no answered request {request_id}",
                                 hint="Give feedback on a request_id that ruvllm_query returned "
                                      "to this tenant.")
    row = rows[0]
    quality = None
    if row["groundedness"] is not None:
        # Already judged: the rating joins the automatic signals now (judge.py has the formula).
        quality = judge.combined_quality(
            judge.automatic_quality(row["judge_score"], row["groundedness"], row["relevance"] or 0.0),
            rating)
    # Through the library: users may not update witness rows (quality is a training label).
    native.rate_witness(plpy, request_id, row["created_at"], rating, correction, quality)
    if correction is None:
        return None
    content = f"Question: {row['query']}\nAnswer: {pii.storage_mask(plpy)(correction)}"
    node = memory.ingest_many(plpy, [(content, "QAPair", f"feedback:{request_id}",
                                      {"confidence": 0.95, "tags": ["feedback", "correction"],
                                       "request_id": str(request_id)})])[0]
    context = [c for c in (row["ctx"] or []) if c != str(node)]
    graph.insert_edges(plpy, "Derived", [(str(node), c, 1.0, 0.95) for c in context], "feedback")
    return node


def _queue_pending(plpy):
    stats = plpy.execute(_plan(plpy, "qstats",
                               "SELECT queued, written FROM ruvllm._witness_queue_stats()", []))[0]
    return stats["written"] < stats["queued"]
