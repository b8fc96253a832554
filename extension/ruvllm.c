/*
 * ruvllm.c: the extension's native library: its settings, where this version's Python package
 * lives, the library version, and the DROP EXTENSION trigger. The witness log's queue and writer
 * are in witness_queue.c.
 */
#include "postgres.h"

#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "ruvllm.h"
#include "support.h"

PG_MODULE_MAGIC;

#ifndef RUVLLM_VERSION
#error "RUVLLM_VERSION must be defined by the Makefile (from ruvllm.control)"
#endif

void		_PG_init(void);

/* Settings read by the Python package through current_setting(); defined here so that they are
 * typed and range-checked, and documented in README.md. */
static int	ruvllm_ef_search = 64;
static char *ruvllm_tenant = NULL;
static double ruvllm_same_topic_threshold = 0.6;
static double ruvllm_dedup_similarity = 0.95;
static int	ruvllm_max_loaded_models = 2;
static char *ruvllm_models_dir = NULL;
static double ruvllm_confidence_threshold = 0.2;
static int	ruvllm_max_query_tokens = 512;
static int	ruvllm_query_k = 8;
static double ruvllm_cache_similarity = 0.97;
static int	ruvllm_cache_ttl = 3600;
static double ruvllm_quality_threshold = 0.75;
static int	ruvllm_replay_capacity = 10000;
static double ruvllm_explore_rate = 0.05;
static double ruvllm_utility_lambda = 0.05;
static double ruvllm_utility_mu = 0.01;
static int	ruvllm_judge_max_per_run = 20;
static int	ruvllm_witness_archive_after = 30 * 86400;
char	   *ruvllm_databases = NULL;
int			ruvllm_instant_interval = 2;
int			ruvllm_background_interval = 600;
int			ruvllm_deep_interval = 3600;
static char *ruvllm_pii_mask = NULL;
static int	ruvllm_generation_threads = 1;

/*
 * Bad values are refused when they are set (SET, ALTER SYSTEM, postgresql.conf), not found later
 * by the Python package in the middle of a query.
 */
static const char *const pii_kinds[] = {"email", "phone", "card", "iban", "ip"};

static bool
check_pii_mask(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	char	   *item;
	char	   *save = NULL;
	int			items = 0;
	bool		saw_none = false;

	for (item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save))
	{
		char	   *end;
		bool		known = false;

		while (*item == ' ' || *item == '\t')
			item++;
		end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*item == '\0')
			continue;
		items++;
		if (pg_strcasecmp(item, "none") == 0)
		{
			saw_none = true;
			continue;
		}
		for (int i = 0; i < lengthof(pii_kinds); i++)
			known |= pg_strcasecmp(item, pii_kinds[i]) == 0;
		if (!known)
		{
			GUC_check_errdetail("\"%s\" is not a kind of personal data ruvllm masks.", item);
			GUC_check_errhint("Kinds: email, phone, card, iban, ip; empty or none masks nothing.");
			pfree(copy);
			return false;
		}
	}
	pfree(copy);
	if (saw_none && items > 1)
	{
		GUC_check_errdetail("\"none\" cannot be combined with kinds.");
		return false;
	}
	return true;
}

/* Tenant names appear in row-level security policies, metrics labels and logs: keep them plain. */
static bool
check_tenant(char **newval, void **extra, GucSource source)
{
	const char *c;

	if (strlen(*newval) > 63)
	{
		GUC_check_errdetail("A tenant name has at most 63 characters.");
		return false;
	}
	for (c = *newval; *c; c++)
	{
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
			  *c == '_' || *c == '-' || *c == '.'))
		{
			GUC_check_errdetail("A tenant name has only letters, digits, \"_\", \"-\" and \".\".");
			return false;
		}
	}
	return true;
}

void
_PG_init(void)
{
	/*
	 * Who may change what: settings that change what is audited (witness_async), what a backend
	 * may spend (threads, loaded models, question size) or what every tenant's router learns from
	 * (exploration, the learning loops' knobs) are PGC_SUSET, which superusers and roles granted
	 * SET on them (ruvllm_admin, by the install script) may change; the rest are each session's.
	 */
	DefineCustomIntVariable("ruvllm.ef_search",
							"HNSW candidate list size for memory searches (hnsw.ef_search while ruvllm searches).",
							"Higher finds more of the true nearest neighbours, slower.",
							&ruvllm_ef_search, 64, 1, 1000, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ruvllm.tenant",
							   "Tenant whose memory, witness rows, sessions and cache this session reads and writes (empty: no tenant).",
							   "It must be a registered tenant (ruvllm_create_tenant); a role bound to a tenant always acts as it.", &ruvllm_tenant, "", PGC_USERSET, 0, check_tenant, NULL, NULL);
	DefineCustomRealVariable("ruvllm.same_topic_threshold",
							 "Cosine similarity above which ingestion links a new node to an existing one with a SameTopic edge.",
							 NULL, &ruvllm_same_topic_threshold, 0.6, 0.0, 1.0, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.dedup_similarity",
							 "Cosine similarity at or above which a MinHash near-duplicate is merged into the existing node.",
							 NULL, &ruvllm_dedup_similarity, 0.95, 0.0, 1.0, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.max_loaded_models",
							"Most models one backend keeps loaded (least recently used is unloaded first).",
							NULL, &ruvllm_max_loaded_models, 2, 1, 16, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("ruvllm.models_dir",
							   "Directory that relative model paths in ruvllm.models are resolved against.",
							   NULL, &ruvllm_models_dir, "/usr/local/share/ruvllm/models",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.confidence_threshold",
							 "Router confidence below which ruvllm_query uses the safe default decision.",
							 NULL, &ruvllm_confidence_threshold, 0.2, 0.0, 1.0, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.max_query_tokens",
							"Longest query ruvllm_query accepts, in embedding tokens.",
							NULL, &ruvllm_max_query_tokens, 512, 8, 100000, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.query_k",
							"Memory nodes ruvllm_query retrieves by similarity before graph expansion.",
							NULL, &ruvllm_query_k, 8, 1, 100, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.cache_similarity",
							 "Cosine similarity at or above which an earlier answer of the same tenant is served from the response cache (1 disables semantic hits).",
							 NULL, &ruvllm_cache_similarity, 0.97, 0.0, 1.0, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.cache_ttl",
							"How long a cached answer may be served (0 disables the response cache).",
							NULL, &ruvllm_cache_ttl, 3600, 0, 30 * 86400, PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("ruvllm.witness_async",
							 "Queue witness rows for the background writer, so they survive the caller's rollback and a failed call.",
							 "Off: rows are written in the caller's transaction and roll back with it.",
							 &ruvllm_witness_async, true, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.witness_writer_idle",
							"Seconds a witness writer waits for rows before it exits and releases its connection.",
							NULL, &ruvllm_witness_writer_idle, 60, 1, 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.quality_threshold",
							 "Judged quality at or above which an answer is written back to memory as a QAPair.",
							 NULL, &ruvllm_quality_threshold, 0.75, 0.0, 1.0, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.replay_capacity",
							"Samples the router's replay buffer keeps (reservoir sampling over all requests).",
							NULL, &ruvllm_replay_capacity, 10000, 100, 10000000, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.explore_rate",
							 "Share of requests routed to a random enabled model instead of the router's choice, so the router keeps seeing every model.",
							 NULL, &ruvllm_explore_rate, 0.05, 0.0, 1.0, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.utility_lambda",
							 "Utility cost of one second of latency in router training: U = quality - lambda * seconds - mu * cost.",
							 NULL, &ruvllm_utility_lambda, 0.05, 0.0, 100.0, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.utility_mu",
							 "Utility cost of one unit of model cost (cost_per_token x tokens / 1000) in router training.",
							 NULL, &ruvllm_utility_mu, 0.01, 0.0, 100.0, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.judge_max_per_run",
							"Most answers one run of the instant loop judges.",
							NULL, &ruvllm_judge_max_per_run, 20, 1, 10000, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.witness_archive_after",
							"Age after which retention archives whole days of the witness log, unless ruvllm_set_retention set the witness's keep period.",
							"Expired daily partitions move to schema ruvllm_archive; rows of days without a partition to ruvllm.witness_archive.", &ruvllm_witness_archive_after, 30 * 86400, 3600, INT_MAX, PGC_SUSET,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("ruvllm.databases",
							   "Databases in which the ruvllm background worker runs the learning loops (comma-separated).",
							   NULL, &ruvllm_databases, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.instant_interval",
							"Seconds between runs of the instant loop (judge, writeback, edge weights, replay).",
							NULL, &ruvllm_instant_interval, 2, 1, 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.background_interval",
							"Seconds between runs of the background loop (router training).",
							NULL, &ruvllm_background_interval, 600, 1, 7 * 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.deep_interval",
							"Seconds between runs of the deep loop (pattern bank, memory compression, witness archiving).",
							NULL, &ruvllm_deep_interval, 3600, 1, 30 * 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("ruvllm.pii_mask",
							   "Kinds of personal data masked before ruvllm stores text: email, phone, card, iban, ip (comma-separated; empty: none).",
							   "Masks witness rows, sessions, the response cache and memory writeback; the answer returned to the caller is not altered.",
							   &ruvllm_pii_mask, "email,phone,card,iban,ip", PGC_SUSET, 0,
							   check_pii_mask, NULL, NULL);
	DefineCustomIntVariable("ruvllm.generation_threads",
							"Threads llama.cpp uses for one generation in a backend (0: one per core); applies to models loaded after it is set.",
							"Backends generate side by side; llama.cpp's threads spin at barriers, so more threads than free cores slow every one down.",
							&ruvllm_generation_threads, 1, 0, 256, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("ruvllm.guard_cypher_writes",
							 "Refuse Cypher CREATE, SET, DELETE and MERGE for roles other than superusers and ruvllm_admin.",
							 "AGE's Cypher executor ignores table privileges and row-level security; turn off only in a database whose other AGE graphs need Cypher writes by ordinary roles.",
							 &ruvllm_guard_cypher_writes, true, PGC_SUSET, 0, NULL, NULL, NULL);
	/* Settings under ruvllm.* are ours: a typo in postgresql.conf is reported, not ignored. */
	MarkGUCPrefixReserved("ruvllm");
	ruvllm_graph_guard_init();

	/* Static workers can only be registered at server start; loaded later, ruvllm runs no loops. */
	if (process_shared_preload_libraries_in_progress)
		ruvllm_register_launcher();
}

PG_FUNCTION_INFO_V1(ruvllm_python_dir);

/*
 * The directory holding one subdirectory per installed version of the Python package. It is
 * computed from the server's own pkglibdir at run time, so a relocated installation still works.
 */
Datum
ruvllm_python_dir(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s/ruvllm-python", pkglib_path)));
}

PG_FUNCTION_INFO_V1(ruvllm_library_version);

Datum
ruvllm_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(RUVLLM_VERSION));
}

PG_FUNCTION_INFO_V1(ruvllm_on_drop_extension);

/*
 * Event trigger (ddl_command_start, DROP EXTENSION). AGE keeps a graph's catalog rows in its own
 * tables, which DROP EXTENSION ruvllm would leave dangling (and a later CREATE EXTENSION would then
 * fail on "graph already exists"). Only the parse tree tells whether this DROP names ruvllm, and
 * only a C trigger can see it; if it does, AGE's catalog rows of the graph are deleted first, in
 * the same transaction (so a failed DROP EXTENSION rolls that back too), and the graph's schema
 * goes with the extension.
 */
Datum
ruvllm_on_drop_extension(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	bool		drops_ruvllm = false;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ruvllm._on_drop_extension() must be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;

	if (IsA(trigdata->parsetree, DropStmt))
	{
		DropStmt   *stmt = (DropStmt *) trigdata->parsetree;
		ListCell   *lc;

		if (stmt->removeType == OBJECT_EXTENSION)
			foreach(lc, stmt->objects)
			{
				if (strcmp(strVal(lfirst(lc)), "ruvllm") == 0)
					drops_ruvllm = true;
			}
	}

	if (drops_ruvllm)
	{
		ruvllm_spi_connect();
		ruvllm_spi_check(SPI_execute("SELECT ruvllm._drop_graph()", false, 0), SPI_OK_SELECT,
						 "ruvllm._drop_graph()");
		ruvllm_spi_check(SPI_finish(), SPI_OK_FINISH, "SPI_finish");
	}
	PG_RETURN_NULL();
}
