"""Witness rows: one per ruvllm_query call, success or failure.

A row is handed to the witness queue (extension/witness_queue.c) as JSON whose keys are the
columns of ruvllm.witness; the background writer inserts it in its own transaction, so the row
survives the caller's ROLLBACK and the error of a failed call. When the queue refuses the row
(ruvllm.witness_async off, the queue full, no worker slot), it is written here, in the caller's
transaction: then it rolls back with the caller.
"""
import datetime
import json

from .sqlglue import planner, vector_literal

COLUMNS = (
    "request_id", "session_id", "tenant", "query", "query_embedding", "model", "context_size",
    "temperature", "top_p", "confidence", "routing_confidence", "used_default", "policy_version",
    "model_probs", "explored", "features", "embedding_ms", "retrieval_ms", "routing_ms", "attention_ms",
    "generation_ms", "total_ms", "prompt_tokens", "completion_tokens", "context_node_ids",
    "response", "response_embedding", "cache_hit", "error", "error_sqlstate", "created_at",
)

_plan = planner()




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
    for key, default in (("tenant", ""), ("cache_hit", False), ("explored", False)):
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


def record(plpy, row):
    """Queue the row for the writer; write it here if the queue refuses. Returns 'queued' or 'sync'."""
    payload = json.dumps(row, separators=(",", ":"))
    queued = plpy.execute(_plan(plpy, "enqueue", "SELECT ruvllm._witness_enqueue($1) AS ok", ["text"]),
                          [payload])[0]["ok"]
    if queued:
        return "queued"
    plpy.execute(_plan(plpy, "write", "SELECT ruvllm._witness_write(ARRAY[$1]) AS n", ["text"]), [payload])
    return "sync"
