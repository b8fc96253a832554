/*
 * support.c: see support.h.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/dsm_registry.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "support.h"

/* GetNamedDSMSegment's callback takes no argument of ours: the caller's init travels here. */
static void (*pending_init) (void *segment) = NULL;

static void
shmem_init(void *segment)
{
	RuvllmShmemHeader *hdr = (RuvllmShmemHeader *) segment;

	hdr->tranche_id = LWLockNewTrancheId();
	LWLockInitialize(&hdr->lock, hdr->tranche_id);
	if (pending_init != NULL)
		pending_init(segment);
}

void *
ruvllm_attach_shmem(const char *name, Size size, void (*init) (void *segment))
{
	RuvllmShmemHeader *hdr;
	bool		found;

	pending_init = init;
	hdr = GetNamedDSMSegment(name, size, shmem_init, &found);
	pending_init = NULL;
	LWLockRegisterTranche(hdr->tranche_id, name);
	return hdr;
}

ErrorData *
ruvllm_run_in_transaction(const char *activity, void (*fn) (void *arg), void *arg)
{
	MemoryContext callercxt = CurrentMemoryContext;
	ErrorData  *volatile error = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	PG_TRY();
	{
		ruvllm_spi_connect();
		fn(arg);
		ruvllm_spi_check(SPI_finish(), SPI_OK_FINISH, "SPI_finish");
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(callercxt);
		error = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(callercxt);
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
	return error;
}

void
ruvllm_spi_connect(void)
{
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "ruvllm: SPI_connect failed: %s", SPI_result_code_string(rc));
}

void
ruvllm_spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "ruvllm: %s: %s (expected %s)", what, SPI_result_code_string(rc),
			 SPI_result_code_string(expected));
}
