/*
 * witness_queue.c: the witness log's non-blocking write path.
 *
 * A witness row must survive the caller's ROLLBACK and a failed call, and must not add latency
 * to the query. So ruvllm_query does not INSERT it: it hands the row (as JSON text) to a ring
 * buffer of its database, and a background worker of the same database (the writer) drains the
 * ring in batches of at most WITNESS_BATCH rows, each batch in its own transaction. Enqueueing is
 * a memcpy under an LWLock and a SetLatch.
 *
 * The rings live in a file of the data directory (WITNESS_FILE) that every process maps shared,
 * not in shared memory proper: PostgreSQL throws its shared memory away when a backend crashes or
 * the server stops in immediate mode, but the file's pages stay in the kernel's page cache, so the
 * rows queued at that moment are still there when the server comes back, and the next writer
 * writes them. Only a crash of the operating system (or power) loses queued rows: the file is
 * never fsync'd. pg_stat_tmp, where the file lives, is left out of base backups.
 *
 * A row leaves the ring only after the transaction that inserted it committed; that transaction
 * also records in ruvllm.witness_writer_state how far into the ring it got, so that a crash after
 * the commit but before the ring moved on does not write the batch twice. The LWLock and the
 * writer's identity are per server life, in a DSM segment of PostgreSQL 17's named DSM registry.
 * The writer is a dynamic background worker started by the first enqueue in a database (or by
 * _witness_queue_stats, and by the launcher at server start, for rows kept across a restart), so
 * none of this needs shared_preload_libraries. A writer idle for ruvllm.witness_writer_idle
 * seconds exits, releasing its connection (a connected worker would block DROP DATABASE).
 *
 * When a row cannot be queued (the ring is full, no worker can be started, more than
 * WITNESS_MAX_DATABASES databases have rows in flight, or ruvllm.witness_async is off), it is
 * written synchronously in the caller's transaction, as the witness table's owner.
 *
 * Rows come from ruvllm's own Python through ruvllm_witness_submit, a C entry point that is not an
 * SQL function (see "The pipeline's entry points" below): users cannot write the witness log.
 *
 * The same rings carry access records (ruvllm_access_submit): the ids of the nodes a search
 * returned, with the time of the searching transaction, which the writer upserts into
 * ruvllm.node_access with its next batch. That takes the upsert, and its row locks held to the
 * caller's commit, off the request. They are entries of another kind (ACCESS_ENTRY_MAGIC), not
 * rows: the witness counters (queued, written, lost, ...) count witness rows only. An access
 * record is only queued when the ring's writer is known to read them (writer_reads_access, or a
 * writer about to start, which loads the installed library); otherwise, like a refused witness
 * row, it is written in the caller's transaction (python/ruvllm/memory.py).
 */
#include "postgres.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "ruvllm.h"
#include "support.h"

/* As many as the loop workers serve (worker.c), so a database with a worker also has a ring. */
#define WITNESS_MAX_DATABASES 64
#define WITNESS_RING_BYTES (1024 * 1024)
#define WITNESS_BATCH 100
/* Also in python/ruvllm/witness.py, which cuts rows to fit. */
#define WITNESS_MAX_ROW_BYTES (WITNESS_RING_BYTES / 4)
/* A batch whose transaction fails is tried this many times (a second apart) before it is lost. */
#define WITNESS_BATCH_TRIES 3

#define WITNESS_FILE PG_STAT_TMP_DIR "/ruvllm_witness.ring"
#define WITNESS_FILE_MAGIC UINT64CONST(0x72756c6c6d577131)
#define WITNESS_FILE_VERSION 1
#define WITNESS_ENTRY_MAGIC 0x52565731	/* "RVW1" */
/* An access record: a TimestampTz, then the nodes' ids (16 bytes each). */
#define ACCESS_ENTRY_MAGIC 0x52564131	/* "RVA1" */
#define ACCESS_ID_BYTES 16

/* Each row in a ring: this header, then len bytes of JSON (or of an access record). */
typedef struct WitnessEntry
{
	uint32		magic;
	uint32		len;
} WitnessEntry;

typedef struct WitnessRing
{
	/* Kept across server restarts (in the file). Counters count rows of this generation. */
	Oid			dboid;			/* InvalidOid: slot free */
	uint64		generation;		/* new each time a database claims the slot */
	uint64		head;			/* bytes ever written (producer position) */
	uint64		tail;			/* bytes whose rows are committed (or given up) */
	uint64		queued;			/* rows ever queued */
	uint64		written;		/* rows done: committed, or given up (those are also in lost) */
	uint64		lost;			/* rows given up: failed batches, corrupt entries */
	uint64		rejected;		/* rows refused because the ring was full */
	uint64		recovered;		/* rows found in the ring when the server last started */
	TimestampTz last_enqueued_at;
	TimestampTz last_written_at;

	/* Valid for one server life: reset when the server starts. */
	int			writer_procno;	/* -1: no writer running */
	pid_t		writer_pid;
	bool		writer_starting;	/* a backend has registered a writer that has not attached yet */

	/*
	 * The attached writer reads access records. A library older than them takes one for a corrupt
	 * entry (and gives up the rows after it), so an older writer still running after an upgrade
	 * must never be sent one. Placed where writer_starting's padding was: the layout, which
	 * processes of both libraries share until the server restarts, stays the same.
	 */
	bool		writer_reads_access;
	TimestampTz starting_since;

	char		buf[WITNESS_RING_BYTES];
} WitnessRing;

typedef struct WitnessFile
{
	uint64		magic;
	uint32		version;
	uint32		nrings;
	uint64		size;
	uint64		next_generation;
	TimestampTz server_started_at;	/* when this server life first mapped the file */
	WitnessRing rings[WITNESS_MAX_DATABASES];
} WitnessFile;

typedef struct WitnessShared
{
	RuvllmShmemHeader hdr;
	bool		file_ok;		/* the file could be mapped when the segment was made */
} WitnessShared;

static WitnessShared *witness_shared = NULL;
static WitnessFile *witness_file = NULL;

/* GUCs (defined in ruvllm.c) */
bool		ruvllm_witness_async = true;
int			ruvllm_witness_writer_idle = 60;

PGDLLEXPORT void ruvllm_witness_writer_main(Datum main_arg);

/* ---------------------------------------------------------------------------------------------
 * The ring file
 * ------------------------------------------------------------------------------------------- */

/* Maps the ring file into this process; NULL (and a LOG line) if that fails. */
static WitnessFile *
map_ring_file(bool *created)
{
	int			fd;
	struct stat st;
	void	   *p;

	*created = false;
	/* initdb makes it; a data directory copied without it still works. */
	if (MakePGDirectory(PG_STAT_TMP_DIR) != 0 && errno != EEXIST)
		ereport(LOG, (errcode_for_file_access(),
					  errmsg("ruvllm: could not create directory \"%s\": %m", PG_STAT_TMP_DIR)));
	fd = BasicOpenFilePerm(WITNESS_FILE, O_RDWR | O_CREAT | PG_BINARY, pg_file_create_mode);
	if (fd < 0)
	{
		ereport(LOG, (errcode_for_file_access(),
					  errmsg("ruvllm: could not open witness queue file \"%s\": %m", WITNESS_FILE)));
		return NULL;
	}
	if (fstat(fd, &st) != 0 ||
		((Size) st.st_size != sizeof(WitnessFile) && ftruncate(fd, 0) != 0) ||
		((Size) st.st_size != sizeof(WitnessFile) && ftruncate(fd, sizeof(WitnessFile)) != 0))
	{
		ereport(LOG, (errcode_for_file_access(),
					  errmsg("ruvllm: could not size witness queue file \"%s\": %m", WITNESS_FILE)));
		close(fd);
		return NULL;
	}
	*created = (Size) st.st_size != sizeof(WitnessFile);
	p = mmap(NULL, sizeof(WitnessFile), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
	{
		ereport(LOG, (errmsg("ruvllm: could not map witness queue file \"%s\": %m", WITNESS_FILE)));
		return NULL;
	}
	return (WitnessFile *) p;
}

static void
ring_read(WitnessRing *r, uint64 at, char *out, uint32 len)
{
	uint64		pos = at % WITNESS_RING_BYTES;
	uint32		first = Min((uint64) len, WITNESS_RING_BYTES - pos);

	memcpy(out, r->buf + pos, first);
	if (first < len)
		memcpy(out + first, r->buf, len - first);
}

static void
ring_write(WitnessRing *r, uint64 at, const char *data, uint32 len)
{
	uint64		pos = at % WITNESS_RING_BYTES;
	uint32		first = Min((uint64) len, WITNESS_RING_BYTES - pos);

	memcpy(r->buf + pos, data, first);
	if (first < len)
		memcpy(r->buf, data + first, len - first);
}

static bool
access_len_ok(uint32 len)
{
	return len > sizeof(TimestampTz) && (len - sizeof(TimestampTz)) % ACCESS_ID_BYTES == 0;
}

/*
 * Whether a whole, well-formed entry starts at byte at, below end; its payload length in *len,
 * and in *access whether it is an access record rather than a witness row. Nothing is ever read
 * past end: a length that does not fit is an invalid entry.
 */
static bool
entry_at(WitnessRing *r, uint64 at, uint64 end, uint32 *len, bool *access)
{
	WitnessEntry e;

	*len = 0;
	*access = false;
	if (end - at < sizeof(WitnessEntry))
		return false;
	ring_read(r, at, (char *) &e, sizeof(WitnessEntry));
	*len = e.len;
	*access = e.magic == ACCESS_ENTRY_MAGIC;
	return (e.magic == WITNESS_ENTRY_MAGIC || (*access && access_len_ok(e.len))) &&
		e.len > 0 && e.len <= WITNESS_MAX_ROW_BYTES && e.len <= end - at - sizeof(WitnessEntry);
}

/*
 * Counts the witness rows among the whole entries from byte from up to to; *valid_end gets where
 * the last entry ends.
 */
static uint64
count_entries(WitnessRing *r, uint64 from, uint64 to, uint64 *valid_end)
{
	uint64		n = 0;
	uint32		len;
	bool		access;

	while (entry_at(r, from, to, &len, &access))
	{
		from += sizeof(WitnessEntry) + len;
		if (!access)
			n++;
	}
	*valid_end = from;
	return n;
}

/*
 * Run once per server life, by the first process to attach (under the DSM registry's lock): the
 * rows a crash left in the rings are checked and kept, the writers of the last life forgotten.
 */
static void
witness_shared_init(void *ptr)
{
	WitnessShared *ws = (WitnessShared *) ptr;
	bool		created;
	WitnessFile *f = map_ring_file(&created);

	ws->file_ok = f != NULL;
	if (f == NULL)
		return;
	if (created || f->magic != WITNESS_FILE_MAGIC || f->version != WITNESS_FILE_VERSION ||
		f->nrings != WITNESS_MAX_DATABASES || f->size != sizeof(WitnessFile))
	{
		if (!created)
			ereport(LOG, (errmsg("ruvllm: witness queue file \"%s\" is of another layout; starting it afresh",
								 WITNESS_FILE)));
		memset(f, 0, offsetof(WitnessFile, rings));
		for (int i = 0; i < WITNESS_MAX_DATABASES; i++)
			memset(&f->rings[i], 0, offsetof(WitnessRing, buf));
		f->version = WITNESS_FILE_VERSION;
		f->nrings = WITNESS_MAX_DATABASES;
		f->size = sizeof(WitnessFile);
		/* Generations stay unique across files: ruvllm.witness_writer_state compares them. */
		f->next_generation = (uint64) GetCurrentTimestamp();
		pg_write_barrier();
		f->magic = WITNESS_FILE_MAGIC;
	}
	f->server_started_at = GetCurrentTimestamp();
	for (int i = 0; i < WITNESS_MAX_DATABASES; i++)
	{
		WitnessRing *r = &f->rings[i];
		uint64		valid_end;
		uint64		rows;
		uint64		counted;

		r->writer_procno = -1;
		r->writer_pid = 0;
		r->writer_starting = false;
		r->writer_reads_access = false;
		r->recovered = 0;
		if (r->dboid == InvalidOid)
			continue;
		if (r->head < r->tail || r->head - r->tail > WITNESS_RING_BYTES)
		{
			ereport(LOG, (errmsg("ruvllm: witness queue of database %u is corrupt; its rows are lost",
								 r->dboid)));
			r->head = r->tail;
		}
		rows = count_entries(r, r->tail, r->head, &valid_end);
		if (valid_end != r->head)
		{
			/* A torn entry: its writer died while copying it, before it was queued. */
			ereport(LOG, (errmsg("ruvllm: witness queue of database %u: %llu bytes past its last whole row dropped",
								 r->dboid, (unsigned long long) (r->head - valid_end))));
			r->head = valid_end;
		}
		counted = r->queued - r->written;
		if (counted != rows)
		{
			/* The counters were being updated when the process died: the ring is the truth. */
			if (counted > rows)
			{
				r->lost += counted - rows;
				r->written += counted - rows;
			}
			else
				r->queued = r->written + rows;
		}
		r->recovered = rows;
		if (rows > 0)
			ereport(LOG, (errmsg("ruvllm: %llu witness rows of database %u were kept in the queue across the restart",
								 (unsigned long long) rows, r->dboid)));
	}
	witness_file = f;
}

/* Attaches to the witness queue; NULL when its file cannot be mapped (rows are then written
 * synchronously). */
static WitnessShared *
witness_attach(void)
{
	if (witness_shared == NULL)
		witness_shared = ruvllm_attach_shmem("ruvllm_witness_queue_v2", sizeof(WitnessShared),
											 witness_shared_init);
	if (!witness_shared->file_ok)
		return NULL;
	if (witness_file == NULL)
	{
		bool		created;

		witness_file = map_ring_file(&created);
		if (witness_file == NULL)
			return NULL;
	}
	return witness_shared;
}

#define witness_lock (&witness_shared->hdr.lock)

/* The ring of a database, claimed if free and create is set. Caller holds the lock. */
static WitnessRing *
witness_ring(Oid dboid, bool create)
{
	WitnessRing *free_ring = NULL;

	for (int i = 0; i < WITNESS_MAX_DATABASES; i++)
	{
		WitnessRing *r = &witness_file->rings[i];

		if (r->dboid == dboid)
			return r;
		/* An empty ring without a writer can be reused by another database. */
		if (free_ring == NULL && (r->dboid == InvalidOid ||
								  (r->head == r->tail && r->writer_procno < 0 && !r->writer_starting)))
			free_ring = r;
	}
	if (create && free_ring != NULL)
	{
		WitnessRing *r = free_ring;

		r->dboid = InvalidOid;
		pg_write_barrier();
		r->generation = witness_file->next_generation++;
		r->head = r->tail = 0;
		r->queued = r->written = r->lost = r->rejected = r->recovered = 0;
		r->last_enqueued_at = r->last_written_at = 0;
		r->writer_procno = -1;
		r->writer_pid = 0;
		r->writer_starting = false;
		r->writer_reads_access = false;
		pg_write_barrier();
		r->dboid = dboid;
		return r;
	}
	return NULL;
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
start_writer(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, MAXPGPATH, "ruvllm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ruvllm_witness_writer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ruvllm witness writer for database %u", dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "ruvllm witness writer");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

/*
 * Makes sure a writer runs for r (whose database is dboid) if rows wait in it. Takes the lock
 * itself; false if a writer was needed and could not be registered.
 */
static bool
ensure_writer(WitnessRing *r, Oid dboid, bool even_if_empty)
{
	bool		need;

	LWLockAcquire(witness_lock, LW_EXCLUSIVE);
	need = r->dboid == dboid && (even_if_empty || r->head != r->tail) && !writer_alive(r);
	if (need)
	{
		r->writer_starting = true;
		r->starting_since = GetCurrentTimestamp();
	}
	LWLockRelease(witness_lock);
	if (!need)
		return true;
	if (start_writer(dboid))
		return true;
	LWLockAcquire(witness_lock, LW_EXCLUSIVE);
	if (r->dboid == dboid)
		r->writer_starting = false;
	LWLockRelease(witness_lock);
	ereport(DEBUG1, (errmsg("ruvllm: no background worker slot for the witness writer")));
	return false;
}

/*
 * Called by the launcher when the server starts: rows kept across a restart get their writers
 * without waiting for the next query in their database.
 */
void
ruvllm_witness_recover(void)
{
	if (witness_attach() == NULL)
		return;
	for (int i = 0; i < WITNESS_MAX_DATABASES; i++)
	{
		WitnessRing *r = &witness_file->rings[i];
		Oid			dboid;

		LWLockAcquire(witness_lock, LW_SHARED);
		dboid = r->head != r->tail ? r->dboid : InvalidOid;
		LWLockRelease(witness_lock);
		if (OidIsValid(dboid))
			(void) ensure_writer(r, dboid, false);
	}
}

/*
 * The writer inserts as the witness table's owner, past row-level security, and so does the
 * synchronous path below: the row's tenant is not checked there. So here, a role bound to a
 * tenant has that tenant written into its rows, whatever they say (an unbound role acts for the
 * tenant it names anyway, and its rows come from ruvllm's own code). Names are qualified: the
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
	ruvllm_spi_connect();
	ruvllm_spi_check(SPI_execute_with_args("SELECT pg_catalog.jsonb_set($2::pg_catalog.jsonb, "
										   "'{tenant}'::pg_catalog.text[], pg_catalog.to_jsonb(t.bound))::pg_catalog.text "
										   "FROM ruvllm._tenant_lookup($1, '') t WHERE t.bound IS NOT NULL",
										   2, argtypes, values, NULL, true, 1),
					 SPI_OK_SELECT, "looking up the caller's tenant");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		stamped = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			result = DatumGetTextPP(SPI_datumTransfer(stamped, false, -1));
	}
	ruvllm_spi_check(SPI_finish(), SPI_OK_FINISH, "SPI_finish");
	return result;
}

/*
 * Puts an entry (a stamped witness row, or an access record) into this database's ring: true when
 * it is queued for the writer, false when the caller must write it itself.
 *
 * The writer is registered before the entry goes in: an entry is never put in and then taken out
 * again, as taking it out could cut another backend's.
 */
static bool
enqueue_entry(uint32 magic, const char *data, uint32 len)
{
	WitnessRing *r;
	bool		queued = false;
	bool		access = magic == ACCESS_ENTRY_MAGIC;
	int			procno = -1;

	if (!ruvllm_witness_async || len == 0 || len > WITNESS_MAX_ROW_BYTES)
		return false;
	if (witness_attach() == NULL)
		return false;

	/* Twice at most: the second time the writer registered the first time is there. */
	for (int attempt = 0; attempt < 2; attempt++)
	{
		bool		alive;

		LWLockAcquire(witness_lock, LW_EXCLUSIVE);
		r = witness_ring(MyDatabaseId, true);
		alive = r != NULL && writer_alive(r);
		if (alive && access && !(r->writer_procno >= 0 ? r->writer_reads_access : r->writer_starting))
		{
			/* An older library's writer is draining this ring (see writer_reads_access). */
			LWLockRelease(witness_lock);
			return false;
		}
		if (alive)
		{
			if (WITNESS_RING_BYTES - (r->head - r->tail) >= len + sizeof(WitnessEntry))
			{
				WitnessEntry e = {magic, len};

				ring_write(r, r->head, (const char *) &e, sizeof(e));
				ring_write(r, r->head + sizeof(e), data, len);
				/* The row counts once it is whole: a process killed mid-copy leaves no torn row. */
				pg_write_barrier();
				r->head += sizeof(e) + len;
				if (!access)
				{
					r->queued++;
					r->last_enqueued_at = GetCurrentTimestamp();
				}
				queued = true;
			}
			else if (!access)
				r->rejected++;
			procno = r->writer_procno;
		}
		LWLockRelease(witness_lock);
		if (r == NULL || alive)
			break;
		/* No writer: register one, or write synchronously. */
		if (!ensure_writer(r, MyDatabaseId, true))
			break;
	}
	if (queued && procno >= 0)
		SetLatch(&GetPGProcByNumber(procno)->procLatch);
	return queued;
}

PG_FUNCTION_INFO_V1(ruvllm_witness_enqueue);

/*
 * ruvllm._witness_enqueue(row text) → boolean: true when the row is queued for the writer, false
 * when the caller must write it itself. For superusers and ruvllm_admin (who may write the
 * witness table anyway): operators and the durability tests fill the queue with it. ruvllm's own
 * pipeline does not use it; it calls ruvllm_witness_submit.
 */
Datum
ruvllm_witness_enqueue(PG_FUNCTION_ARGS)
{
	text	   *row = PG_GETARG_TEXT_PP(0);
	uint32		len = VARSIZE_ANY_EXHDR(row);

	if (!ruvllm_witness_async || len == 0 || len > WITNESS_MAX_ROW_BYTES)
		PG_RETURN_BOOL(false);
	row = stamp_bound_tenant(row);
	PG_RETURN_BOOL(enqueue_entry(WITNESS_ENTRY_MAGIC, VARDATA_ANY(row), VARSIZE_ANY_EXHDR(row)));
}

/* ---------------------------------------------------------------------------------------------
 * The pipeline's entry points: C functions of the library that are not SQL functions
 *
 * A witness row must be what the request did, not what a caller says it did, and users must not
 * rate their own answers' quality into training labels. So no SQL function a user can call
 * writes witness rows or feedback: ruvllm's Python (PL/Python, running in the backend) calls
 * these through ctypes (python/ruvllm/native.py). Only code running in the backend can, and
 * users cannot make such code: C and untrusted PL/Python functions are a superuser's to create.
 *
 * They run as the caller, except for the write itself, which runs as the witness table's owner
 * (who needs no privilege on it and is past row-level security): the tenant is stamped or checked
 * as the caller first. An error never leaves them (it would longjmp through Python's frames):
 * each runs in an internal subtransaction, as PL/Python's plpy.execute does, whose error is rolled
 * back and kept for ruvllm_witness_error() and ruvllm_witness_error_sqlstate().
 * ------------------------------------------------------------------------------------------- */

#define WITNESS_SUBMIT_FAILED (-1)
#define WITNESS_SUBMIT_QUEUED 1
#define WITNESS_SUBMIT_WRITTEN 2
#define WITNESS_SUBMIT_DROPPED 3
/* An access record the queue refused: the caller writes it itself. */
#define WITNESS_SUBMIT_NOT_QUEUED 0

PGDLLEXPORT int ruvllm_witness_submit(const char *json, size_t len);
PGDLLEXPORT int ruvllm_witness_rate(const char *json, size_t len);
PGDLLEXPORT int ruvllm_access_submit(const char *ids, size_t len);
PGDLLEXPORT const char *ruvllm_witness_error(void);
PGDLLEXPORT const char *ruvllm_witness_error_sqlstate(void);

static char submit_error[1024];
static char submit_sqlstate[6];

const char *
ruvllm_witness_error(void)
{
	return submit_error;
}

const char *
ruvllm_witness_error_sqlstate(void)
{
	return submit_sqlstate;
}

static void
set_submit_error(const char *sqlstate, const char *message)
{
	strlcpy(submit_sqlstate, sqlstate, sizeof(submit_sqlstate));
	strlcpy(submit_error, message, sizeof(submit_error));
}

/* The witness table's owner: the role the synchronous write and feedback run as. */
static Oid
witness_owner(void)
{
	Oid			relid = get_relname_relid("witness", get_namespace_oid("ruvllm", false));
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
						errmsg("ruvllm: table ruvllm.witness does not exist")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Runs one statement, whose first column is an integer, as the witness table's owner: a
 * security-restricted operation with search_path pinned, as PostgreSQL runs maintenance code as a
 * table's owner. The caller's user and settings come back with the subtransaction's end, or its
 * rollback on error.
 */
static int
run_as_owner(const char *sql, int nargs, Oid *argtypes, Datum *args)
{
	Oid			owner = witness_owner();
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	int			result = 0;
	bool		isnull;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	RestrictSearchPath();
	ruvllm_spi_connect();
	ruvllm_spi_check(SPI_execute_with_args(sql, nargs, argtypes, args, NULL, false, 1),
					 SPI_OK_SELECT, sql);
	if (SPI_processed == 1)
	{
		result = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (isnull)
			result = 0;
	}
	ruvllm_spi_check(SPI_finish(), SPI_OK_FINISH, "SPI_finish");
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return result;
}

/* A row from the pipeline: queued, or written in the caller's transaction if the queue refuses. */
static int
submit_row(text *row)
{
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	Datum		one;

	row = stamp_bound_tenant(row);
	if (enqueue_entry(WITNESS_ENTRY_MAGIC, VARDATA_ANY(row), VARSIZE_ANY_EXHDR(row)))
		return WITNESS_SUBMIT_QUEUED;
	one = PointerGetDatum(row);
	args[0] = PointerGetDatum(construct_array_builtin(&one, 1, TEXTOID));
	return run_as_owner("SELECT ruvllm._witness_write($1)", 1, argtypes, args) > 0 ?
		WITNESS_SUBMIT_WRITTEN : WITNESS_SUBMIT_DROPPED;
}

/*
 * An access record of the nodes (16-byte ids, one after another) a search of this transaction
 * returned, stamped with the transaction's start (now(), as the synchronous upsert has it).
 * The ids come from ruvllm's search, never from a user: no SQL function reaches this.
 */
static int
submit_access(text *ids)
{
	uint32		len = VARSIZE_ANY_EXHDR(ids);
	TimestampTz at = GetCurrentTransactionStartTimestamp();
	char	   *entry;
	bool		queued;

	if (len == 0 || len % ACCESS_ID_BYTES != 0 || len > WITNESS_MAX_ROW_BYTES - sizeof(at))
	{
		set_submit_error("22023", "ruvllm: an access record is a non-empty list of node ids that fits the queue");
		return WITNESS_SUBMIT_FAILED;
	}
	entry = palloc(sizeof(at) + len);
	memcpy(entry, &at, sizeof(at));
	memcpy(entry + sizeof(at), VARDATA_ANY(ids), len);
	queued = enqueue_entry(ACCESS_ENTRY_MAGIC, entry, sizeof(at) + len);
	pfree(entry);
	return queued ? WITNESS_SUBMIT_QUEUED : WITNESS_SUBMIT_NOT_QUEUED;
}

/* Feedback on a row of the caller's tenant; returns how many rows it changed (0 or 1). */
static int
rate_row(text *feedback)
{
	Oid			argtypes[2] = {JSONBOID, TEXTOID};
	Datum		args[2];
	Datum		tenant;
	bool		isnull;

	ruvllm_spi_connect();
	ruvllm_spi_check(SPI_execute("SELECT COALESCE(public.ruvllm_current_tenant(), '')",
								 true, 1), SPI_OK_SELECT, "looking up the caller's tenant");
	tenant = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
							   false, -1);
	ruvllm_spi_check(SPI_finish(), SPI_OK_FINISH, "SPI_finish");
	args[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(text_to_cstring(feedback)));
	args[1] = tenant;
	return run_as_owner("SELECT ruvllm._witness_rate($1, $2)", 2, argtypes, args);
}

/*
 * Runs fn on the given JSON in an internal subtransaction of the caller's transaction, catching
 * its error; returns fn's result, or WITNESS_SUBMIT_FAILED with the error kept.
 */
static int
run_guarded(int (*fn) (text *arg), const char *json, size_t len)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	MemoryContext callcxt;
	volatile int result = WITNESS_SUBMIT_FAILED;

	set_submit_error("00000", "");
	/* Rows come fitted to the queue (witness.py); a rating's correction may be longer. */
	if (json == NULL || len == 0 || len > MaxAllocSize - VARHDRSZ)
	{
		set_submit_error("22023", "ruvllm: witness row or rating is empty or too large");
		return WITNESS_SUBMIT_FAILED;
	}
	if (!IsTransactionState())
	{
		set_submit_error("25P01", "ruvllm: a witness row can only be submitted in a transaction");
		return WITNESS_SUBMIT_FAILED;
	}
	callcxt = AllocSetContextCreate(oldcontext, "ruvllm witness submit", ALLOCSET_DEFAULT_SIZES);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(callcxt);
	PG_TRY();
	{
		result = fn(cstring_to_text_with_len(json, (int) len));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		set_submit_error(unpack_sql_state(edata->sqlerrcode),
						 edata->message ? edata->message : "unknown error");
		FreeErrorData(edata);
		result = WITNESS_SUBMIT_FAILED;
	}
	PG_END_TRY();
	MemoryContextDelete(callcxt);
	return result;
}

/*
 * A witness row from the pipeline, as JSON whose keys are columns of ruvllm.witness. Returns
 * WITNESS_SUBMIT_QUEUED, _WRITTEN (synchronously, in the caller's transaction: it rolls back with
 * it), _DROPPED (the synchronous write refused the row, with a WARNING saying why) or _FAILED.
 */
int
ruvllm_witness_submit(const char *json, size_t len)
{
	return run_guarded(submit_row, json, len);
}

/*
 * An access record (node ids, 16 bytes each) from the search: WITNESS_SUBMIT_QUEUED, or
 * _NOT_QUEUED when the caller must upsert ruvllm.node_access itself (ruvllm.witness_async off,
 * the ring full, no writer that reads access records), or _FAILED.
 */
int
ruvllm_access_submit(const char *ids, size_t len)
{
	return run_guarded(submit_access, ids, len);
}

/*
 * A rating onto a witness row of the caller's tenant: JSON with request_id, created_at, rating,
 * correction and quality (null: unchanged). Returns the rows changed (0 or 1), or _FAILED.
 */
int
ruvllm_witness_rate(const char *json, size_t len)
{
	return run_guarded(rate_row, json, len);
}

PG_FUNCTION_INFO_V1(ruvllm_witness_queue_stats);

/*
 * ruvllm._witness_queue_stats() → this database's queue: what ruvllm_witness_flush waits on and
 * ruvllm_health reports (the counters count witness rows; the byte positions cover access records
 * too). Rows waiting without a writer (kept across a restart) get one started.
 * Columns past those the SQL declares are left out, so an older SQL definition still works.
 */
Datum
ruvllm_witness_queue_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[14] = {0};
	bool		nulls[14] = {0};
	WitnessRing *r = NULL;
	bool		pending = false;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts > lengthof(values))
		elog(ERROR, "ruvllm._witness_queue_stats: more columns than the library knows");
	tupdesc = BlessTupleDesc(tupdesc);

	if (witness_attach() != NULL)
	{
		LWLockAcquire(witness_lock, LW_SHARED);
		r = witness_ring(MyDatabaseId, false);
		if (r != NULL)
		{
			bool		writer = r->writer_procno >= 0;

			values[0] = Int64GetDatum((int64) r->queued);
			values[1] = Int64GetDatum((int64) r->written);
			values[2] = Int64GetDatum((int64) r->rejected);
			values[3] = Int64GetDatum((int64) (r->head - r->tail));
			values[4] = Int32GetDatum(writer ? r->writer_pid : 0);
			nulls[4] = !writer;
			values[5] = Int64GetDatum((int64) r->lost);
			values[6] = Int64GetDatum((int64) (r->queued - r->written));
			values[7] = Int64GetDatum((int64) r->recovered);
			values[8] = Int64GetDatum((int64) r->generation);
			values[9] = TimestampTzGetDatum(r->last_enqueued_at);
			nulls[9] = r->last_enqueued_at == 0;
			values[10] = TimestampTzGetDatum(r->last_written_at);
			nulls[10] = r->last_written_at == 0;
			values[11] = TimestampTzGetDatum(witness_file->server_started_at);
			/* Byte positions: ruvllm_witness_flush waits for access records with them. */
			values[12] = Int64GetDatum((int64) r->head);
			values[13] = Int64GetDatum((int64) r->tail);
			pending = r->head != r->tail && !writer;
		}
		LWLockRelease(witness_lock);
	}
	if (r == NULL)
	{
		for (int i = 0; i < lengthof(values); i++)
			values[i] = Int64GetDatum(0);
		nulls[4] = nulls[8] = nulls[9] = nulls[10] = nulls[11] = true;
	}
	if (pending)
		(void) ensure_writer(r, MyDatabaseId, false);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---------------------------------------------------------------------------------------------
 * The writer
 * ------------------------------------------------------------------------------------------- */

static WitnessRing *writer_ring = NULL;
static uint64 writer_generation = 0;

/* A batch taken from the ring: rows and access records between the ring's tail and end. */
typedef struct WitnessBatch
{
	Datum		rows;			/* text[] */
	int			n;				/* witness rows */
	int			n_access;		/* node ids of the access records, in access_ids and access_at */
	Datum		access_ids;		/* uuid[] */
	Datum		access_at;		/* timestamptz[]: each id's search time */
	uint64		end;			/* the ring's tail once the batch is done */
	uint64		queued;			/* the ring's queued count when the batch was taken */
	uint64		corrupt_rows;	/* rows given up with a corrupt entry */
	int			inserted;		/* set by write_batch_unit */
} WitnessBatch;

static void
writer_detach(int code, Datum arg)
{
	if (writer_ring == NULL)
		return;
	LWLockAcquire(witness_lock, LW_EXCLUSIVE);
	if (writer_ring->writer_procno == MyProcNumber)
	{
		writer_ring->writer_procno = -1;
		writer_ring->writer_pid = 0;
		writer_ring->writer_reads_access = false;
	}
	LWLockRelease(witness_lock);
}

/*
 * Copies up to WITNESS_BATCH rows from the ring's tail into b (in the current memory context),
 * leaving them in the ring until they are committed. Only the writer moves the tail, so a shared
 * lock is enough. A corrupt entry is logged, and it and everything queued after it so far is
 * given up: where the next row starts cannot be known.
 */
static void
take_batch(WitnessBatch *b)
{
	Datum	   *rows = palloc(sizeof(Datum) * WITNESS_BATCH);
	int			ids_room = 256;
	Datum	   *ids = palloc(sizeof(Datum) * ids_room);
	Datum	   *ats = palloc(sizeof(Datum) * ids_room);
	int			entries = 0;
	uint64		pos;
	uint64		head;

	memset(b, 0, sizeof(*b));
	LWLockAcquire(witness_lock, LW_SHARED);
	pos = writer_ring->tail;
	head = writer_ring->head;
	b->queued = writer_ring->queued;
	while (entries < WITNESS_BATCH && pos != head)
	{
		uint32		len;
		bool		access;
		text	   *t;

		if (!entry_at(writer_ring, pos, head, &len, &access))
		{
			b->corrupt_rows = (writer_ring->queued - writer_ring->written) - b->n;
			ereport(LOG,
					(errmsg("ruvllm witness writer: corrupt entry in the queue of database %u (length %u, %llu bytes waiting); %llu rows given up",
							MyDatabaseId, len, (unsigned long long) (head - pos),
							(unsigned long long) b->corrupt_rows)));
			pos = head;
			break;
		}
		entries++;
		if (access)
		{
			TimestampTz at;
			int			n = (len - sizeof(at)) / ACCESS_ID_BYTES;
			char	   *id_bytes = palloc(len - sizeof(at));

			ring_read(writer_ring, pos + sizeof(WitnessEntry), (char *) &at, sizeof(at));
			ring_read(writer_ring, pos + sizeof(WitnessEntry) + sizeof(at), id_bytes, len - sizeof(at));
			if (b->n_access + n > ids_room)
			{
				ids_room = Max(ids_room * 2, b->n_access + n);
				ids = repalloc(ids, sizeof(Datum) * ids_room);
				ats = repalloc(ats, sizeof(Datum) * ids_room);
			}
			for (int i = 0; i < n; i++)
			{
				ids[b->n_access] = PointerGetDatum(id_bytes + i * ACCESS_ID_BYTES);
				ats[b->n_access++] = TimestampTzGetDatum(at);
			}
		}
		else
		{
			t = (text *) palloc(len + VARHDRSZ);
			SET_VARSIZE(t, len + VARHDRSZ);
			ring_read(writer_ring, pos + sizeof(WitnessEntry), VARDATA(t), len);
			rows[b->n++] = PointerGetDatum(t);
		}
		pos += sizeof(WitnessEntry) + len;
	}
	LWLockRelease(witness_lock);
	b->end = pos;
	if (b->n > 0)
		b->rows = PointerGetDatum(construct_array_builtin(rows, b->n, TEXTOID));
	if (b->n_access > 0)
	{
		/* uuid: 16 bytes by reference, char-aligned; timestamptz: an int64 (pg_type). */
		b->access_ids = PointerGetDatum(construct_array(ids, b->n_access, UUIDOID, ACCESS_ID_BYTES,
														false, TYPALIGN_CHAR));
		b->access_at = PointerGetDatum(construct_array(ats, b->n_access, TIMESTAMPTZOID,
													   sizeof(TimestampTz), FLOAT8PASSBYVAL,
													   TYPALIGN_DOUBLE));
	}
}

/*
 * The access records' upsert: as python/ruvllm/memory.py's synchronous one (rows another
 * transaction holds are skipped, not waited for: it is touching them now, too; first accesses are
 * inserted in id order), with one hit per record that names a node and the latest time. Nodes
 * deleted since their search are left out. The writer is superuser: past row-level security.
 */
static const char *const access_upsert_sql =
	"WITH a AS (SELECT u.i AS node_id, pg_catalog.max(u.t) AS at, pg_catalog.count(*) AS n "
	"             FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), "
	"                            pg_catalog.unnest($2::pg_catalog.timestamptz[])) AS u(i, t) "
	"            WHERE EXISTS (SELECT FROM ruvllm.nodes n WHERE n.id OPERATOR(pg_catalog.=) u.i) "
	"            GROUP BY u.i), "
	"free AS (SELECT x.node_id FROM ruvllm.node_access x JOIN a ON x.node_id OPERATOR(pg_catalog.=) a.node_id "
	"          ORDER BY x.node_id FOR UPDATE OF x SKIP LOCKED), "
	"touched AS (UPDATE ruvllm.node_access x "
	"               SET last_accessed = GREATEST(x.last_accessed, a.at), hits = x.hits OPERATOR(pg_catalog.+) a.n "
	"              FROM free JOIN a ON a.node_id OPERATOR(pg_catalog.=) free.node_id "
	"             WHERE x.node_id OPERATOR(pg_catalog.=) free.node_id RETURNING x.node_id) "
	"INSERT INTO ruvllm.node_access (node_id, last_accessed, hits) "
	"SELECT a.node_id, a.at, a.n FROM a "
	" WHERE NOT EXISTS (SELECT FROM ruvllm.node_access x WHERE x.node_id OPERATOR(pg_catalog.=) a.node_id) "
	" ORDER BY a.node_id "
	"ON CONFLICT (node_id) DO NOTHING";

/*
 * Upserts the batch's access records in a subtransaction: if that fails, the accesses are given
 * up (and logged), not the witness rows of the same batch.
 */
static void
write_access(WitnessBatch *b)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			argtypes[2] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[2] = {b->access_ids, b->access_at};

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		ruvllm_spi_check(SPI_execute_with_args(access_upsert_sql, 2, argtypes, args, NULL, false, 0),
						 SPI_OK_INSERT, "upserting ruvllm.node_access");
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		ereport(LOG, (errmsg("ruvllm witness writer: %d node accesses not recorded: %s",
							 b->n_access, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

static bool
extension_installed(void)
{
	ruvllm_spi_check(SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'ruvllm'",
								 true, 1), SPI_OK_SELECT, "looking for the extension");
	return SPI_processed == 1;
}

/* The writer's state table exists from 0.3.0; a database not yet upgraded has none. */
static bool
state_table_exists(void)
{
	bool		isnull;

	ruvllm_spi_check(SPI_execute("SELECT pg_catalog.to_regclass('ruvllm.witness_writer_state') IS NOT NULL",
								 true, 1), SPI_OK_SELECT, "looking for ruvllm.witness_writer_state");
	return SPI_processed == 1 && DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc, 1, &isnull));
}

/* Inside ruvllm_run_in_transaction: inserts the batch and records how far the ring is done. */
static void
write_batch_unit(void *arg)
{
	WitnessBatch *b = (WitnessBatch *) arg;

	b->inserted = 0;
	if (!extension_installed())
	{
		/* The extension may have been dropped since the rows were queued. */
		ereport(LOG, (errmsg("ruvllm witness writer: extension not installed, %d rows discarded", b->n)));
		return;
	}
	if (b->n > 0)
	{
		Oid			argtypes[1] = {TEXTARRAYOID};
		Datum		args[1] = {b->rows};
		bool		isnull;

		ruvllm_spi_check(SPI_execute_with_args("SELECT ruvllm._witness_write($1)", 1, argtypes, args,
											   NULL, false, 1),
						 SPI_OK_SELECT, "ruvllm._witness_write");
		b->inserted = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
												  &isnull));
		if (isnull)
			b->inserted = 0;
	}
	if (b->n_access > 0)
		write_access(b);
	if (state_table_exists())
	{
		Oid			argtypes[5] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
		Datum		args[5];
		uint64		done;

		LWLockAcquire(witness_lock, LW_SHARED);
		done = writer_ring->written;
		LWLockRelease(witness_lock);
		args[0] = Int64GetDatum((int64) writer_generation);
		args[1] = Int64GetDatum((int64) b->end);
		args[2] = Int64GetDatum((int64) b->queued);
		args[3] = Int64GetDatum((int64) (done + b->n + b->corrupt_rows));
		args[4] = Int64GetDatum((int64) b->inserted);
		ruvllm_spi_check(SPI_execute_with_args(
						 "INSERT INTO ruvllm.witness_writer_state AS s (ring_generation, ring_tail, "
						 "rows_queued, rows_done, rows_written_total, last_written_at) "
						 "VALUES ($1, $2, $3, $4, $5, pg_catalog.now()) "
						 "ON CONFLICT (singleton) DO UPDATE SET ring_generation = excluded.ring_generation, "
						 "ring_tail = excluded.ring_tail, rows_queued = excluded.rows_queued, "
						 "rows_done = excluded.rows_done, "
						 "rows_written_total = s.rows_written_total + excluded.rows_written_total, "
						 "last_written_at = CASE WHEN excluded.rows_written_total > 0 "
						 "THEN excluded.last_written_at ELSE s.last_written_at END",
						 5, argtypes, args, NULL, false, 0),
						 SPI_OK_INSERT, "updating ruvllm.witness_writer_state");
	}
}

/*
 * Writes one batch in its own transaction, tried WITNESS_BATCH_TRIES times; then moves the ring's
 * tail past it. Rows of a batch that keeps failing are logged as lost, and the writer goes on.
 */
static void
write_batch(WitnessBatch *b)
{
	ErrorData  *edata = NULL;
	int			tries = 0;

	for (;;)
	{
		edata = ruvllm_run_in_transaction("ruvllm: writing witness rows", write_batch_unit, b);
		if (edata == NULL || ++tries >= WITNESS_BATCH_TRIES || ShutdownRequestPending)
			break;
		ereport(LOG, (errmsg("ruvllm witness writer: writing %d rows failed, trying again: %s",
							 b->n, edata->message)));
		FreeErrorData(edata);
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	if (edata != NULL)
	{
		ereport(LOG, (errmsg("ruvllm witness writer: %d rows lost: %s", b->n, edata->message)));
		FreeErrorData(edata);
		b->inserted = 0;
	}
	LWLockAcquire(witness_lock, LW_EXCLUSIVE);
	writer_ring->tail = b->end;
	writer_ring->written += b->n + b->corrupt_rows;
	writer_ring->lost += (b->n - b->inserted) + b->corrupt_rows;
	if (b->inserted > 0)
		writer_ring->last_written_at = GetCurrentTimestamp();
	LWLockRelease(witness_lock);
}

/* Inside ruvllm_run_in_transaction: where the last writer's committed batches got to. */
static void
read_resume_point_unit(void *arg)
{
	uint64	   *resume = (uint64 *) arg;
	bool		isnull;

	*resume = 0;
	if (!extension_installed() || !state_table_exists())
		return;
	ruvllm_spi_check(SPI_execute("SELECT ring_generation, ring_tail FROM ruvllm.witness_writer_state",
								 true, 1), SPI_OK_SELECT, "reading ruvllm.witness_writer_state");
	if (SPI_processed == 1 &&
		(uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) ==
		writer_generation && !isnull)
		*resume = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
													   &isnull));
}

/*
 * A batch committed just before a crash is still in the ring (its tail had not moved yet): the
 * state table says so, and the ring moves past it instead of writing it twice.
 */
static void
skip_committed_rows(void)
{
	uint64		resume = 0;
	ErrorData  *edata = ruvllm_run_in_transaction("ruvllm: resuming the witness queue",
												  read_resume_point_unit, &resume);

	if (edata != NULL)
	{
		ereport(LOG, (errmsg("ruvllm witness writer: could not read where writing stopped: %s",
							 edata->message)));
		FreeErrorData(edata);
		return;
	}
	LWLockAcquire(witness_lock, LW_EXCLUSIVE);
	if (resume > writer_ring->tail && resume <= writer_ring->head)
	{
		uint64		valid_end;
		uint64		rows = count_entries(writer_ring, writer_ring->tail, resume, &valid_end);

		if (valid_end == resume)
		{
			writer_ring->tail = resume;
			writer_ring->written += rows;
			ereport(LOG, (errmsg("ruvllm witness writer: %llu rows committed before the restart are not written again",
								 (unsigned long long) rows)));
		}
	}
	LWLockRelease(witness_lock);
}

void
ruvllm_witness_writer_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	TimestampTz idle_since = GetCurrentTimestamp();
	MemoryContext batch_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	/* A server-wide statement or lock timeout must not make the writer give rows up. */
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);

	if (witness_attach() == NULL)
		proc_exit(1);
	LWLockAcquire(witness_lock, LW_EXCLUSIVE);
	writer_ring = witness_ring(dboid, false);
	if (writer_ring != NULL && writer_ring->writer_procno < 0)
	{
		writer_ring->writer_procno = MyProcNumber;
		writer_ring->writer_pid = MyProcPid;
		writer_ring->writer_starting = false;
		writer_ring->writer_reads_access = true;
		writer_generation = writer_ring->generation;
	}
	else
		writer_ring = NULL;		/* another writer serves this database */
	LWLockRelease(witness_lock);
	if (writer_ring == NULL)
		proc_exit(0);
	before_shmem_exit(writer_detach, (Datum) 0);
	/* Each batch's rows are copied here, and all of it freed before the next batch. */
	batch_cxt = AllocSetContextCreate(TopMemoryContext, "ruvllm witness batch", ALLOCSET_DEFAULT_SIZES);
	skip_committed_rows();

	for (;;)
	{
		WitnessBatch batch;
		MemoryContext old;

		ResetLatch(MyLatch);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(batch_cxt);
		old = MemoryContextSwitchTo(batch_cxt);
		take_batch(&batch);
		if (batch.end != writer_ring->tail)
		{
			write_batch(&batch);
			MemoryContextSwitchTo(old);
			idle_since = GetCurrentTimestamp();
			continue;			/* more may be waiting: drain before sleeping */
		}
		MemoryContextSwitchTo(old);

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

			LWLockAcquire(witness_lock, LW_EXCLUSIVE);
			empty = writer_ring->head == writer_ring->tail;
			if (empty)
			{
				writer_ring->writer_procno = -1;
				writer_ring->writer_pid = 0;
				writer_ring->writer_reads_access = false;
				writer_ring = NULL;
			}
			LWLockRelease(witness_lock);
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
