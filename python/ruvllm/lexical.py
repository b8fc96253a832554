"""Lexical search inside PostgreSQL: BM25 over the full-text lexemes of ruvllm.nodes.

ruvllm.nodes.lexemes is a generated tsvector (configuration english) with a GIN index. A
question's terms are the lexemes of to_tsvector(english, question), computed in SQL from the
question as a parameter: user text never becomes tsquery syntax. The terms are ORed (a
natural-language question rarely has all its words in the passage that answers it; websearch's AND
finds nothing for most questions), and the OR is built inside SQL from the lexemes, each quoted
(quotes and backslashes doubled), so no operator, prefix mark or weight in the question reaches
the query parser.

Scoring is BM25 (k1 = 1.2, b = 0.75) with the tenant's document frequencies from
ruvllm.lexical_stats and the node's distinct lexemes as its length. To bound the work on common
words, the GIN probe uses only the rarest terms whose documents fit PROBE_DOCS (at least the rarest
one); every query term still counts in the score of the nodes found. At most MAX_TERMS terms (the
rarest) are used.

lexical_ctes gives the statement as CTEs over $2 (tenant) and $3 (question) and the filter on
alias n, to be joined into one candidate statement (memory.py); COVERAGE is each candidate's share
of the question's term weight (IDF), which abstention reads (abstention.question_support).
"""
import math

K1 = 1.2
B = 0.75
MAX_TERMS = 64
PROBE_DOCS = 1000      # documents the probe terms may match together (document frequencies)
MATCH_LIMIT = 2000     # nodes scored at most (the statistics may lag the table)
CONFIG = "english"


def bm25(term_frequencies, doc_length, idf, avgdl, k1=K1, b=B):
    """The BM25 score ruvllm._bm25 (extension/lexical.c) computes in SQL, as the reference its
    tests compare with: term_frequencies {lexeme: occurrences in the node}, doc_length the node's
    distinct lexemes, idf {query lexeme: IDF}."""
    norm = k1 * (1 - b + b * doc_length / avgdl)
    return sum(w * term_frequencies[t] * (k1 + 1) / (term_frequencies[t] + norm)
               for t, w in idf.items() if term_frequencies.get(t, 0) > 0)


def idf(docs, df):
    """BM25's IDF of a term in df of docs nodes (the `weighted` CTE below): ln(1 + (N - df + 0.5) / (df + 0.5))."""
    return math.log(1 + (max(docs - df, 0) + 0.5) / (df + 0.5))


def lexical_ctes(filter_sql, depth):
    """The CTEs `terms ... lexical` (id, score), the depth best, for one candidate statement.
    filter_sql is memory's fixed filter text on alias n (no input in it)."""
    return f"""
    terms AS (
        SELECT t.lexeme, GREATEST(COALESCE(sum(s.docs), 0), 0)::float8 AS df
          FROM unnest(pg_catalog.tsvector_to_array(
                   pg_catalog.to_tsvector('{CONFIG}'::regconfig, $3::text))) AS t(lexeme)
          LEFT JOIN ruvllm.lexical_stats s ON s.tenant = $2 AND s.lexeme = t.lexeme
         GROUP BY t.lexeme
         ORDER BY 2, 1
         LIMIT {MAX_TERMS}
    ), corpus AS (
        SELECT GREATEST(COALESCE(sum(docs), 0), 1)::float8 AS n,
               GREATEST(COALESCE(sum(lexemes), 0), 1)::float8 / GREATEST(COALESCE(sum(docs), 0), 1) AS avgdl
          FROM ruvllm.lexical_stats WHERE tenant = $2 AND lexeme = ''
    ), weighted AS (
        SELECT t.lexeme, pg_catalog.ln(1 + (GREATEST(c.n - t.df, 0) + 0.5) / (t.df + 0.5)) AS idf,
               sum(t.df) OVER (ORDER BY t.df, t.lexeme) - t.df AS rarer_docs
          FROM terms t, corpus c
    ), probe AS (
        SELECT pg_catalog.string_agg(
                   '''' || pg_catalog.replace(pg_catalog.replace(lexeme, '\\', '\\\\'), '''', '''''') || '''',
                   ' | ')::pg_catalog.tsquery AS q
          FROM weighted WHERE rarer_docs < {PROBE_DOCS} OR rarer_docs = 0
    ), matched AS (
        SELECT n.id, n.lexemes FROM ruvllm.nodes n, probe
         WHERE n.tenant = $2 AND n.lexemes OPERATOR(pg_catalog.@@) probe.q {filter_sql}
         LIMIT {MATCH_LIMIT}
    ), query_lexemes AS (
        SELECT pg_catalog.array_agg(lexeme) AS lexemes, pg_catalog.array_agg(idf) AS idf FROM weighted
    ), lexical AS (
        SELECT m.id, ruvllm._bm25(m.lexemes, q.lexemes, q.idf, c.avgdl, {K1}, {B}) AS score
          FROM matched m, query_lexemes q, corpus c
         ORDER BY 2 DESC, 1
         LIMIT {int(depth)}
    )"""


# Of the question's terms' IDF, the share node n contains (NULL for a question without terms, and
# for a node with none of them): similarity alone does not tell "the default of
# checkpoint_timeout" from "the default of turbo_vacuum_mode", a term no memory holds. Over the
# rows of lexical_ctes' statement.
COVERAGE = """ruvllm._term_coverage(n.lexemes, (SELECT lexemes FROM query_lexemes),
                                      (SELECT idf FROM query_lexemes))"""


# Ingestion appends the new nodes' counts (see ruvllm.lexical_stats).
COUNT_NEW_NODES = """
    INSERT INTO ruvllm.lexical_stats (tenant, lexeme, docs, lexemes)
    SELECT tenant, '', count(*), sum(pg_catalog.length(lexemes)) FROM ruvllm.nodes
     WHERE id = ANY($1::uuid[]) GROUP BY tenant
    UNION ALL
    SELECT n.tenant, l.lexeme, count(*), 0
      FROM ruvllm.nodes n, unnest(pg_catalog.tsvector_to_array(n.lexemes)) AS l(lexeme)
     WHERE n.id = ANY($1::uuid[]) GROUP BY n.tenant, l.lexeme"""
