"""Helpers for the PL/Python glue: PostgreSQL errors, prepared plans, settings, and the encodings
vectors travel in between numpy and pgvector."""
import json

import struct

import numpy as np

from . import errors
from .errors import RuvllmError


def call(plpy, func, *args, **kwargs):
    """Run func, reporting a RuvllmError to the client with its SQLSTATE, hint and detail."""
    try:
        return func(*args, **kwargs)
    except RuvllmError as e:
        raise sql_error(plpy, e) from None
    except OverflowError as e:  # a number past what float or int can hold, e.g. 1e400
        raise sql_error(plpy, RuvllmError("22003", f"numeric value out of range: {e}")) from None
    finally:
        send_warnings(plpy)


def send_warnings(plpy):
    """The package's pending WARNINGs (errors.warn_client) to the client, from this thread."""
    while errors.pending_warnings:
        message, detail, hint = errors.pending_warnings.pop(0)
        plpy.warning(message, **{k: v for k, v in (("detail", detail), ("hint", hint)) if v is not None})


def call_rows(plpy, func, *args, **kwargs):
    """call() for a set-returning function: its first row is fetched here, so an error before it
    (bad arguments, an unreachable server) is reported like any other function's. PL/Python
    reports an error raised by the iterator later as 'error fetching next item from iterator',
    with the SQLSTATE and the message (as detail) of the error below it."""
    rows = call(plpy, func, *args, **kwargs)
    first = call(plpy, next, rows, _END)
    if first is _END:
        return iter(())
    return _rows_after(plpy, first, rows)


_END = object()


def _rows_after(plpy, first, rows):
    yield first
    try:
        yield from rows
    except RuvllmError as e:
        raise sql_error(plpy, e) from None


_error_class = {}


def sql_error(plpy, e):
    """The exception PL/Python turns into the client's error. PL/Python writes an error as
    'TypeName: message' and takes SQLSTATE, detail and hint from the attributes of a plpy.Error;
    plpy.error() itself would name it 'plpy.Error' and write 'DETAIL: None' for an absent detail.
    So: a plpy.Error subclass named 'ruvllm', with only the attributes that have values."""
    cls = _error_class.get(plpy.Error)
    if cls is None:
        cls = _error_class[plpy.Error] = type("ruvllm", (plpy.Error,), {"__module__": "builtins"})
    err = cls(e.message)
    err.sqlstate = e.sqlstate
    if e.detail is not None:
        err.detail = e.detail
    if e.hint is not None:
        err.hint = e.hint
    return err


def setting(plpy, name, default=None):
    """A ruvllm.* setting as text (None when unset and no default is given)."""
    rows = plpy.execute(_SETTING_PLAN(plpy), [name])
    value = rows[0]["v"] if rows else None
    return default if value in (None, "") else value


def settings_many(plpy, names, keep_empty=()):
    """Several settings as text in one statement (a round trip each costs ~50 us in a request):
    {name: value or None when unset or empty}; a name in keep_empty, where empty means something
    of its own, is "" when set empty."""
    names = list(names)
    rows = plpy.execute(_plan(plpy, "settings_many", """
        SELECT n, pg_catalog.current_setting(n, true) AS v FROM unnest($1::text[]) AS n""", ["text[]"]),
                        [names])
    got = {r["n"]: r["v"] for r in rows}
    return {n: (None if got.get(n) is None or (got[n] == "" and n not in keep_empty) else got[n])
            for n in names}


def read_only(plpy):
    """Whether this transaction cannot write (a standby, or SET TRANSACTION READ ONLY)."""
    return setting(plpy, "transaction_read_only", "off") == "on"


_UNIT_SECONDS = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}


def seconds(value):
    """A time setting as current_setting() shows it ('3600', '1h', '30min', '500ms') in seconds."""
    text = str(value).strip()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    return float(number) * _UNIT_SECONDS.get(text[len(number):], 1)


def planner():
    """A per-module cache of prepared plans: plan(plpy, key, sql, types) prepares once per backend."""
    plans = {}

    def plan(plpy, key, sql, types):
        prepared = plans.get(key)
        if prepared is None:
            prepared = plans[key] = plpy.prepare(sql, types)
        return prepared
    return plan


_plan = planner()


def _SETTING_PLAN(plpy):
    return _plan(plpy, "setting", "SELECT pg_catalog.current_setting($1, true) AS v", ["text"])


# --- vectors ------------------------------------------------------------------------------------

_last_literal = [None, None]


def vector_literal(v):
    """A vector as pgvector's text input ('[0.5,-0.25]'), for a parameter of type public.vector.
    One request passes its query vector to several statements: the last vector's text is kept
    so it is
    formatted once (~0.3 ms for 384 floats). Keyed by the vector's bytes, not its identity: an
    array may be refilled in place."""
    key = v.tobytes() if isinstance(v, np.ndarray) else None
    if key is not None and _last_literal[0] == key:
        return _last_literal[1]
    text = "[" + ",".join("%.7g" % x for x in v) + "]"
    if key is not None:
        _last_literal[0], _last_literal[1] = key, text
    return text


def parse_vector(text):
    """pgvector's text output (a vector column cast to text) as a float32 array."""
    return np.array(json.loads(text), dtype=np.float32)


def vector_send(v):
    """A vector in pgvector's binary form (vector_send's: int16 dimensions, int16 0, big-endian
    float4s), for a bytea parameter that the statement reads with ruvllm._vector_recv: ~1 us
    where its text (vector_literal) takes ~0.25 ms to format and the server as long again to parse."""
    v = np.asarray(v, dtype=np.float32)
    return struct.pack(">HH", len(v), 0) + v.astype(">f4").tobytes()


def vector_from_send(blob):
    """public.vector_send()'s binary form as a float32 array: no text parsing for many vectors."""
    # int16 dim, int16 unused, then big-endian float4s.
    return np.frombuffer(bytes(blob)[4:], dtype=">f4").astype(np.float32)
