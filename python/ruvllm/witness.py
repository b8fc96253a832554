"""Witness rows: one per ruvllm_query call, success or failure.

A row is handed to the witness queue (extension/witness_queue.c) as JSON whose keys are the
columns of ruvllm.witness; the background writer inserts it in its own transaction, so the row
survives the caller's ROLLBACK and the error of a failed call. A row too big for the queue has its
longest texts cut first (each cut text ends with CUT_MARK), so that size never sends a row down
the synchronous path. When the queue refuses the row anyway (ruvllm.witness_async off, the queue
full, no worker slot, more databases with rows in flight than the queue has rings), it is written
in the caller's transaction (as the witness table's owner: users cannot write it): then it rolls
back with the caller. Both go through the library (native.py), never through SQL a user can call.
"""
import datetime
import json

from . import native
from .sqlglue import vector_literal

COLUMNS = (
    "request_id", "session_id", "tenant", "query", "query_embedding", "model", "context_size",
    "temperature", "top_p", "confidence", "routing_confidence", "used_default", "policy_version",
    "model_probs", "explored", "features", "embedding_ms", "retrieval_ms", "routing_ms", "attention_ms",
    "generation_ms", "total_ms", "prompt_tokens", "completion_tokens", "context_node_ids",
    "response", "response_embedding", "cache_hit", "error", "error_sqlstate", "created_at",
    "prompt_cached_tokens", "grounded", "abstained",
)

# The queue's largest row, in bytes of JSON (WITNESS_MAX_ROW_BYTES in extension/witness_queue.c),
# less room for the tenant the queue may stamp into it.
MAX_QUEUED_BYTES = 256 * 1024 - 1024
# Texts cut to fit, longest first.
CUTTABLE = ("query", "response", "error")
# Ends a cut text; {n} is the length of the whole text in bytes (UTF-8).
CUT_MARK = " [cut by ruvllm: {n} bytes in all]"


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


MASKED = ("query", "response", "error")


def make_row(mask=None, **values):
    """A witness row as a JSON-ready dict; unknown keys are a bug, so they raise.

    mask: text -> text applied to the stored text columns (PII masking, pii.masker).
    """
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not witness columns: {sorted(unknown)}")
    row = {c: values.get(c) for c in COLUMNS}
    if mask is not None:
        for key in MASKED:
            if row[key] is not None:
                row[key] = mask(row[key])
    # jsonb_populate_record gives NULL, not the column default, for a missing key.
    for key, default in (("tenant", ""), ("cache_hit", False), ("explored", False), ("abstained", False)):
        if row[key] is None:
            row[key] = default
    for key in ("query_embedding", "response_embedding"):
        if row[key] is not None and not isinstance(row[key], str):
            row[key] = vector_literal(row[key])
    if isinstance(row["created_at"], datetime.datetime):
        row["created_at"] = row["created_at"].isoformat()
    for key in ("request_id",):
        if row[key] is not None:
            row[key] = str(row[key])
    if row["context_node_ids"] is not None:
        row["context_node_ids"] = [str(i) for i in row["context_node_ids"]]
    return row


def _json(row):
    # UTF-8 as it is, not \\u escapes: a row's size in the queue is then its texts' size.
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def _size(value):
    return len(_json(value).encode("utf-8"))


def fit(row, max_bytes=MAX_QUEUED_BYTES):
    """The row's JSON, its texts cut until it fits in max_bytes (as far as cutting can).

    The room the other columns leave is shared fairly: a text shorter than its share keeps all of
    it and leaves the rest to the longer ones. Escapes make a text's JSON longer than its bytes,
    so a second pass cuts what still does not fit.
    """
    payload = _json(row)
    if len(payload.encode("utf-8")) <= max_bytes:
        return payload
    row = dict(row)
    whole = {k: row[k].encode("utf-8") for k in CUTTABLE if isinstance(row[k], str)}
    for _ in range(3):
        size = len(payload.encode("utf-8"))
        if size <= max_bytes or not whole:
            break
        room = max_bytes - (size - sum(_size(row[k]) for k in whole))
        share = {}
        for i, k in enumerate(sorted(whole, key=lambda k: _size(row[k]))):
            share[k] = min(_size(row[k]), max(0, room) // (len(whole) - i))
            room -= share[k]
        for k, raw in whole.items():
            if _size(row[k]) <= share[k]:
                continue
            mark = CUT_MARK.format(n=len(raw))
            # Bytes of text the share holds, given the quotes and how its JSON grew by escapes.
            grown = _size(row[k]) / max(1, len(row[k].encode("utf-8")))
            keep = max(0, int((share[k] - 2 - len(mark.encode("utf-8"))) / grown))
            row[k] = raw[:keep].decode("utf-8", "ignore") + mark
        payload = _json(row)
    return payload


def record(plpy, row):
    """Queue the row for the writer; written here if the queue refuses. Returns 'queued', 'sync' or
    'dropped' (the synchronous write refused the row, and warned why).

    Through the library, not SQL: users may not write witness rows themselves (native.py)."""
    rc = native.submit_witness(plpy, fit(row))
    return {native.QUEUED: "queued", native.WRITTEN: "sync"}.get(rc, "dropped")


def queue_health(plpy):
    """The witness queue's part of ruvllm_health(): (its check, [(level, problem)])."""
    q = dict(plpy.execute("SELECT * FROM ruvllm._witness_queue_stats()")[0])
    state = plpy.execute("""SELECT ring_generation, rows_queued, rows_done, rows_written_total,
                                   last_written_at::text AS last_written_at
                              FROM ruvllm.witness_writer_state""")
    problems = []
    for key in ("last_enqueued_at", "last_written_at", "server_started_at"):
        q[key] = None if q[key] is None else str(q[key])
    # Rows kept in the queue across the last restart were written (or are being) by the writer;
    # what a reset of the queue lost can only be known up to the writer's last committed batch.
    q["lost_before_reset"] = 0
    if state:
        s = state[0]
        q["committed_total"] = s["rows_written_total"]
        q["committed_last_at"] = s["last_written_at"]
        if s["ring_generation"] != q["ring_generation"] and s["rows_queued"] > s["rows_done"]:
            q["lost_before_reset"] = s["rows_queued"] - s["rows_done"]
    if q["pending_bytes"] > 512 * 1024:
        problems.append(("degraded", "witness queue more than half full"))
    if q["lost"]:
        problems.append(("degraded", f"{q['lost']} witness rows could not be written (the server log says why)"))
    if q["lost_before_reset"]:
        problems.append(("degraded", f"at least {q['lost_before_reset']} witness rows queued before the witness "
                                     "queue was started afresh were never written"))
    return q, problems
