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
static bool ruvllm_store_unit_vectors = true;
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
static char *ruvllm_default_model = NULL;

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

/*
 * ruvllm.default_model names a row of ruvllm.models, which a check hook cannot read (postgresql.conf
 * is read outside a transaction): the name's form is checked here, and a name no enabled model has
 * is reported by ruvllm_health() and leaves the policy's own default in force.
 */
static bool
check_default_model(char **newval, void **extra, GucSource source)
{
	const char *c;

	if (strlen(*newval) > 63)
	{
		GUC_check_errdetail("A model name has at most 63 characters.");
		return false;
	}
	for (c = *newval; *c; c++)
	{
		bool		lower_or_digit = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9');

		if (!(lower_or_digit || (c != *newval && (*c == '.' || *c == '_' || *c == '-'))))
		{
			GUC_check_errdetail("A model name is lower-case letters, digits, \".\", \"_\" and \"-\", starting with a letter or digit (as ruvllm_register_model accepts).");
			GUC_check_errhint("SELECT name FROM ruvllm.models WHERE enabled lists the models; an empty value keeps the router policy's own default.");
			return false;
		}
	}
	return true;
}

static const struct config_enum_entry inference_modes[] = {
	{"server", RUVLLM_INFERENCE_SERVER, false},
	{"in_process", RUVLLM_INFERENCE_IN_PROCESS, false},
	{"remote", RUVLLM_INFERENCE_REMOTE, false},
	{NULL, 0, false}
};
/* ruvllm.answer_style: what the prompt carries and whether answers are checked (issue 14). */
#define RUVLLM_ANSWER_EVIDENCE 0
#define RUVLLM_ANSWER_DOCUMENTS 1
static const struct config_enum_entry answer_styles[] = {
	{"evidence", RUVLLM_ANSWER_EVIDENCE, false},
	{"documents", RUVLLM_ANSWER_DOCUMENTS, false},
	{NULL, 0, false}
};
static int	ruvllm_answer_style = RUVLLM_ANSWER_EVIDENCE;
/*
 * ruvllm.embedder: which forward pass of all-MiniLM-L6-v2 embeds (issue 16). The Python package
 * reads it through ruvllm_embedder_name (ctypes), not through a statement: embedding also runs in
 * ruvllm_query_stream's helper thread, which must not run SQL.
 */
#define RUVLLM_EMBEDDER_LLAMA 0
#define RUVLLM_EMBEDDER_NUMPY 1
static const struct config_enum_entry embedders[] = {
	{"llama", RUVLLM_EMBEDDER_LLAMA, false},
	{"numpy", RUVLLM_EMBEDDER_NUMPY, false},
	{NULL, 0, false}
};
static int	ruvllm_embedder = RUVLLM_EMBEDDER_LLAMA;

PGDLLEXPORT const char *ruvllm_embedder_name(void);

const char *
ruvllm_embedder_name(void)
{
	return ruvllm_embedder == RUVLLM_EMBEDDER_NUMPY ? "numpy" : "llama";
}
static double ruvllm_abstain_below = 0.45;
static double ruvllm_grounding_overlap = 0.6;
static double ruvllm_grounding_similarity = 0.8;
static char *ruvllm_inference_url = NULL;
static char *ruvllm_inference_api_key = NULL;
static int	ruvllm_inference_timeout = 60;

/* An OpenAI-compatible base URL: http(s)://host[:port][/path], no spaces or quotes. */
static bool
check_inference_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	const char *host;

	if (url == NULL || url[0] == '\0')
		return true;
	if (strncmp(url, "http://", 7) == 0)
		host = url + 7;
	else if (strncmp(url, "https://", 8) == 0)
		host = url + 8;
	else
	{
		GUC_check_errdetail("The inference URL must start with http:// or https://.");
		GUC_check_errhint("For example http://10.0.0.5:8080 (a llama.cpp server) or http://gpu-host:8000/v1 (vLLM).");
		return false;
	}
	if (*host == '\0' || *host == '/' || *host == ':')
	{
		GUC_check_errdetail("The inference URL has no host.");
		return false;
	}
	for (const char *c = url; *c; c++)
		if (*c <= ' ' || *c == '"' || *c == '\'' || *c == '\\' || *c == 127)
		{
			GUC_check_errdetail("The inference URL must not contain spaces, quotes or control characters.");
			return false;
		}
	return true;
}

/* Model files of the inference servers: a comma-separated list of GGUF paths. */
static bool
check_inference_models(char **newval, void **extra, GucSource source)
{
	int			items = 0;

	for (const char *c = *newval; *c; c++)
		if (*c == ',')
			items++;
	if (items + 1 > 8)
	{
		GUC_check_errdetail("At most 8 inference servers (models) are supervised.");
		return false;
	}
	for (const char *c = *newval; *c; c++)
		if (*c < ' ' || *c == '"' || *c == '\'')
		{
			GUC_check_errdetail("Model paths must not contain quotes or control characters.");
			return false;
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
	DefineCustomBoolVariable("ruvllm.store_unit_vectors",
							 "Ingestion embeds the evidence units of each new node and stores their vectors (ruvllm.node_units), so that ruvllm_query scores them without embedding.",
							 "Off: ingestion embeds about half as much, and requests embed the units they score.",
							 &ruvllm_store_unit_vectors, true, PGC_USERSET, 0, NULL, NULL, NULL);
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
							 "Queue witness rows and searches' access records for the background writer, so they survive the caller's rollback and a failed call.",
							 "Off: they are written in the caller's transaction and roll back with it.",
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
	DefineCustomEnumVariable("ruvllm.inference",
							 "Where ruvllm generates: server (the shared inference servers PostgreSQL supervises), in_process (llama.cpp in each backend) or remote (the OpenAI-compatible server at ruvllm.inference_url).",
							 "The supervisor runs the servers while the server-wide value (postgresql.conf, ALTER SYSTEM) is server. The default is server with ruvllm in shared_preload_libraries (which the supervisor needs), in_process without.",
							 &ruvllm_inference_mode,
							 /* only a preloaded library has the supervisor, and so servers */
							 process_shared_preload_libraries_in_progress ? RUVLLM_INFERENCE_SERVER : RUVLLM_INFERENCE_IN_PROCESS,
							 inference_modes,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ruvllm.inference_url",
							   "Base URL of the remote OpenAI-compatible server for ruvllm.inference = remote (a llama.cpp server or vLLM).",
							   NULL, &ruvllm_inference_url, "", PGC_SUSET, 0,
							   check_inference_url, NULL, NULL);
	DefineCustomStringVariable("ruvllm.inference_api_key",
							   "Bearer token sent to the remote inference server (shown to superusers only).",
							   NULL, &ruvllm_inference_api_key, "", PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL, NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.inference_timeout",
							"Longest a generation request to an inference server may take, waiting for a restarting server included.",
							NULL, &ruvllm_inference_timeout, 60, 1, 3600, PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("ruvllm.inference_models",
							   "Model files the supervised inference servers serve, one server each (comma-separated; relative to ruvllm.models_dir).",
							   NULL, &ruvllm_inference_models,
							   "SmolLM2-135M-Instruct.Q4_1.gguf,gemma-3-270m-q4_k_m.gguf", PGC_SIGHUP, 0,
							   check_inference_models, NULL, NULL);
	DefineCustomStringVariable("ruvllm.inference_server_path",
							   "The llama-server executable the supervisor runs.",
							   NULL, &ruvllm_inference_server_path, "/usr/local/bin/llama-server",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.inference_slots",
							"Requests each inference server generates at once (llama.cpp's parallel slots, batched together).",
							NULL, &ruvllm_inference_slots, 4, 1, 64, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.inference_threads",
							"Threads of each inference server (0: half the cores, at least one).",
							NULL, &ruvllm_inference_threads, 0, 0, 256, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ruvllm.inference_ctx_per_slot",
							"Context (prompt and answer, in tokens) of each slot of an inference server.",
							NULL, &ruvllm_inference_ctx_per_slot, 2048, 256, 131072, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("ruvllm.answer_style",
							 "What ruvllm_query's prompt carries: evidence (the sentences of memory that answer the question, a grounding check, abstention) or documents (0.2.0's whole memory nodes, no check).",
							 NULL, &ruvllm_answer_style, RUVLLM_ANSWER_EVIDENCE, answer_styles,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ruvllm.default_model",
							   "Model ruvllm_query uses while the router is not confident (its safe default): extractive quotes the evidence; empty keeps the router policy's own default, its first model.",
							   "Applies with ruvllm.answer_style = evidence, and only while the name is an enabled model in ruvllm.models; the learning loops still train the router over every model.",
							   &ruvllm_default_model, "extractive", PGC_USERSET, 0, check_default_model, NULL, NULL);
	DefineCustomEnumVariable("ruvllm.embedder",
							 "How all-MiniLM-L6-v2 embeddings are computed: llama (llama.cpp over a GGUF file written from the model's safetensors) or numpy (ruvllm's numpy forward pass).",
							 "Both read the same files and tokenise alike; their vectors agree to cosine 0.9999. numpy is kept for comparison (bench/memory, bench/query) and where llama.cpp is unavailable.",
							 &ruvllm_embedder, RUVLLM_EMBEDDER_LLAMA, embedders,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.abstain_below",
							 "ruvllm_query answers \"Not found in memory.\" without generating when no retrieved memory supports the question this well (support: the geometric mean of a hit's cosine similarity and its share of the question's term weight).",
							 "0 never abstains. Applies with ruvllm.answer_style = evidence.",
							 &ruvllm_abstain_below, 0.45, 0.0, 1.0, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.grounding_overlap",
							 "Share of an answer sentence's content words its evidence must contain for the sentence to count as supported.",
							 "A sentence is supported by this overlap or by ruvllm.grounding_similarity; an answer with an unsupported sentence is replaced by the extractive answer.",
							 &ruvllm_grounding_overlap, 0.6, 0.0, 1.0, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("ruvllm.grounding_similarity",
							 "Cosine similarity to an evidence span at which an answer sentence counts as supported.",
							 NULL, &ruvllm_grounding_similarity, 0.8, 0.0, 1.0, PGC_USERSET, 0, NULL, NULL, NULL);
	/* Settings under ruvllm.* are ours: a typo in postgresql.conf is reported, not ignored. */
	MarkGUCPrefixReserved("ruvllm");
	ruvllm_graph_guard_init();

	/* Static workers can only be registered at server start; loaded later, ruvllm runs no loops. */
	if (process_shared_preload_libraries_in_progress)
	{
		ruvllm_register_launcher();
		ruvllm_register_inference_supervisor();
	}
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
