"""Multi-turn sessions: history, the router's hidden state and a running context embedding.

A session belongs to a tenant: the same session id under another tenant is another session.
The table write is part of the caller's transaction (a rolled-back turn did not happen).
"""
import json

import numpy as np

from . import errors
from .sqlglue import parse_vector, planner, vector_literal

MAX_SESSION_ID = 200
HISTORY_TURNS = 8        # kept in the table
PROMPT_TURNS = 3         # replayed into the prompt: at least this many, fewer than twice as many
TURN_CHARS = 2000        # each stored question/answer is cut to this

_plan = planner()


def prompt_turns(session):
    """The earlier (question, answer) turns a prompt replays, oldest first.

    An inference server reuses the evaluated state of the longest prefix it has seen, so a turn
    costs only its new tokens when the replayed turns start where last time's did. A window that
    slid by one turn every time would change the prompt right after the system text and have
    the whole history evaluated again on every turn; this one keeps its first turn for
    PROMPT_TURNS turns, then moves by PROMPT_TURNS at once (between PROMPT_TURNS and
    2 * PROMPT_TURNS - 1 turns are replayed, within the HISTORY_TURNS kept)."""
    if not session or not session["history"]:
        return []
    history, done = session["history"], session["turn_count"]
    first = max(0, done - PROMPT_TURNS) // PROMPT_TURNS * PROMPT_TURNS
    kept_from = done - len(history)        # the turn number of history[0]
    return [(t["q"], t["a"]) for t in history[max(0, first - kept_from):]]


def check_session_id(session_id):
    if session_id is None:
        return None
    if not isinstance(session_id, str) or not 1 <= len(session_id) <= MAX_SESSION_ID \
            or not session_id.strip():
        raise errors.invalid(f"session_id must be 1 to {MAX_SESSION_ID} characters, not blank")
    return session_id


def load(plpy, tenant, session_id):
    """The session as a dict, or None when it is new."""
    rows = plpy.execute(_plan(plpy, "load", """
        SELECT turn_count, history::text AS history, router_state, policy_version,
               context_embedding::text AS ctx
          FROM ruvllm.sessions WHERE tenant = $1 AND session_id = $2""", ["text", "text"]),
                        [tenant, session_id])
    if not rows:
        return None
    r = rows[0]
    return {
        "turn_count": r["turn_count"],
        "history": json.loads(r["history"]),
        "router_state": np.asarray(r["router_state"], dtype=np.float32) if r["router_state"] else None,
        "policy_version": r["policy_version"],
        "context_embedding": parse_vector(r["ctx"]) if r["ctx"] else None,
    }


def save(plpy, tenant, session_id, previous, query, answer, router_state, policy_version, query_vec,
         mask=None):
    """mask: text -> text for what is stored (PII masking); the caller's answer is not touched."""
    mask = mask or (lambda text: text)
    history = list(previous["history"]) if previous else []
    history.append({"q": mask(query)[:TURN_CHARS], "a": mask(answer)[:TURN_CHARS]})
    history = history[-HISTORY_TURNS:]
    turns = (previous["turn_count"] if previous else 0) + 1
    # Running mean of the turns' query embeddings, renormalised: what the session is about.
    ctx = np.asarray(query_vec, dtype=np.float32)
    if previous and previous["context_embedding"] is not None:
        ctx = previous["context_embedding"] * np.float32(turns - 1) + ctx
    norm = float(np.linalg.norm(ctx))
    if norm > 0:
        ctx = ctx / np.float32(norm)
    plpy.execute(_plan(plpy, "save", """
        INSERT INTO ruvllm.sessions AS s (tenant, session_id, turn_count, history, router_state,
                                          policy_version, context_embedding, last_active)
        VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7::public.vector, pg_catalog.now())
        ON CONFLICT (tenant, session_id) DO UPDATE SET
            turn_count = EXCLUDED.turn_count, history = EXCLUDED.history,
            router_state = EXCLUDED.router_state, policy_version = EXCLUDED.policy_version,
            context_embedding = EXCLUDED.context_embedding, last_active = EXCLUDED.last_active""",
                           ["text", "text", "int", "text", "real[]", "int", "text"]),
                 [tenant, session_id, turns, json.dumps(history),
                  [float(v) for v in router_state] if router_state is not None else None,
                  policy_version, vector_literal(ctx)])
    return turns
