"""Router policies: versioned FastGRNN weights in ruvllm.policies.

Each backend keeps the newest promoted version in memory and checks, once per request, whether
a newer one has been promoted (one index lookup); only then does it fetch and decode the weights.
The install script stores version 1, an untrained router whose decisions fall back to the safe
default until training (the background loop) gives it confidence.
"""
from . import errors
from .router import DefaultDecision, FastGRNNRouter
from .sqlglue import planner

# The safe default: the smallest model (the model head is in tier order), a mid-size context,
# a low temperature (small models ramble when sampled hot).
SAFE_DEFAULT = DefaultDecision(model_index=0, context_size=1024, temperature=0.2, top_p=0.9)

_plan = planner()
_current = {"version": None, "router": None}




def initial_router(model_names, seed=0):
    return FastGRNNRouter(len(model_names), model_names=model_names, default=SAFE_DEFAULT, seed=seed)


def install_initial(plpy):
    """Version 1: an untrained router over the installed models, promoted."""
    names = [r["name"] for r in plpy.execute(
        "SELECT name FROM ruvllm.models WHERE enabled ORDER BY tier, name")]
    if not names:
        raise errors.RuvllmError(errors.OBJECT_NOT_IN_PREREQUISITE_STATE, "no enabled models")
    router = initial_router(names)
    plpy.execute(_plan(plpy, "insert", """
        INSERT INTO ruvllm.policies (status, router, model_names, reason, promoted_at)
        VALUES ('promoted', $1, $2, $3, pg_catalog.now()) RETURNING version""",
                       ["bytea", "text[]", "text"]),
                 [router.to_bytes(), names, "initial untrained router (installed with the extension)"])


def current(plpy):
    """(version, router) of the newest promoted policy."""
    rows = plpy.execute(_plan(plpy, "latest", """
        SELECT version FROM ruvllm.policies WHERE status = 'promoted'
         ORDER BY version DESC LIMIT 1""", []))
    if not rows:
        raise errors.RuvllmError(
            errors.OBJECT_NOT_IN_PREREQUISITE_STATE, "no promoted router policy",
            hint="Promote one: UPDATE ruvllm.policies SET status = 'promoted' WHERE version = ...")
    version = rows[0]["version"]
    if version != _current["version"]:
        blob = plpy.execute(_plan(plpy, "fetch", "SELECT router FROM ruvllm.policies WHERE version = $1",
                                  ["int"]), [version])[0]["router"]
        _current["router"] = FastGRNNRouter.from_bytes(bytes(blob))
        _current["version"] = version
    return version, _current["router"]
