/*
 * support.h: what the background workers (worker.c, witness_queue.c) and the SQL-callable C
 * functions share: attaching to a named shared memory segment, running one unit of work in its own
 * transaction with its errors caught, and SPI calls whose result codes are checked.
 */
#ifndef RUVLLM_SUPPORT_H
#define RUVLLM_SUPPORT_H

#include "storage/lwlock.h"
#include "utils/elog.h"

/* Every named segment of ruvllm begins with this: its lock, in a tranche of its own. */
typedef struct RuvllmShmemHeader
{
	int			tranche_id;
	LWLock		lock;
} RuvllmShmemHeader;

/*
 * Attaches to (creating on first use in this server's life) the named DSM segment of size bytes.
 * init, run once per server life by the first process to attach, sets up what follows the header;
 * the header's lock is ready when it runs.
 */
extern void *ruvllm_attach_shmem(const char *name, Size size, void (*init) (void *segment));

/*
 * Runs fn(arg) in a transaction of its own, with a snapshot and an SPI connection; activity is what
 * pg_stat_activity shows meanwhile. Returns NULL when it committed; otherwise the transaction is
 * rolled back and the error is returned (allocated in the caller's memory context), for the caller
 * to log as it sees fit. For background workers, outside any transaction.
 */
extern ErrorData *ruvllm_run_in_transaction(const char *activity, void (*fn) (void *arg), void *arg);

/* SPI_connect, raising an error if it fails. */
extern void ruvllm_spi_connect(void);

/* Raises an error unless an SPI call's result code rc is expected; what names the call. */
extern void ruvllm_spi_check(int rc, int expected, const char *what);

#endif
