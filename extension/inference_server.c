/*
 * inference_server.c: the supervisor of the shared inference servers (ruvllm.inference = server).
 *
 * With ruvllm in shared_preload_libraries, _PG_init registers one static "ruvllm inference
 * supervisor". While the server-wide ruvllm.inference is 'server', it runs one llama-server per
 * model file named in ruvllm.inference_models, on a free loopback port, and starts it again with
 * backoff when it exits; at shutdown it stops them. The servers are children of the supervisor,
 * not of the postmaster: a server that crashes or is killed is reaped here and is never a backend
 * crash in PostgreSQL's eyes (no crash recovery, no restart of other backends). A server also dies
 * with the supervisor (PR_SET_PDEATHSIG), so none outlives PostgreSQL.
 *
 * What each server is doing is kept in shared memory (a named DSM segment): backends read it with
 * ruvllm._inference_servers() to find the port of the model they generate with, and operators see
 * it in the view ruvllm.inference_servers and in ruvllm_health().
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm_registry.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "ruvllm.h"

#define MAX_INFERENCE_SERVERS 8
#define ERROR_LEN 256
/* Poll of the children's exits; also the bound on how late a restart is. */
#define SUPERVISOR_POLL_MS 200
/* Backoff of a server that keeps exiting: 0.5 s doubling up to 30 s; a server that ran longer
 * than RESET_AFTER_MS starts the doubling again. */
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000
#define RESET_AFTER_MS 60000
/* How long a server has to stop after SIGTERM before it gets SIGKILL. */
#define STOP_GRACE_MS 5000

typedef enum
{
	SERVER_STOPPED = 0,
	SERVER_RUNNING,
	SERVER_BACKOFF,
} ServerState;

static const char *const state_names[] = {"stopped", "running", "restarting"};

typedef struct InferenceServer
{
	char		model[MAXPGPATH];	/* the GGUF file, absolute */
	int			port;
	int			pid;
	ServerState state;
	int			restarts;
	int			failures;		/* consecutive short runs, for the backoff */
	TimestampTz started_at;
	TimestampTz next_start;
	char		last_error[ERROR_LEN];
} InferenceServer;

typedef struct InferenceShared
{
	slock_t		mutex;
	int			supervisor_pid;
	int			n_servers;
	InferenceServer servers[MAX_INFERENCE_SERVERS];
} InferenceShared;

/* Settings (ruvllm.c defines them). */
int			ruvllm_inference_mode = RUVLLM_INFERENCE_IN_PROCESS;
char	   *ruvllm_inference_models = NULL;
char	   *ruvllm_inference_server_path = NULL;
int			ruvllm_inference_slots = 4;
int			ruvllm_inference_threads = 0;
int			ruvllm_inference_ctx_per_slot = 2048;

static InferenceShared *inference_shared = NULL;

static const char *
models_dir(void)
{
	const char *dir = GetConfigOption("ruvllm.models_dir", true, false);

	return dir ? dir : "/usr/local/share/ruvllm/models";
}

PGDLLEXPORT void ruvllm_inference_supervisor_main(Datum main_arg);

static void
inference_shared_init(void *ptr)
{
	InferenceShared *s = (InferenceShared *) ptr;

	memset(s, 0, sizeof(*s));
	SpinLockInit(&s->mutex);
}

static InferenceShared *
inference_attach(void)
{
	bool		found;

	if (inference_shared == NULL)
		inference_shared = GetNamedDSMSegment("ruvllm_inference_servers", sizeof(InferenceShared),
											  inference_shared_init, &found);
	return inference_shared;
}

void
ruvllm_register_inference_supervisor(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, MAXPGPATH, "ruvllm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ruvllm_inference_supervisor_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ruvllm inference supervisor");
	snprintf(worker.bgw_type, BGW_MAXLEN, "ruvllm inference supervisor");
	RegisterBackgroundWorker(&worker);
}

/* ---------------------------------------------------------------------------------------------
 * The supervisor
 * ------------------------------------------------------------------------------------------- */

/*
 * Threads of each server: the setting, or half the cores (at least one). llama.cpp's threads
 * spin at a barrier after every operation, so a server whose threads outnumber the cores left
 * free by busy backends slows down by a factor of ten or more (measured on 2 cores at load 10:
 * 0-1 tokens/s decoding with 2 threads against 12-27 with one); half the cores leaves the
 * backends (embedding, retrieval, PostgreSQL itself) the other half.
 */
static int
inference_threads(void)
{
	long		cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (ruvllm_inference_threads > 0)
		return ruvllm_inference_threads;
	return cores >= 2 ? (int) (cores / 2) : 1;
}

/* What the servers are started with; a reload that changes it restarts them. */
static char *
config_fingerprint(void)
{
	return psprintf("%d|%s|%s|%s|%d|%d|%d", ruvllm_inference_mode,
					ruvllm_inference_models ? ruvllm_inference_models : "",
					ruvllm_inference_server_path ? ruvllm_inference_server_path : "",
					models_dir(), ruvllm_inference_slots,
					ruvllm_inference_threads, ruvllm_inference_ctx_per_slot);
}

static void
set_error(InferenceServer *srv, const char *fmt,...) pg_attribute_printf(2, 3);

static void
set_error(InferenceServer *srv, const char *fmt,...)
{
	va_list		ap;
	char		buf[ERROR_LEN];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	SpinLockAcquire(&inference_shared->mutex);
	strlcpy(srv->last_error, buf, ERROR_LEN);
	SpinLockRelease(&inference_shared->mutex);
}

/* The model files to serve, from ruvllm.inference_models (relative ones under ruvllm.models_dir). */
static void
configure_servers(void)
{
	InferenceShared *s = inference_shared;
	char	   *list;
	char	   *item;
	char	   *save = NULL;
	int			n = 0;
	char		models[MAX_INFERENCE_SERVERS][MAXPGPATH];

	if (ruvllm_inference_mode == RUVLLM_INFERENCE_SERVER && ruvllm_inference_models != NULL)
	{
		list = pstrdup(ruvllm_inference_models);
		for (item = strtok_r(list, ",", &save); item != NULL && n < MAX_INFERENCE_SERVERS;
			 item = strtok_r(NULL, ",", &save))
		{
			while (*item == ' ')
				item++;
			if (*item == '\0')
				continue;
			if (item[0] == '/')
				strlcpy(models[n], item, MAXPGPATH);
			else
				snprintf(models[n], MAXPGPATH, "%s/%s", models_dir(), item);
			n++;
		}
		pfree(list);
	}
	SpinLockAcquire(&s->mutex);
	s->n_servers = n;
	for (int i = 0; i < MAX_INFERENCE_SERVERS; i++)
	{
		InferenceServer *srv = &s->servers[i];

		memset(srv, 0, sizeof(*srv));
		if (i < n)
		{
			strlcpy(srv->model, models[i], MAXPGPATH);
			srv->state = SERVER_BACKOFF;	/* starts at once: next_start is 0 */
		}
	}
	SpinLockRelease(&s->mutex);
}

/* A free loopback port (bound and released: the server binds it a moment later). */
static int
free_port(void)
{
	struct sockaddr_in addr;
	socklen_t	len = sizeof(addr);
	int			fd = socket(AF_INET, SOCK_STREAM, 0);
	int			port = -1;

	if (fd < 0)
		return -1;
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = 0;
	if (bind(fd, (struct sockaddr *) &addr, sizeof(addr)) == 0 &&
		getsockname(fd, (struct sockaddr *) &addr, &len) == 0)
		port = ntohs(addr.sin_port);
	close(fd);
	return port;
}

static void
start_server(int i)
{
	InferenceServer *srv = &inference_shared->servers[i];
	char		log_path[MAXPGPATH];
	char		port_s[16], slots_s[16], threads_s[16], ctx_s[16];
	const char *argv[24];
	int			argc = 0;
	int			port;
	pid_t		pid;

	if (access(srv->model, R_OK) != 0)
	{
		set_error(srv, "model file %s: %m", srv->model);
		srv->failures++;
		srv->next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BACKOFF_MAX_MS);
		return;
	}
	port = free_port();
	if (port < 0)
	{
		set_error(srv, "no free loopback port: %m");
		srv->next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BACKOFF_FIRST_MS);
		return;
	}
	snprintf(log_path, MAXPGPATH, "%s/ruvllm_inference", DataDir);
	(void) mkdir(log_path, S_IRWXU);
	snprintf(log_path, MAXPGPATH, "%s/ruvllm_inference/server-%d.log", DataDir, i);
	snprintf(port_s, sizeof(port_s), "%d", port);
	snprintf(slots_s, sizeof(slots_s), "%d", ruvllm_inference_slots);
	snprintf(threads_s, sizeof(threads_s), "%d", inference_threads());
	/* The context is shared by the slots: each gets ctx_per_slot tokens. */
	snprintf(ctx_s, sizeof(ctx_s), "%d", ruvllm_inference_slots * ruvllm_inference_ctx_per_slot);

	argv[argc++] = ruvllm_inference_server_path;
	argv[argc++] = "--model";
	argv[argc++] = srv->model;
	argv[argc++] = "--host";
	argv[argc++] = "127.0.0.1";
	argv[argc++] = "--port";
	argv[argc++] = port_s;
	argv[argc++] = "--parallel";
	argv[argc++] = slots_s;
	argv[argc++] = "--ctx-size";
	argv[argc++] = ctx_s;
	/* llama-server keeps evicted slots' prompts in RAM for reuse, 8 GiB by default: per server,
	 * on a database machine, that is too much to take unasked. */
	argv[argc++] = "--cache-ram";
	argv[argc++] = "1024";
	argv[argc++] = "--metrics";
	argv[argc++] = "--slots";
	argv[argc++] = "--threads";
	argv[argc++] = threads_s;
	argv[argc] = NULL;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
	{
		set_error(srv, "fork failed: %m");
		srv->next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BACKOFF_FIRST_MS);
		return;
	}
	if (pid == 0)
	{
		/* The child: nothing of PostgreSQL's may run here, only plain system calls until exec. */
		sigset_t	none;
		int			fd;

		(void) prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(1);
		fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, S_IRUSR | S_IWUSR);
		if (fd >= 0)
		{
			dup2(fd, 1);
			dup2(fd, 2);
		}
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, 0);
		/* The postmaster's pipes, the latch's descriptors: not the server's to hold. */
		for (fd = 3; fd < 1024; fd++)
			close(fd);
		for (int sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		execv(argv[0], (char *const *) argv);
		dprintf(2, "ruvllm: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	SpinLockAcquire(&inference_shared->mutex);
	srv->pid = pid;
	srv->port = port;
	srv->state = SERVER_RUNNING;
	srv->started_at = GetCurrentTimestamp();
	SpinLockRelease(&inference_shared->mutex);
	ereport(LOG, (errmsg("ruvllm inference server for %s started (pid %d, port %d)",
						 srv->model, (int) pid, port)));
}

/* Children that exited: marked for a restart after their backoff. */
static void
reap_servers(void)
{
	pid_t		pid;
	int			status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
	{
		for (int i = 0; i < inference_shared->n_servers; i++)
		{
			InferenceServer *srv = &inference_shared->servers[i];
			TimestampTz now = GetCurrentTimestamp();
			long		delay;
			char		why[64];

			if (srv->pid != pid)
				continue;
			if (WIFSIGNALED(status))
				snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(status));
			else
				snprintf(why, sizeof(why), "exited with status %d", WEXITSTATUS(status));
			if (TimestampDifferenceExceeds(srv->started_at, now, RESET_AFTER_MS))
				srv->failures = 0;
			delay = BACKOFF_FIRST_MS;
			for (int f = 0; f < srv->failures && delay < BACKOFF_MAX_MS; f++)
				delay *= 2;
			delay = Min(delay, BACKOFF_MAX_MS);
			srv->failures++;
			SpinLockAcquire(&inference_shared->mutex);
			srv->pid = 0;
			srv->state = SERVER_BACKOFF;
			srv->restarts++;
			srv->next_start = TimestampTzPlusMilliseconds(now, delay);
			snprintf(srv->last_error, ERROR_LEN, "server %s (see ruvllm_inference/server-%d.log in the data directory)", why, i);
			SpinLockRelease(&inference_shared->mutex);
			ereport(LOG, (errmsg("ruvllm inference server for %s (pid %d) %s; restarting in %ld ms",
								 srv->model, (int) pid, why, delay)));
		}
	}
}

static void
stop_servers(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), STOP_GRACE_MS);
	bool		any;

	for (int i = 0; i < inference_shared->n_servers; i++)
		if (inference_shared->servers[i].pid > 0)
			kill(inference_shared->servers[i].pid, SIGTERM);
	for (;;)
	{
		pid_t		pid;
		int			status;

		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			for (int i = 0; i < inference_shared->n_servers; i++)
				if (inference_shared->servers[i].pid == pid)
				{
					SpinLockAcquire(&inference_shared->mutex);
					inference_shared->servers[i].pid = 0;
					inference_shared->servers[i].state = SERVER_STOPPED;
					SpinLockRelease(&inference_shared->mutex);
				}
		any = false;
		for (int i = 0; i < inference_shared->n_servers; i++)
			any |= inference_shared->servers[i].pid > 0;
		if (!any)
			break;
		if (GetCurrentTimestamp() >= deadline)
		{
			for (int i = 0; i < inference_shared->n_servers; i++)
				if (inference_shared->servers[i].pid > 0)
					kill(inference_shared->servers[i].pid, SIGKILL);
			deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), STOP_GRACE_MS);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 50,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

void
ruvllm_inference_supervisor_main(Datum main_arg)
{
	char	   *config;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	/* The servers are our children: their exits are reaped here (waitpid), not ignored. */
	pqsignal(SIGCHLD, SIG_DFL);
	BackgroundWorkerUnblockSignals();

	inference_attach();
	SpinLockAcquire(&inference_shared->mutex);
	inference_shared->supervisor_pid = MyProcPid;
	SpinLockRelease(&inference_shared->mutex);
	configure_servers();
	config = config_fingerprint();

	while (!ShutdownRequestPending)
	{
		TimestampTz now;

		if (ConfigReloadPending)
		{
			char	   *fresh;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			fresh = config_fingerprint();
			if (strcmp(fresh, config) != 0)
			{
				ereport(LOG, (errmsg("ruvllm inference settings changed: restarting the inference servers")));
				stop_servers();
				configure_servers();
				pfree(config);
				config = fresh;
			}
			else
				pfree(fresh);
		}
		reap_servers();
		now = GetCurrentTimestamp();
		for (int i = 0; i < inference_shared->n_servers; i++)
		{
			InferenceServer *srv = &inference_shared->servers[i];

			if (srv->state == SERVER_BACKOFF && now >= srv->next_start)
				start_server(i);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 SUPERVISOR_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	stop_servers();
	SpinLockAcquire(&inference_shared->mutex);
	inference_shared->supervisor_pid = 0;
	SpinLockRelease(&inference_shared->mutex);
	proc_exit(0);
}

/* ---------------------------------------------------------------------------------------------
 * ruvllm._inference_servers(): what each server is doing
 * ------------------------------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(ruvllm_inference_servers);

Datum
ruvllm_inference_servers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	InferenceShared copy;

	InitMaterializedSRF(fcinfo, 0);
	inference_attach();
	SpinLockAcquire(&inference_shared->mutex);
	memcpy(&copy, inference_shared, sizeof(copy));
	SpinLockRelease(&inference_shared->mutex);

	for (int i = 0; i < copy.n_servers; i++)
	{
		InferenceServer *srv = &copy.servers[i];
		Datum		values[8];
		bool		nulls[8] = {false};

		values[0] = Int32GetDatum(i);
		values[1] = CStringGetTextDatum(srv->model);
		values[2] = CStringGetTextDatum(state_names[srv->state]);
		values[3] = Int32GetDatum(srv->pid);
		nulls[3] = srv->pid == 0;
		values[4] = Int32GetDatum(srv->port);
		nulls[4] = srv->port == 0;
		values[5] = Int32GetDatum(srv->restarts);
		values[6] = TimestampTzGetDatum(srv->started_at);
		nulls[6] = srv->started_at == 0;
		values[7] = CStringGetTextDatum(srv->last_error);
		nulls[7] = srv->last_error[0] == '\0';
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PGDLLEXPORT const char *ruvllm_inference_credential(void);

/*
 * ruvllm.inference_api_key is hidden from SHOW and pg_settings for all but superusers, yet the
 * pipeline runs as its caller and must send it to a remote server. A SQL function returning it
 * would hand it to every user who can call the pipeline; this entry point is not a SQL function,
 * so only code running in the backend (the package, through ctypes: python/ruvllm/native.py)
 * reaches it. NULL when unset.
 */
const char *
ruvllm_inference_credential(void)
{
	const char *key = GetConfigOption("ruvllm.inference_api_key", true, false);

	return (key == NULL || key[0] == '\0') ? NULL : key;
}
