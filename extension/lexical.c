/*
 * lexical.c: BM25 scoring of a node's tsvector for a question's terms, and the share of the
 * question's term weight a node holds (python/ruvllm/lexical.py builds the statement around them).
 *
 * Why in C: scored in SQL, each candidate's query terms were found by setweight + ts_filter +
 * unnest and joined to the terms' IDF, which copied the whole tsvector twice and built a row per
 * term for every candidate: ~20 us a candidate, most of a hybrid search's time at 100K nodes
 * (bench/retrieval). Here each query term is a binary search in the tsvector's sorted entries.
 *
 * The terms and their IDF come as two parallel arrays that are the same for every row of one
 * statement; they are taken apart once per call site (fn_extra) and again only when their bytes
 * change.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "tsearch/ts_type.h"
#include "tsearch/ts_utils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "varatt.h"

typedef struct QueryTerms
{
	struct varlena *terms_bytes;	/* copies of the arrays the terms were read from */
	struct varlena *idf_bytes;
	int			n;
	char	  **lexeme;
	int		   *len;
	double	   *idf;
} QueryTerms;

static bool
same_bytes(struct varlena *a, struct varlena *b)
{
	return a != NULL && VARSIZE_ANY(a) == VARSIZE_ANY(b) && memcmp(a, b, VARSIZE_ANY(a)) == 0;
}

static struct varlena *
copy_bytes(MemoryContext cxt, struct varlena *v)
{
	struct varlena *copy = MemoryContextAlloc(cxt, VARSIZE_ANY(v));

	memcpy(copy, v, VARSIZE_ANY(v));
	return copy;
}

/*
 * Argument n as it came, detoasted only when stored out of line or compressed: a short inline
 * array is compared with the cached one as it is (PG_GETARG_ARRAYTYPE_P would copy it for every
 * row).
 */
static struct varlena *
inline_arg(FunctionCallInfo fcinfo, int n)
{
	struct varlena *v = (struct varlena *) PG_GETARG_POINTER(n);

	return VARATT_IS_EXTERNAL(v) || VARATT_IS_COMPRESSED(v) ? PG_DETOAST_DATUM(PG_GETARG_DATUM(n)) : v;
}

/* The query terms of argument 1 (text[]) and their IDF, argument 2 (float8[]), cached. */
static QueryTerms *
query_terms(FunctionCallInfo fcinfo)
{
	QueryTerms *q = (QueryTerms *) fcinfo->flinfo->fn_extra;
	struct varlena *terms_bytes = inline_arg(fcinfo, 1);
	struct varlena *idf_bytes = inline_arg(fcinfo, 2);
	ArrayType  *terms,
			   *idf;
	MemoryContext cxt = fcinfo->flinfo->fn_mcxt;
	Datum	   *term_values,
			   *idf_values;
	bool	   *term_nulls,
			   *idf_nulls;
	int			nterms,
				nidf;

	if (q != NULL && same_bytes(q->terms_bytes, terms_bytes) && same_bytes(q->idf_bytes, idf_bytes))
		return q;
	terms = DatumGetArrayTypeP(PointerGetDatum(terms_bytes));
	idf = DatumGetArrayTypeP(PointerGetDatum(idf_bytes));

	if (ARR_NDIM(terms) > 1 || ARR_NDIM(idf) > 1)
		ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
						errmsg("query terms and their IDF must be one-dimensional arrays")));
	deconstruct_array_builtin(terms, TEXTOID, &term_values, &term_nulls, &nterms);
	deconstruct_array_builtin(idf, FLOAT8OID, &idf_values, &idf_nulls, &nidf);
	if (nterms != nidf)
		ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
						errmsg("%d query terms but %d IDF values", nterms, nidf)));

	if (q == NULL)
		q = MemoryContextAllocZero(cxt, sizeof(QueryTerms));
	else
	{
		/* The old terms are left in fn_mcxt: arrays change at most once per statement. */
		q->terms_bytes = q->idf_bytes = NULL;
	}
	q->n = nterms;
	q->lexeme = MemoryContextAlloc(cxt, sizeof(char *) * Max(nterms, 1));
	q->len = MemoryContextAlloc(cxt, sizeof(int) * Max(nterms, 1));
	q->idf = MemoryContextAlloc(cxt, sizeof(double) * Max(nterms, 1));
	for (int i = 0; i < nterms; i++)
	{
		text	   *t;

		if (term_nulls[i] || idf_nulls[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("query terms and their IDF must not contain NULL")));
		t = DatumGetTextPP(term_values[i]);
		q->len[i] = VARSIZE_ANY_EXHDR(t);
		q->lexeme[i] = MemoryContextAlloc(cxt, Max(q->len[i], 1));
		memcpy(q->lexeme[i], VARDATA_ANY(t), q->len[i]);
		q->idf[i] = DatumGetFloat8(idf_values[i]);
	}
	q->terms_bytes = copy_bytes(cxt, terms_bytes);
	q->idf_bytes = copy_bytes(cxt, idf_bytes);
	fcinfo->flinfo->fn_extra = q;
	return q;
}

/*
 * How often the lexeme occurs in the tsvector: its positions, 1 for an entry without positions
 * (a stripped tsvector; what unnest(tsvector) reports as NULL positions, counted as 1), 0 when
 * absent. The entries are sorted by tsCompareString, so a binary search finds it.
 */
static int
term_frequency(TSVector doc, const char *lexeme, int len)
{
	WordEntry  *entries = ARRPTR(doc);
	char	   *strings = STRPTR(doc);
	int			lo = 0,
				hi = doc->size - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		WordEntry  *e = &entries[mid];
		int			cmp = tsCompareString(strings + e->pos, e->len, (char *) lexeme, len, false);

		if (cmp == 0)
			return (e->haspos && POSDATALEN(doc, e) > 0) ? POSDATALEN(doc, e) : 1;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return 0;
}

PG_FUNCTION_INFO_V1(ruvllm_bm25);

/*
 * ruvllm._bm25(doc tsvector, terms text[], idf float8[], avgdl float8, k1 float8, b float8):
 *   sum over the terms in doc of idf * tf (k1 + 1) / (tf + k1 (1 - b + b |doc| / avgdl)),
 * |doc| the number of distinct lexemes (length(tsvector)); 0 when no term is in doc.
 */
Datum
ruvllm_bm25(PG_FUNCTION_ARGS)
{
	TSVector	doc = PG_GETARG_TSVECTOR(0);
	QueryTerms *q = query_terms(fcinfo);
	double		avgdl = PG_GETARG_FLOAT8(3);
	double		k1 = PG_GETARG_FLOAT8(4);
	double		b = PG_GETARG_FLOAT8(5);
	double		norm = k1 * (1 - b + b * doc->size / avgdl);
	double		score = 0;

	for (int i = 0; i < q->n; i++)
	{
		int			tf = term_frequency(doc, q->lexeme[i], q->len[i]);

		if (tf > 0)
			score += q->idf[i] * (tf * (k1 + 1)) / (tf + norm);
	}
	PG_FREE_IF_COPY(doc, 0);
	PG_RETURN_FLOAT8(score);
}

PG_FUNCTION_INFO_V1(ruvllm_term_coverage);

/*
 * ruvllm._term_coverage(doc tsvector, terms text[], idf float8[]): the share of the terms' IDF
 * that doc contains; NULL when doc contains none of them or their IDF sums to 0 (as the SQL form
 * it replaces, a sum over no rows divided by NULLIF(total, 0), gave).
 */
Datum
ruvllm_term_coverage(PG_FUNCTION_ARGS)
{
	TSVector	doc = PG_GETARG_TSVECTOR(0);
	QueryTerms *q = query_terms(fcinfo);
	double		held = 0,
				total = 0;
	bool		any = false;

	for (int i = 0; i < q->n; i++)
	{
		total += q->idf[i];
		if (term_frequency(doc, q->lexeme[i], q->len[i]) > 0)
		{
			held += q->idf[i];
			any = true;
		}
	}
	PG_FREE_IF_COPY(doc, 0);
	if (!any || total == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(held / total);
}
