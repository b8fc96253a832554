/*
 * graph_guard.c: Cypher writes are refused for roles that are neither superusers nor ruvllm_admin.
 *
 * AGE's executor writes CREATE, SET, DELETE and MERGE straight into its label tables without
 * checking the caller's table privileges or row-level security, so a ruvllm_user that may only
 * INSERT into ruvllm_graph (and only edges between its own tenant's nodes: see the
 * edges_within_tenant triggers) could still rewrite or delete every tenant's edges through
 * cypher(). AGE turns each cypher() call into a query at parse analysis, with one call of an
 * internal function per write clause (ag_catalog._cypher_create_clause and its siblings); this
 * hook runs after AGE's and refuses a query holding one of them. Reads are untouched.
 * ruvllm.guard_cypher_writes = off (superuser only) lifts the guard, for databases whose other
 * AGE graphs need Cypher writes by ordinary roles. The hook is in every backend only when ruvllm
 * is in shared_preload_libraries (the documented set-up).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type_d.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/syscache.h"

#include "ruvllm.h"

bool		ruvllm_guard_cypher_writes = true;

static post_parse_analyze_hook_type prev_post_parse_analyze = NULL;

/* The oids of AGE's write-clause functions in this database; found once, forgotten when
 * pg_proc changes (CREATE or DROP EXTENSION age). */
static const char *const write_clauses[] = {
	"_cypher_create_clause", "_cypher_set_clause", "_cypher_delete_clause", "_cypher_merge_clause"
};
#define N_WRITE_CLAUSES lengthof(write_clauses)
static Oid	write_clause_oids[N_WRITE_CLAUSES];
static bool write_clause_oids_known = false;

static void
forget_write_clause_oids(Datum arg, int cacheid, uint32 hashvalue)
{
	write_clause_oids_known = false;
}

/* By the catalog, not by name resolution: the caller may have no USAGE on ag_catalog. */
static void
find_write_clause_oids(void)
{
	Oid			argtype = INTERNALOID;
	Oid			nsp = get_namespace_oid("ag_catalog", true);
	oidvector  *args = buildoidvector(&argtype, 1);

	for (int i = 0; i < N_WRITE_CLAUSES; i++)
		write_clause_oids[i] = !OidIsValid(nsp) ? InvalidOid :
			GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(write_clauses[i]),
							PointerGetDatum(args), ObjectIdGetDatum(nsp));
	write_clause_oids_known = true;
}

static bool
holds_cypher_write(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr))
	{
		Oid			funcid = ((FuncExpr *) node)->funcid;

		for (int i = 0; i < N_WRITE_CLAUSES; i++)
			if (OidIsValid(write_clause_oids[i]) && funcid == write_clause_oids[i])
				return true;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, holds_cypher_write, context, 0);
	return expression_tree_walker(node, holds_cypher_write, context);
}

static bool
may_write_with_cypher(void)
{
	Oid			admin;

	if (superuser())
		return true;
	admin = get_role_oid("ruvllm_admin", true);
	return OidIsValid(admin) && has_privs_of_role(GetUserId(), admin);
}

static void
guard_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze)
		prev_post_parse_analyze(pstate, query, jstate);
	if (!ruvllm_guard_cypher_writes || !IsTransactionState())
		return;
	if (!write_clause_oids_known)
		find_write_clause_oids();
	if (!OidIsValid(write_clause_oids[0]) && !OidIsValid(write_clause_oids[1]) &&
		!OidIsValid(write_clause_oids[2]) && !OidIsValid(write_clause_oids[3]))
		return;					/* no AGE in this database */
	if (holds_cypher_write((Node *) query, NULL) && !may_write_with_cypher())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied: Cypher CREATE, SET, DELETE and MERGE are reserved for ruvllm_admin"),
				 errdetail("AGE's Cypher executor does not check table privileges or row-level security, so ruvllm allows graph writes only through its own functions."),
				 errhint("Use ruvllm_ingest and ruvllm_link; read the graph with Cypher MATCH ... RETURN.")));
}

void
ruvllm_graph_guard_init(void)
{
	prev_post_parse_analyze = post_parse_analyze_hook;
	post_parse_analyze_hook = guard_post_parse_analyze;
	CacheRegisterSyscacheCallback(PROCOID, forget_write_clause_oids, (Datum) 0);
}
