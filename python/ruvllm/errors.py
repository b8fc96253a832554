"""Errors that carry a PostgreSQL SQLSTATE.

The package never imports plpy: code raises RuvllmError, and the SQL glue turns it into
an error PL/Python reports with its SQLSTATE, detail and hint (sqlglue.sql_error).
"""


class RuvllmError(Exception):
    """An error meant for the SQL caller."""

    def __init__(self, sqlstate, message, hint=None, detail=None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint
        self.detail = detail


# SQLSTATEs used across the package (PostgreSQL appendix A).
INVALID_PARAMETER_VALUE = "22023"
NULL_VALUE_NOT_ALLOWED = "22004"
STRING_DATA_RIGHT_TRUNCATION = "22001"
INVALID_TEXT_REPRESENTATION = "22P02"
NUMERIC_VALUE_OUT_OF_RANGE = "22003"
UNDEFINED_OBJECT = "42704"
NO_DATA_FOUND = "P0002"
OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"
CONFIG_FILE_ERROR = "F0000"
EXTERNAL_ROUTINE_EXCEPTION = "38000"
INTERNAL_ERROR = "XX000"


# WARNINGs for the client, raised where no plpy is at hand (a helper thread, deep in the package):
# (message, detail, hint), sent by the SQL glue when the call returns (sqlglue.call).
pending_warnings = []


def warn_client(message, detail=None, hint=None):
    pending_warnings.append((message, detail, hint))


def invalid(message, hint=None, detail=None):
    return RuvllmError(INVALID_PARAMETER_VALUE, message, hint=hint, detail=detail)


def json_object(value, what, example):
    """A jsonb argument as a dict: None gives {}, text is parsed, anything but an object is 22023."""
    import json
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise RuvllmError(INVALID_TEXT_REPRESENTATION, f"{what} is not JSON: {e}") from None
        except RecursionError:
            raise invalid(f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise invalid(f"{what} must be a JSON object", hint=f"For example {example}")
    return value
