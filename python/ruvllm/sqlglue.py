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


_plans = {}


def _SETTING_PLAN(plpy):
    plan = _plans.get("setting")
    if plan is None:
        plan = plpy.prepare("SELECT pg_catalog.current_setting($1, true) AS v", ["text"])
        _plans["setting"] = plan
    return plan
