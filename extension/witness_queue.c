/*
 * witness_queue.c: the witness log's non-blocking write path.
 *
 * A witness row must survive the caller's ROLLBACK and a failed call, and must not add latency
 * to the query. So ruvllm_query does not INSERT it: it hands the row (as JSON text) to a ring
 * buffer in shared memory, and a background worker of the same database drains the ring in
 * batches of at most WITNESS_BATCH rows, each batch in its own transaction. Enqueueing is a
 * memcpy under an LWLock and a SetLatch.
 *
 * The shared memory comes from PostgreSQL 17's named DSM registry, and the writer is a dynamic
 * background worker started by the first enqueue in a database, so none of this needs
 * shared_preload_libraries. A writer that has been idle for ruvllm.witness_writer_idle seconds
 * exits, releasing its database connection (a connected worker would block DROP DATABASE).
 *
 * What a crash loses: rows still in the ring (not yet committed by the writer) when the server
 * crashes or is stopped with immediate mode. On a clean shutdown the writer drains the ring
 * before it exits. When a row cannot be queued (the ring is full, no worker can be started,
 * or ruvllm.witness_async is off), the enqueue function says so and the caller writes the row
 * synchronously in its own transaction instead.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm_registry.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "ruvllm.h"

#define WITNESS_MAX_DATABASES 16
#define WITNESS_RING_BYTES (1024 * 1024)
#define WITNESS_BATCH 100
#define WITNESS_MAX_ROW_BYTES (WITNESS_RING_BYTES / 4)

typedef struct WitnessRing
{
	Oid			dboid;			/* InvalidOid: slot free */
	int			writer_procno;	/* -1: no writer running */
	pid_t		writer_pid;
	bool		writer_starting;	/* a backend has registered a writer that has not attached yet */
	TimestampTz starting_since;
	uint64		head;			/* bytes ever written (producer position) */
	uint64		tail;			/* bytes ever consumed */
	uint64		queued;			/* rows ever queued */
	uint64		written;		/* rows ever committed (or discarded) by a writer */
	uint64		rejected;		/* rows refused because the ring was full */
	char		buf[WITNESS_RING_BYTES];
} WitnessRing;

typedef struct WitnessShared
{
	int			tranche_id;
	LWLock		lock;
	WitnessRing rings[WITNESS_MAX_DATABASES];
} WitnessShared;

static WitnessShared *witness_shared = NULL;

/* GUCs (defined in ruvllm.c) */
bool		ruvllm_witness_async = true;
int			ruvllm_witness_writer_idle = 60;

PGDLLEXPORT void ruvllm_witness_writer_main(Datum main_arg);

static void
witness_shared_init(void *ptr)
{
	WitnessShared *ws = (WitnessShared *) ptr;

	ws->tranche_id = LWLockNewTrancheId();
	LWLockInitialize(&ws->lock, ws->tranche_id);
	for (int i = 0; i < WITNESS_MAX_DATABASES; i++)
	{
		WitnessRing *r = &ws->rings[i];

		r->dboid = InvalidOid;
		r->writer_procno = -1;
		r->writer_pid = 0;
		r->writer_starting = false;
		r->head = r->tail = r->queued = r->written = r->rejected = 0;
	}
}

static WitnessShared *
witness_attach(void)
{
	bool		found;

	if (witness_shared == NULL)
	{
		witness_shared = GetNamedDSMSegment("ruvllm_witness_queue", sizeof(WitnessShared),
											witness_shared_init, &found);
		LWLockRegisterTranche(witness_shared->tranche_id, "ruvllm_witness_queue");
	}
	return witness_shared;
}

/* The ring of a database, claimed if free and create is set. Caller holds the lock. */
static WitnessRing *
witness_ring(WitnessShared *ws, Oid dboid, bool create)
{
	WitnessRing *free_ring = NULL;

	for (int i = 0; i < WITNESS_MAX_DATABASES; i++)
	{
		WitnessRing *r = &ws->rings[i];

		if (r->dboid == dboid)
			return r;
		/* An empty ring without a writer can be reused by another database. */
		if (free_ring == NULL && (r->dboid == InvalidOid ||
								  (r->head == r->tail && r->writer_procno < 0 && !r->writer_starting)))
			free_ring = r;
	}
	if (create && free_ring != NULL)
	{
		free_ring->dboid = dboid;
		free_ring->head = free_ring->tail = 0;
		free_ring->queued = free_ring->written = free_ring->rejected = 0;
		free_ring->writer_procno = -1;
		free_ring->writer_pid = 0;
		free_ring->writer_starting = false;
		return free_ring;
	}
	return NULL;
}

static void
ring_put(WitnessRing *r, const char *data, uint32 len)
{
	uint64		pos = r->head % WITNESS_RING_BYTES;
	uint32		first = Min((uint64) len, WITNESS_RING_BYTES - pos);

	memcpy(r->buf + pos, data, first);
	if (first < len)
		memcpy(r->buf, data + first, len - first);
	r->head += len;
}

static void
ring_get(WitnessRing *r, char *out, uint32 len)
{
	uint64		pos = r->tail % WITNESS_RING_BYTES;
	uint32		first = Min((uint64) len, WITNESS_RING_BYTES - pos);

	memcpy(out, r->buf + pos, first);
	if (first < len)
		memcpy(out + first, r->buf, len - first);
	r->tail += len;
}

static bool
writer_alive(WitnessRing *r)
{
	if (r->writer_procno >= 0)
		return true;
	/* A registration that never attached (the worker failed to start) expires. */
	if (r->writer_starting &&
		!TimestampDifferenceExceeds(r->starting_since, GetCurrentTimestamp(), 10000))
		return true;
	r->writer_starting = false;
	return false;
}

static bool
start_writer(void)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, MAXPGPATH, "ruvllm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ruvllm_witness_writer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ruvllm witness writer for database %u", MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, "ruvllm witness writer");
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

/*
 * The writer inserts as the extension's owner, past row-level security, so the row's tenant is
 * not checked there: here, a role bound to a tenant has that tenant written into its rows,
 * whatever they say (unbound roles act for the tenant they name anyway). Names are qualified: the
 * caller controls search_path.
 */
static text *
stamp_bound_tenant(text *row)
{
	Oid			argtypes[2] = {NAMEOID, TEXTOID};
	Datum		values[2];
	text	   *result = row;

	if (superuser())
		return row;
	values[0] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	values[1] = PointerGetDatum(row);
	SPI_connect();
	if (SPI_execute_with_args("SELECT pg_catalog.jsonb_set($2::pg_catalog.jsonb, "
							  "'{tenant}'::pg_catalog.text[], pg_catalog.to_jsonb(t.bound))::pg_catalog.text "
							  "FROM ruvllm._tenant_lookup($1, '') t WHERE t.bound IS NOT NULL",
							  2, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "ruvllm: could not look up the caller's tenant");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		stamped = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			result = DatumGetTextPP(SPI_datumTransfer(stamped, false, -1));
	}
	SPI_finish();
	return result;
}

PG_FUNCTION_INFO_V1(ruvllm_witness_enqueue);

/*
 * ruvllm._witness_enqueue(row text) → boolean: true when the row is queued for the writer,
 * false when the caller must write it itself.
 */
Datum
ruvllm_witness_enqueue(PG_FUNCTION_ARGS)
{
	text	   *row = PG_GETARG_TEXT_PP(0);
	uint32		len = VARSIZE_ANY_EXHDR(row);
	WitnessShared *ws;
	WitnessRing *r;
	bool		queued = false;
	bool		need_writer = false;
	int			procno = -1;

	if (!ruvllm_witness_async || len == 0 || len > WITNESS_MAX_ROW_BYTES)
		PG_RETURN_BOOL(false);
	row = stamp_bound_tenant(row);
	len = VARSIZE_ANY_EXHDR(row);
	if (len > WITNESS_MAX_ROW_BYTES)
		PG_RETURN_BOOL(false);
	ws = witness_attach();

	LWLockAcquire(&ws->lock, LW_EXCLUSIVE);
	r = witness_ring(ws, MyDatabaseId, true);
	if (r != NULL)
	{
		if (!writer_alive(r))
		{
			r->writer_starting = true;
			r->starting_since = GetCurrentTimestamp();
			need_writer = true;
		}
		if (WITNESS_RING_BYTES - (r->head - r->tail) >= len + sizeof(uint32))
		{
			ring_put(r, (const char *) &len, sizeof(uint32));
			ring_put(r, VARDATA_ANY(row), len);
			r->queued++;
			queued = true;
		}
		else
			r->rejected++;
		procno = r->writer_procno;
	}
	LWLockRelease(&ws->lock);

	if (need_writer && !start_writer())
	{
		/* No worker slot: take the row back out if nobody consumed it, and let the caller write. */
		LWLockAcquire(&ws->lock, LW_EXCLUSIVE);
		r->writer_starting = false;
		if (queued && r->writer_procno < 0 && r->head >= r->tail + len + sizeof(uint32))
		{
			r->head -= len + sizeof(uint32);
			r->queued--;
			queued = false;
		}
		LWLockRelease(&ws->lock);
		ereport(DEBUG1, (errmsg("ruvllm: no background worker slot for the witness writer")));
	}
	if (queued && procno >= 0)
		SetLatch(&GetPGProcByNumber(procno)->procLatch);
	PG_RETURN_BOOL(queued);
}

PG_FUNCTION_INFO_V1(ruvllm_witness_queue_stats);

/*
 * ruvllm._witness_queue_stats() → (queued, written, rejected, pending_bytes, writer_pid) for the
 * current database: what ruvllm_witness_flush waits on and ruvllm_health reports.
 */
Datum
ruvllm_witness_queue_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {0};
	WitnessShared *ws = witness_attach();
	WitnessRing *r;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	LWLockAcquire(&ws->lock, LW_SHARED);
	r = witness_ring(ws, MyDatabaseId, false);
	values[0] = Int64GetDatum(r ? (int64) r->queued : 0);
	values[1] = Int64GetDatum(r ? (int64) r->written : 0);
	values[2] = Int64GetDatum(r ? (int64) r->rejected : 0);
	values[3] = Int64GetDatum(r ? (int64) (r->head - r->tail) : 0);
	values[4] = Int32GetDatum(r && r->writer_procno >= 0 ? r->writer_pid : 0);
	nulls[4] = !(r && r->writer_procno >= 0);
	LWLockRelease(&ws->lock);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---------------------------------------------------------------------------------------------
 * The writer
 * ------------------------------------------------------------------------------------------- */

static WitnessRing *writer_ring = NULL;

static void
writer_detach(int code, Datum arg)
{
	if (writer_ring == NULL)
		return;
	LWLockAcquire(&witness_shared->lock, LW_EXCLUSIVE);
	if (writer_ring->writer_procno == MyProcNumber)
	{
		writer_ring->writer_procno = -1;
		writer_ring->writer_pid = 0;
	}
	LWLockRelease(&witness_shared->lock);
}

/* Pops up to WITNESS_BATCH rows into a text[] Datum; *n gets the count. */
static Datum
pop_batch(int *n)
{
	Datum	   *rows = palloc(sizeof(Datum) * WITNESS_BATCH);
	int			count = 0;

	LWLockAcquire(&witness_shared->lock, LW_EXCLUSIVE);
	while (count < WITNESS_BATCH && writer_ring->head - writer_ring->tail >= sizeof(uint32))
	{
		uint32		len;
		text	   *t;

		ring_get(writer_ring, (char *) &len, sizeof(uint32));
		t = (text *) palloc(len + VARHDRSZ);
		SET_VARSIZE(t, len + VARHDRSZ);
		ring_get(writer_ring, VARDATA(t), len);
		rows[count++] = PointerGetDatum(t);
	}
	LWLockRelease(&witness_shared->lock);
	*n = count;
	if (count == 0)
		return (Datum) 0;
	return PointerGetDatum(construct_array_builtin(rows, count, TEXTOID));
}

static void
mark_written(int n)
{
	LWLockAcquire(&witness_shared->lock, LW_EXCLUSIVE);
	writer_ring->written += n;
	LWLockRelease(&witness_shared->lock);
}

/* One batch, one transaction. A failure is logged and the worker goes on. */
static void
write_batch(Datum batch, int n)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "ruvllm: writing witness rows");
	PG_TRY();
	{
		Oid			argtypes[1] = {TEXTARRAYOID};
		Datum		args[1] = {batch};

		SPI_connect();
		/* The extension may have been dropped since the rows were queued. */
		if (SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'ruvllm'", true, 1) ==
			SPI_OK_SELECT && SPI_processed == 1)
			SPI_execute_with_args("SELECT ruvllm._witness_write($1)", 1, argtypes, args, NULL,
								  false, 0);
		else
			ereport(LOG, (errmsg("ruvllm witness writer: extension not installed, %d rows discarded", n)));
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG, (errmsg("ruvllm witness writer: %d rows lost: %s", n, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
	mark_written(n);
}

void
ruvllm_witness_writer_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	TimestampTz idle_since = GetCurrentTimestamp();

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	witness_attach();
	LWLockAcquire(&witness_shared->lock, LW_EXCLUSIVE);
	writer_ring = witness_ring(witness_shared, dboid, false);
	if (writer_ring != NULL && writer_ring->writer_procno < 0)
	{
		writer_ring->writer_procno = MyProcNumber;
		writer_ring->writer_pid = MyProcPid;
		writer_ring->writer_starting = false;
	}
	else
		writer_ring = NULL;		/* another writer serves this database */
	LWLockRelease(&witness_shared->lock);
	if (writer_ring == NULL)
		proc_exit(0);
	before_shmem_exit(writer_detach, (Datum) 0);

	for (;;)
	{
		int			n;
		Datum		batch;

		ResetLatch(MyLatch);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		batch = pop_batch(&n);
		if (n > 0)
		{
			write_batch(batch, n);
			idle_since = GetCurrentTimestamp();
			continue;			/* more may be waiting: drain before sleeping */
		}
		/*
		 * Drained: on shutdown, or after a long idle spell, give the connection back. The ring is
		 * checked again under the lock that enqueuers take, so no row is left behind with no
		 * writer to drain it.
		 */
		if (ShutdownRequestPending ||
			TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(),
									   ruvllm_witness_writer_idle * 1000))
		{
			bool		empty;

			LWLockAcquire(&witness_shared->lock, LW_EXCLUSIVE);
			empty = writer_ring->head == writer_ring->tail;
			if (empty)
			{
				writer_ring->writer_procno = -1;
				writer_ring->writer_pid = 0;
				writer_ring = NULL;
			}
			LWLockRelease(&witness_shared->lock);
			if (empty)
				break;
			continue;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000,
						 PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}

	proc_exit(0);
}
