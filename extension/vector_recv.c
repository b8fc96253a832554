/*
 * vector_recv.c: a query vector passed to a statement in pgvector's binary form (vector_send's
 * bytes, as a bytea parameter) instead of its text: PL/Python converts a parameter from text
 * only, and formatting 384 floats as text and parsing them again cost more than the search
 * statement's own work on a small memory.
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/lsyscache.h"
#include "varatt.h"

typedef struct VectorReceive
{
	FmgrInfo	receive;
	Oid			typioparam;
} VectorReceive;

PG_FUNCTION_INFO_V1(ruvllm_vector_recv);

/*
 * ruvllm._vector_recv(bytes bytea) RETURNS vector: the value the function's return type's
 * binary input (pgvector's vector_recv, which checks the dimensions and that every element is
 * finite) makes of the bytes; every byte must be read.
 */
Datum
ruvllm_vector_recv(PG_FUNCTION_ARGS)
{
	bytea	   *bytes = PG_GETARG_BYTEA_PP(0);
	VectorReceive *r = (VectorReceive *) fcinfo->flinfo->fn_extra;
	StringInfoData buf;
	Datum		result;

	if (r == NULL)
	{
		Oid			receive;

		r = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(VectorReceive));
		getTypeBinaryInputInfo(get_func_rettype(fcinfo->flinfo->fn_oid), &receive, &r->typioparam);
		fmgr_info_cxt(receive, &r->receive, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = r;
	}
	initReadOnlyStringInfo(&buf, VARDATA_ANY(bytes), VARSIZE_ANY_EXHDR(bytes));
	result = ReceiveFunctionCall(&r->receive, &buf, r->typioparam, -1);
	if (buf.cursor != buf.len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("%d bytes left over after the vector", buf.len - buf.cursor)));
	PG_RETURN_DATUM(result);
}
