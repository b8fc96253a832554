"""Helpers for the PL/Python glue: turning package errors into PostgreSQL errors."""
from .errors import RuvllmError


def call(plpy, func, *args, **kwargs):
    """Run func, reporting a RuvllmError to the client with its SQLSTATE, hint and detail."""
    try:
        return func(*args, **kwargs)
    except RuvllmError as e:
        plpy.error(e.message, detail=e.detail, hint=e.hint, sqlstate=e.sqlstate)


def setting(plpy, name, default=None):
    """A ruvllm.* setting as text (None when unset and no default is given)."""
    rows = plpy.execute(_SETTING_PLAN(plpy), [name])
    value = rows[0]["v"] if rows else None
    return default if value in (None, "") else value


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
