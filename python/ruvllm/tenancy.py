"""Tenancy: which tenant this session acts as, and acting as another one.

Row-level security on memory, witness, sessions and the cache compares rows with
public.ruvllm_current_tenant(): a role bound to a tenant acts as it, other roles as the registered
tenant ruvllm.tenant names. The package reads the tenant here, and only the learning loops switch
it, to write a request's QAPair into the asker's tenant whoever runs the loop.
"""
from .sqlglue import planner

_plan = planner()


def current(plpy):
    """The session's tenant as row-level security sees it ('' for none; errors for an unknown one)."""
    return plpy.execute(_plan(plpy, "tenant", "SELECT public.ruvllm_current_tenant() AS t", []))[0]["t"] or ""


def act_as(plpy, tenant):
    """Act as this tenant until the end of the transaction."""
    plpy.execute(_plan(plpy, "act_as", "SELECT pg_catalog.set_config('ruvllm.tenant', $1, true)", ["text"]),
                 [tenant or ""])
