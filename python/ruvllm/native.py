"""The library's C entry points that are not SQL functions (extension/witness_queue.c,
extension/inference_server.c).

Witness rows and ratings are written, and the remote inference server's credential is read,
through these, not through SQL a user could call: only code running in the backend, as this
package does under PL/Python, can reach them. They are found in
ruvllm.so, which PostgreSQL has loaded into this process with RTLD_GLOBAL, so the process's global
symbol scope has them; no path is needed, and a library of another version cannot be picked up
(ruvllm._python_setup has checked the loaded one's version).

Each runs in a subtransaction of the caller's transaction and never raises through Python: it
returns a code, and the error of a failed call is read back here and raised as a RuvllmError with
its SQLSTATE. PyDLL, not CDLL: the GIL stays held while the backend's code runs.
"""
import ctypes
import json
import uuid

from .errors import INTERNAL_ERROR, RuvllmError

FAILED = -1
NOT_QUEUED = 0   # an access record the queue refused: the caller writes it
QUEUED = 1
WRITTEN = 2
DROPPED = 3

_lib = None


def _library(plpy):
    global _lib
    if _lib is None:
        process = ctypes.PyDLL(None)
        if not hasattr(process, "ruvllm_witness_submit"):
            # Loaded by the first call of one of its SQL functions: a session's first ruvllm call
            # has made one already (_python_setup), so this is for code run some other way.
            plpy.execute("SELECT ruvllm._library_version()")
        for name in ("ruvllm_witness_submit", "ruvllm_witness_rate", "ruvllm_access_submit"):
            fn = getattr(process, name)
            fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            fn.restype = ctypes.c_int
        for name in ("ruvllm_witness_error", "ruvllm_witness_error_sqlstate", "ruvllm_inference_credential"):
            getattr(process, name).argtypes = []
            getattr(process, name).restype = ctypes.c_char_p
        _lib = process
    return _lib


def _call(plpy, name, payload):
    lib = _library(plpy)
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    rc = getattr(lib, name)(data, len(data))
    if rc == FAILED:
        sqlstate = (lib.ruvllm_witness_error_sqlstate() or b"").decode("ascii", "replace") or INTERNAL_ERROR
        message = (lib.ruvllm_witness_error() or b"").decode("utf-8", "replace") or "unknown error"
        raise RuvllmError(sqlstate, message)
    return rc


def submit_witness(plpy, payload):
    """A witness row (JSON text) to the queue, or written in this transaction if the queue refuses:
    QUEUED, WRITTEN or DROPPED (the write refused it, with a WARNING saying why)."""
    return _call(plpy, "ruvllm_witness_submit", payload)


def submit_access(plpy, node_ids):
    """The nodes a search of this transaction returned (uuid strings), to the queue for the
    writer's node_access upsert: QUEUED, or NOT_QUEUED when the caller must upsert them itself."""
    return _call(plpy, "ruvllm_access_submit", b"".join(uuid.UUID(str(i)).bytes for i in node_ids))


def rate_witness(plpy, request_id, created_at, rating, correction, quality):
    """A rating onto this tenant's answered witness row; how many rows it changed (0 or 1)."""
    return _call(plpy, "ruvllm_witness_rate", json.dumps({
        "request_id": str(request_id), "created_at": str(created_at), "rating": rating,
        "correction": correction, "quality": quality}, ensure_ascii=False))


def inference_credential(plpy):
    """ruvllm.inference_api_key (which SHOW hides from all but superusers), or None when unset."""
    key = _library(plpy).ruvllm_inference_credential()
    return key.decode("utf-8") if key else None
