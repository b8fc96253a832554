/*
 * worker.c: the background worker that runs the learning loops.
 *
 * With ruvllm in shared_preload_libraries, _PG_init registers one static "ruvllm launcher". The
 * launcher starts one dynamic "ruvllm worker <db>" per database named in ruvllm.databases, and
 * starts it again (after WORKER_RESTART_DELAY_MS) when it exits. On SIGHUP it re-reads the list:
 * new databases get a worker, workers of removed ones are terminated.
 *
 * Each worker runs the instant, background and deep loops of its database on their interval
 * settings (re-read on SIGHUP), each run one transaction that calls ruvllm._run_loop(loop,
 * 'worker'); that function records the run in ruvllm.loop_runs. While the extension is not
 * installed in the database, the worker only looks for it now and then. An error escaping a run
 * is logged and the worker goes on with the next one.
 *
 * The launcher is connected to no database (it reads only the shared catalog pg_database), so it
 * never stands in the way of DROP DATABASE; a worker is an ordinary connection to its database,
 * which DROP DATABASE ... WITH (FORCE), or terminating it with allow_connections off, ends.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "ruvllm.h"
#include "support.h"

/* Most databases served at once; bounds both the launcher's table and the shared one. */
#define MAX_LOOP_DATABASES 64
/* A worker that exited is started again after this, so a worker that fails at once (a database
 * that refuses connections, say) does not spin. */
#define WORKER_RESTART_DELAY_MS 5000
/* How often the launcher looks again for a database that does not exist yet, or a free slot. */
#define LAUNCHER_POLL_MS 5000
/* Longest sleep of either process: a bound on the damage of a missed wakeup or clock step. */
#define MAX_SLEEP_MS 60000
/* How often a worker looks for the extension while it is not installed (at most). */
#define INSTALL_CHECK_MS 5000

#define N_LOOPS 3
static const char *const loop_names[N_LOOPS] = {"instant", "background", "deep"};
static const char *const loop_sql[N_LOOPS] = {
	"SELECT ruvllm._run_loop('instant', 'worker')",
	"SELECT ruvllm._run_loop('background', 'worker')",
	"SELECT ruvllm._run_loop('deep', 'worker')",
};

PGDLLEXPORT void ruvllm_launcher_main(Datum main_arg);
PGDLLEXPORT void ruvllm_loop_worker_main(Datum main_arg);

/* ---------------------------------------------------------------------------------------------
 * Shared state: which database has a running worker.
 *
 * The launcher's handles die with the launcher, but its workers do not: a launcher that exits on
 * an error and is started again must not start a second worker beside a live one. So each worker
 * claims its database here, and the launcher leaves a claimed database alone.
 * ------------------------------------------------------------------------------------------- */

typedef struct LoopWorkerSlot
{
	NameData	dbname;
	pid_t		pid;			/* 0: free */
} LoopWorkerSlot;

typedef struct LoopWorkersShared
{
	RuvllmShmemHeader hdr;
	LoopWorkerSlot slots[MAX_LOOP_DATABASES];
} LoopWorkersShared;

static LoopWorkersShared *loop_shared = NULL;

static void
loop_shared_init(void *ptr)
{
	LoopWorkersShared *ls = (LoopWorkersShared *) ptr;

	memset(ls->slots, 0, sizeof(ls->slots));
}

static LoopWorkersShared *
loop_attach(void)
{
	if (loop_shared == NULL)
		loop_shared = ruvllm_attach_shmem("ruvllm_loop_workers", sizeof(LoopWorkersShared),
										  loop_shared_init);
	return loop_shared;
}

/* The pid of the worker that has claimed dbname, or 0. */
static pid_t
loop_claimed_by(const char *dbname)
{
	LoopWorkersShared *ls = loop_attach();
	pid_t		pid = 0;

	LWLockAcquire(&ls->hdr.lock, LW_SHARED);
	for (int i = 0; i < MAX_LOOP_DATABASES; i++)
		if (ls->slots[i].pid != 0 && strcmp(NameStr(ls->slots[i].dbname), dbname) == 0)
			pid = ls->slots[i].pid;
	LWLockRelease(&ls->hdr.lock);
	return pid;
}

static int	my_slot = -1;

static void
loop_release(int code, Datum arg)
{
	if (my_slot < 0)
		return;
	LWLockAcquire(&loop_shared->hdr.lock, LW_EXCLUSIVE);
	if (loop_shared->slots[my_slot].pid == MyProcPid)
		loop_shared->slots[my_slot].pid = 0;
	LWLockRelease(&loop_shared->hdr.lock);
	my_slot = -1;
}

/* Claims dbname for this process; false if another worker has it (or no slot is free). */
static bool
loop_claim(const char *dbname)
{
	LoopWorkersShared *ls = loop_attach();
	int			free_slot = -1;
	bool		taken = false;

	LWLockAcquire(&ls->hdr.lock, LW_EXCLUSIVE);
	for (int i = 0; i < MAX_LOOP_DATABASES; i++)
	{
		if (ls->slots[i].pid == 0)
		{
			if (free_slot < 0)
				free_slot = i;
		}
		else if (strcmp(NameStr(ls->slots[i].dbname), dbname) == 0)
			taken = true;
	}
	if (!taken && free_slot >= 0)
	{
		namestrcpy(&ls->slots[free_slot].dbname, dbname);
		ls->slots[free_slot].pid = MyProcPid;
		my_slot = free_slot;
	}
	LWLockRelease(&ls->hdr.lock);
	if (my_slot >= 0)
		before_shmem_exit(loop_release, (Datum) 0);
	return my_slot >= 0;
}

/*
 * ruvllm.databases as a list of names (palloc'd in the current context). A list that does not
 * parse is logged and counts as empty, as a server with a typo should not die of it.
 */
static List *
configured_databases(void)
{
	char	   *raw = pstrdup(ruvllm_databases ? ruvllm_databases : "");
	List	   *names = NIL;

	if (!SplitIdentifierString(raw, ',', &names))
	{
		ereport(LOG,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ruvllm: invalid list syntax in \"ruvllm.databases\"; no database is served")));
		names = NIL;
	}
	return names;
}

/* ---------------------------------------------------------------------------------------------
 * The launcher
 * ------------------------------------------------------------------------------------------- */

typedef enum DatabaseState
{
	DB_UNKNOWN,
	DB_CONNECTABLE,
	DB_MISSING,
	DB_NO_CONNECTIONS,
} DatabaseState;

typedef struct LauncherEntry
{
	NameData	dbname;
	BackgroundWorkerHandle *handle; /* NULL: no worker of ours registered */
	TimestampTz next_start;		/* when to try starting one */
	DatabaseState db_state;
	DatabaseState reported;		/* the last state logged, so each change is logged once */
	bool		reported_no_slot;
	bool		listed;
} LauncherEntry;

static LauncherEntry launcher_entries[MAX_LOOP_DATABASES];
static int	launcher_n = 0;

void
ruvllm_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	/* A connection to no database: enough to read pg_database, and it blocks no DROP DATABASE. */
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, MAXPGPATH, "ruvllm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ruvllm_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ruvllm launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "ruvllm launcher");
	RegisterBackgroundWorker(&worker);
}

/* Brings the launcher's table in line with ruvllm.databases. */
static void
launcher_read_databases(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "ruvllm launcher config",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	List	   *names = configured_databases();
	ListCell   *lc;
	int			kept = 0;

	for (int i = 0; i < launcher_n; i++)
		launcher_entries[i].listed = false;
	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		int			i;

		for (i = 0; i < launcher_n; i++)
			if (strcmp(NameStr(launcher_entries[i].dbname), name) == 0)
				break;
		if (i < launcher_n)
			launcher_entries[i].listed = true;
		else if (launcher_n < MAX_LOOP_DATABASES)
		{
			LauncherEntry *e = &launcher_entries[launcher_n++];

			memset(e, 0, sizeof(*e));
			namestrcpy(&e->dbname, name);
			e->listed = true;
			e->next_start = 0;
		}
		else
			ereport(LOG,
					(errmsg("ruvllm launcher: more than %d databases in \"ruvllm.databases\"; \"%s\" is not served",
							MAX_LOOP_DATABASES, name)));
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);

	for (int i = 0; i < launcher_n; i++)
	{
		LauncherEntry *e = &launcher_entries[i];

		if (e->listed)
		{
			launcher_entries[kept++] = *e;
			continue;
		}
		/* The worker also exits by itself on this reload; terminating it covers a slow one. */
		if (e->handle != NULL)
		{
			TerminateBackgroundWorker(e->handle);
			pfree(e->handle);
		}
		ereport(LOG, (errmsg("ruvllm launcher: database \"%s\" is no longer served",
							 NameStr(e->dbname))));
	}
	launcher_n = kept;
}

/* Sets db_state of the entries flagged in want from pg_database. */
static void
launcher_check_databases(bool *want)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	for (int i = 0; i < launcher_n; i++)
		if (want[i])
			launcher_entries[i].db_state = DB_MISSING;

	StartTransactionCommand();
	/* Taken for its side effect: the scan below must not see pages pruned under it. */
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		for (int i = 0; i < launcher_n; i++)
			if (want[i] && strcmp(NameStr(db->datname), NameStr(launcher_entries[i].dbname)) == 0)
				launcher_entries[i].db_state =
					(db->datallowconn && !database_is_invalid_form(db)) ? DB_CONNECTABLE
					: DB_NO_CONNECTIONS;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
}

static bool
launcher_start_worker(LauncherEntry *e)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* The launcher restarts it, so that a removed database is not restarted behind its back. */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, MAXPGPATH, "ruvllm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ruvllm_loop_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ruvllm worker %s", NameStr(e->dbname));
	snprintf(worker.bgw_type, BGW_MAXLEN, "ruvllm worker");
	strlcpy(worker.bgw_extra, NameStr(e->dbname), BGW_EXTRALEN);
	worker.bgw_notify_pid = MyProcPid;	/* its exit sets our latch */

	/* The handle must outlive this pass through the loop. */
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &e->handle);
	MemoryContextSwitchTo(old);
	if (!ok)
		e->handle = NULL;
	return ok;
}

static void
launcher_report(LauncherEntry *e)
{
	if (e->db_state == e->reported)
		return;
	if (e->db_state == DB_MISSING)
		ereport(LOG, (errmsg("ruvllm launcher: database \"%s\" in \"ruvllm.databases\" does not exist; waiting for it",
							 NameStr(e->dbname))));
	else if (e->db_state == DB_NO_CONNECTIONS)
		ereport(LOG, (errmsg("ruvllm launcher: database \"%s\" does not allow connections; waiting",
							 NameStr(e->dbname))));
	e->reported = e->db_state;
}

/*
 * One pass: notices exited workers, starts the ones that are due. Returns how long to sleep, in
 * milliseconds.
 */
static long
launcher_tend(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		due[MAX_LOOP_DATABASES] = {0};
	bool		any_due = false;
	long		sleep_ms = MAX_SLEEP_MS;

	for (int i = 0; i < launcher_n; i++)
	{
		LauncherEntry *e = &launcher_entries[i];

		if (e->handle != NULL)
		{
			pid_t		pid;

			switch (GetBackgroundWorkerPid(e->handle, &pid))
			{
				case BGWH_STARTED:
				case BGWH_NOT_YET_STARTED:
					continue;
				case BGWH_POSTMASTER_DIED:
					proc_exit(1);
					break;
				case BGWH_STOPPED:
					pfree(e->handle);
					e->handle = NULL;
					e->next_start = TimestampTzPlusMilliseconds(now, WORKER_RESTART_DELAY_MS);
					break;
			}
		}
		if (now >= e->next_start)
			due[i] = any_due = true;
	}
	if (any_due)
		launcher_check_databases(due);

	for (int i = 0; i < launcher_n; i++)
	{
		LauncherEntry *e = &launcher_entries[i];

		if (!due[i])
			continue;
		launcher_report(e);
		if (e->db_state == DB_CONNECTABLE && loop_claimed_by(NameStr(e->dbname)) == 0)
		{
			if (launcher_start_worker(e))
			{
				e->reported_no_slot = false;
				continue;
			}
			if (!e->reported_no_slot)
				ereport(LOG,
						(errmsg("ruvllm launcher: no free background worker slot for database \"%s\"; retrying",
								NameStr(e->dbname)),
						 errhint("Raise max_worker_processes.")));
			e->reported_no_slot = true;
		}
		/* Missing, refusing connections, still served by an earlier launcher's worker, or no slot. */
		e->next_start = TimestampTzPlusMilliseconds(now, LAUNCHER_POLL_MS);
	}

	for (int i = 0; i < launcher_n; i++)
		if (launcher_entries[i].handle == NULL)
			sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, launcher_entries[i].next_start));
	return sleep_ms;
}

void
ruvllm_launcher_main(Datum main_arg)
{
	uint32		wait_event;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	wait_event = WaitEventExtensionNew("RuvllmLauncherMain");
	loop_attach();
	ruvllm_witness_recover();
	launcher_read_databases();

	for (;;)
	{
		long		sleep_ms;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			launcher_read_databases();
		}
		sleep_ms = launcher_tend();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, sleep_ms,
						 wait_event);
	}
}

/* ---------------------------------------------------------------------------------------------
 * The worker of one database
 * ------------------------------------------------------------------------------------------- */

static char worker_dbname[NAMEDATALEN];
static TimestampTz last_start[N_LOOPS];
static bool has_run[N_LOOPS];
static bool schedule_loaded = false;

static int
loop_interval_s(int loop)
{
	switch (loop)
	{
		case 0:
			return ruvllm_instant_interval;
		case 1:
			return ruvllm_background_interval;
		default:
			return ruvllm_deep_interval;
	}
}

static TimestampTz
loop_next_due(int loop)
{
	if (!has_run[loop])
		return 0;
	return TimestampTzPlusMilliseconds(last_start[loop], (int64) loop_interval_s(loop) * 1000);
}

/*
 * Picks the schedule up where the last runs left it, so that a restarted server or worker does not
 * run the deep loop at once just because it restarted. Runs by hand count too. Inside SPI.
 */
static void
load_schedule(void)
{
	TimestampTz now = GetCurrentTimestamp();

	/* Set first: if the table cannot be read, the loops still run (and report that). */
	schedule_loaded = true;
	for (int i = 0; i < N_LOOPS; i++)
		has_run[i] = false;
	ruvllm_spi_check(SPI_execute("SELECT loop, max(started_at) FROM ruvllm.loop_runs GROUP BY loop",
								 true, 0),
					 SPI_OK_SELECT, "reading the loops' schedule");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		char	   *loop = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		bool		isnull;
		Datum		started = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull);

		for (int i = 0; i < N_LOOPS; i++)
			if (loop != NULL && !isnull && strcmp(loop, loop_names[i]) == 0)
			{
				/* A clock that went back must not postpone the loop by that much. */
				last_start[i] = Min(DatumGetTimestampTz(started), now);
				has_run[i] = true;
			}
	}
}

/* What pg_stat_activity shows while the extension is not installed. */
static const char *const waiting_activity = "ruvllm worker: waiting for CREATE EXTENSION ruvllm";

typedef enum RunResult
{
	RUN_NOT_INSTALLED,
	RUN_DONE,
	RUN_FAILED,
} RunResult;

typedef struct LoopRun
{
	int			loop;
	RunResult	result;
} LoopRun;

/* Inside ruvllm_run_in_transaction: see run_in_transaction. */
static void
run_loop_unit(void *arg)
{
	LoopRun    *run = (LoopRun *) arg;
	Oid			extoid = get_extension_oid("ruvllm", true);

	/*
	 * Locked as DROP EXTENSION locks it, then looked up again: a concurrent DROP either waits for
	 * this run, or has finished and the run is skipped, instead of failing half-way.
	 */
	if (OidIsValid(extoid))
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
	if (!OidIsValid(extoid) || get_extension_name(extoid) == NULL)
		return;
	/* Installed, whatever fails below; an error before this counts as not installed. */
	run->result = RUN_FAILED;
	if (!schedule_loaded)
		load_schedule();
	if (run->loop >= 0)
		ruvllm_spi_check(SPI_execute(loop_sql[run->loop], false, 0), SPI_OK_SELECT, loop_sql[run->loop]);
	run->result = RUN_DONE;
}

/*
 * One transaction: checks that the extension is installed, loads the schedule if needed, and runs
 * loop (-1: none). An error is logged and the transaction rolled back; the worker goes on.
 */
static RunResult
run_in_transaction(int loop)
{
	LoopRun		run = {loop, RUN_NOT_INSTALLED};
	ErrorData  *edata;

	edata = ruvllm_run_in_transaction(loop >= 0 ? loop_sql[loop] : waiting_activity, run_loop_unit, &run);
	if (edata != NULL)
	{
		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 loop >= 0 ?
				 errmsg("ruvllm worker: %s loop in database \"%s\" failed: %s",
						loop_names[loop], worker_dbname, edata->message) :
				 errmsg("ruvllm worker: checking database \"%s\" failed: %s",
						worker_dbname, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 edata->hint ? errhint("%s", edata->hint) : 0));
		FreeErrorData(edata);
	}
	return run.result;
}

static bool
database_still_listed(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "ruvllm worker config",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	List	   *names = configured_databases();
	ListCell   *lc;
	bool		listed = false;

	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), worker_dbname) == 0)
			listed = true;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return listed;
}

void
ruvllm_loop_worker_main(Datum main_arg)
{
	uint32		wait_event;
	bool		installed = false;
	TimestampTz next_install_check = 0;

	strlcpy(worker_dbname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	/* die, not a flag: SIGTERM (shutdown, DROP DATABASE ... FORCE) must also end a running loop. */
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(worker_dbname, NULL, 0);
	if (!loop_claim(worker_dbname))
	{
		pid_t		other = loop_claimed_by(worker_dbname);

		if (other != 0)
			ereport(LOG, (errmsg("ruvllm worker: database \"%s\" is already served by process %d; exiting",
								 worker_dbname, (int) other)));
		else
			ereport(LOG, (errmsg("ruvllm worker: more than %d databases served; \"%s\" is not",
								 MAX_LOOP_DATABASES, worker_dbname)));
		proc_exit(0);
	}
	wait_event = WaitEventExtensionNew("RuvllmWorkerMain");

	for (;;)
	{
		TimestampTz now;
		long		sleep_ms = MAX_SLEEP_MS;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (!database_still_listed())
			{
				ereport(LOG, (errmsg("ruvllm worker: database \"%s\" was removed from \"ruvllm.databases\"; exiting",
									 worker_dbname)));
				proc_exit(0);
			}
		}

		now = GetCurrentTimestamp();
		if (!installed && now >= next_install_check)
		{
			installed = run_in_transaction(-1) != RUN_NOT_INSTALLED;
			if (!installed)
			{
				/* Quietly: a listed database without the extension is not an error. */
				schedule_loaded = false;
				next_install_check = TimestampTzPlusMilliseconds(
					GetCurrentTimestamp(), Min((int64) ruvllm_instant_interval * 1000, INSTALL_CHECK_MS));
			}
		}
		if (installed)
		{
			for (int i = 0; i < N_LOOPS && installed; i++)
			{
				now = GetCurrentTimestamp();
				if (now < loop_next_due(i))
					continue;
				/* Even a failed run waits its interval before the next try. */
				last_start[i] = now;
				has_run[i] = true;
				if (run_in_transaction(i) == RUN_NOT_INSTALLED)
				{
					installed = false;
					schedule_loaded = false;
					next_install_check = 0;
				}
				CHECK_FOR_INTERRUPTS();
			}
			now = GetCurrentTimestamp();
			if (installed)
				for (int i = 0; i < N_LOOPS; i++)
					sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, loop_next_due(i)));
		}
		if (!installed)
			sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, next_install_check));

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, sleep_ms,
						 wait_event);
	}
}
