"""A question to ruvllm_query or ruvllm_route: its arguments checked, and the settings it runs
under. The stages that answer it are in query.py, the routing decision in routing.py."""
import math

from . import embedding, errors, grounding
from .sqlglue import seconds, settings_many

CONSTRAINT_KEYS = ("max_tokens", "temperature", "top_p", "max_latency_ms", "model")
DEFAULT_MAX_TOKENS = 96
MAX_MAX_TOKENS = 2048
QUERY_HOPS = 2
# ruvllm.abstain_below's default, on the scale of abstention.question_support. On the PostgreSQL
# manual (bench/answers) questions it answers were supported 0.48 and up, questions it does not at
# most 0.47 (all but two below 0.44).
DEFAULT_ABSTAIN_BELOW = 0.45


# --- validation (pure) --------------------------------------------------------------------------

def check_query(query):
    if query is None:
        raise errors.RuvllmError(errors.NULL_VALUE_NOT_ALLOWED, "query must not be NULL")
    if not isinstance(query, str) or not query.strip():
        raise errors.invalid("query must not be empty")
    if len(query) > embedding.MAX_INPUT_CHARS:
        raise errors.RuvllmError(errors.STRING_DATA_RIGHT_TRUNCATION,
                                 f"query is {len(query)} characters, over the limit of "
                                 f"{embedding.MAX_INPUT_CHARS}")
    return query


def check_constraints(constraints):
    """The constraints jsonb as a dict with checked values."""
    constraints = errors.json_object(constraints, "constraints", '{"max_tokens": 64, "temperature": 0.2}')
    unknown = sorted(set(constraints) - set(CONSTRAINT_KEYS))
    if unknown:
        raise errors.invalid(f"unknown constraint {', '.join(map(repr, unknown))}",
                             hint="Known constraints: " + ", ".join(CONSTRAINT_KEYS))

    def number(key, lo, hi, integer=False):
        v = constraints[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if integer:
            ok = ok and float(v).is_integer()
        if not ok:
            raise errors.invalid(f"constraint {key} must be a{'n integer' if integer else ' number'}, not {v!r}")
        if not lo <= v <= hi:
            raise errors.RuvllmError(errors.NUMERIC_VALUE_OUT_OF_RANGE,
                                     f"constraint {key} must be between {lo} and {hi}, not {v}")
        return int(v) if integer else float(v)

    out = {}
    if "max_tokens" in constraints:
        out["max_tokens"] = number("max_tokens", 1, MAX_MAX_TOKENS, integer=True)
    if "temperature" in constraints:
        out["temperature"] = number("temperature", 0.0, 2.0)
    if "top_p" in constraints:
        out["top_p"] = number("top_p", 0.0, 1.0)
    if "max_latency_ms" in constraints:
        out["max_latency_ms"] = number("max_latency_ms", 1, 3_600_000)
    if "model" in constraints:
        if not isinstance(constraints["model"], str) or not constraints["model"]:
            raise errors.invalid(f"constraint model must be a model name, not {constraints['model']!r}")
        out["model"] = constraints["model"]
    return out


# --- settings -------------------------------------------------------------------------------------

_SETTINGS = {   # key: (setting, default, parse)
    "k": ("ruvllm.query_k", "8", int),
    "ef_search": ("ruvllm.ef_search", "64", int),
    "confidence_threshold": ("ruvllm.confidence_threshold", "0.2", float),
    "max_query_tokens": ("ruvllm.max_query_tokens", "512", int),
    "cache_similarity": ("ruvllm.cache_similarity", "0.97", float),
    "cache_ttl": ("ruvllm.cache_ttl", "3600", seconds),
    "max_loaded_models": ("ruvllm.max_loaded_models", "2", int),
    "explore_rate": ("ruvllm.explore_rate", "0.05", float),
    "generation_threads": ("ruvllm.generation_threads", "1", int),
    "answer_style": ("ruvllm.answer_style", "evidence", str),
    "default_model": ("ruvllm.default_model", "extractive", str),
    "abstain_below": ("ruvllm.abstain_below", str(DEFAULT_ABSTAIN_BELOW), float),
    "grounding_overlap": ("ruvllm.grounding_overlap", str(grounding.DEFAULT_MIN_OVERLAP), float),
    "grounding_similarity": ("ruvllm.grounding_similarity", str(grounding.DEFAULT_MIN_SIMILARITY), float),
    "pii_mask": ("ruvllm.pii_mask", "none", str),
    "read_only": ("transaction_read_only", "off", lambda v: v == "on"),
}


# Empty is a value of these, not "unset" (ruvllm.default_model = '': the policy's own default).
_EMPTY_MEANS_SOMETHING = ("ruvllm.default_model",)


def settings(plpy):
    """The settings a request reads, once per request, in one statement."""
    values = settings_many(plpy, [name for name, _default, _parse in _SETTINGS.values()],
                           keep_empty=_EMPTY_MEANS_SOMETHING)
    return {key: parse(values[name] if values[name] is not None else default)
            for key, (name, default, parse) in _SETTINGS.items()}
