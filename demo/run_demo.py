"""The demo `make demo` runs: load the small knowledge base in demo/knowledge, then ask ruvllm.

Runs inside the ruvllm root against the local server (`make up`). It uses the richest pipeline the
installed extension has: ruvllm_query when it exists, the generation smoke function before that.

`--docs postgres` (`make demo DOCS=postgres`) also loads a slice of the PostgreSQL 17 manual
(bench/pgdocs.py: the server configuration chapter, vacuuming, backup and WAL, a few commands and
types; ~540 chunks, 1-3 min the first time, skipped when already loaded), then asks one real
question of it and prints others to try.
"""
import argparse
import json
import pathlib
import sys
import time

import psycopg

KNOWLEDGE = pathlib.Path(__file__).parent / "knowledge"
QUESTION = "How do I rotate the witness log?"
# A question demo/knowledge does not answer: ruvllm says so instead of inventing an answer.
UNANSWERABLE = "Who wrote the opera Carmen?"
DOCS_PAGES = ("runtime-config,routine-vacuuming,continuous-archiving,backup,wal-,sql-vacuum,"
              "sql-createindex,indexes-types,datatype-numeric,datatype-character")
DOCS_QUESTIONS = ("What is the default value of checkpoint_timeout?",
                  "Which lock does VACUUM FULL take on a table?",
                  "How much memory may a sort use before it spills to disk, by default?")


def has_function(conn, name):
    return conn.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", (name,)).fetchone()[0] > 0


def load_knowledge(conn):
    docs = sorted(KNOWLEDGE.glob("*.md"))
    if not has_function(conn, "ruvllm_ingest"):
        print(f"knowledge base: {len(docs)} documents in demo/knowledge (memory arrives with ruvllm_ingest)")
        return
    started = time.perf_counter()
    for doc in docs:
        conn.execute(
            "SELECT ruvllm_ingest(%s, 'Document', %s, '{}'::jsonb)",
            (doc.read_text(encoding="utf-8"), f"demo/knowledge/{doc.name}"))
    print(f"knowledge base: {len(docs)} documents ingested in {time.perf_counter() - started:.1f}s")


def load_postgres_docs(conn, args):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))
    import pgdocs
    have = conn.execute("SELECT count(*) FROM ruvllm.nodes WHERE source LIKE '%%.html#%%'").fetchone()[0]
    if have:
        print(f"PostgreSQL manual: {have} chunks already in memory")
        return
    if not (pgdocs.MANUAL / "index.html").exists():
        sys.exit(f"no PostgreSQL manual at {pgdocs.MANUAL} (Debian package postgresql-doc-17)")
    sections = pgdocs.load_sections(pgdocs.slice_pages(DOCS_PAGES))
    print(f"PostgreSQL manual: ingesting {len(sections)} sections of {DOCS_PAGES.count(',') + 1} "
          "chapters (1-3 min)", flush=True)

    def connect():
        return psycopg.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user,
                               autocommit=True)
    secs = pgdocs.ingest_parallel(connect, sections, jobs=2)
    n = conn.execute("SELECT count(*) FROM ruvllm.nodes WHERE source LIKE '%%.html#%%'").fetchone()[0]
    print(f"PostgreSQL manual: {n} chunks ingested in {secs:.0f}s (source = page.html#section)")


def ask(conn, question):
    started = time.perf_counter()
    if has_function(conn, "ruvllm_query"):
        print(f"\nSELECT ruvllm_query('{question}');\n")
        result = conn.execute("SELECT ruvllm_query(%s)", (question,)).fetchone()[0]
        print(result["text"])
        if result.get("abstained"):
            print("\n(declined: no memory is relevant enough; nothing was generated)")
        elif result.get("grounded") is False:
            print("\n(the model's answer was not supported by its evidence: this is the evidence itself)")
        sources = result.get("sources", [])
        if sources:
            print("\nsources ([n] in the answer is source n):")
        for n, source in enumerate(sources, start=1):
            name = conn.execute("SELECT source FROM ruvllm.nodes WHERE id = %s", (source["id"],)).fetchone()
            print(f"  [{n}] {name[0] if name else ''}  attention {source['score']:.3f}  "
                  f"{' '.join(source['excerpt'].split())[:70]}...")
            for span in source.get("evidence", []):
                print(f"       evidence: {span[:110]}{'...' if len(span) > 110 else ''}")
        routing = result.get("routing", {})
        if routing.get("model") == "extractive":
            print("\nrouting: the extractive tier (the best evidence span, verbatim; nothing generated), "
                  f"confidence {routing.get('confidence'):.2f}"
                  f"{' (safe default, ruvllm.default_model: the router is not trained yet)' if routing.get('used_default') else ''}")
        elif routing.get("model"):
            print(f"\nrouting: model {routing['model']}, context {routing.get('context_size')} tokens, "
                  f"temperature {routing.get('temperature'):.2f}, top_p {routing.get('top_p'):.2f}, "
                  f"confidence {routing.get('confidence'):.2f}"
                  f"{' (safe default: the router is not trained yet)' if routing.get('used_default') else ''}")
        print(f"confidence {result['confidence']:.2f}, grounded {result.get('grounded')}, "
              f"abstained {result.get('abstained')}")
        print("latency_ms:", json.dumps(result.get("latency_ms", {})))
        conn.execute("SELECT ruvllm_witness_flush()")
        row = conn.execute(
            "SELECT model, total_ms, cardinality(context_node_ids), tableoid::regclass, prompt_tokens, "
            "completion_tokens FROM ruvllm.witness WHERE request_id = %s", (result["request_id"],)).fetchone()
        if row:
            print(f"witness: request {result['request_id']} in {row[3]}: model {row[0]}, "
                  f"{row[1]:.0f} ms, {row[2]} context nodes, {row[4]} prompt tokens, {row[5]} generated")
    else:
        # Until ruvllm_query lands: the two halves it will join, memory search and generation.
        print(f"\nSELECT * FROM ruvllm_search('{question}', 3, 1);\n")
        rows = conn.execute("SELECT hop, via_rel, distance, content FROM ruvllm_search(%s, 3, 1)",
                            (question,)).fetchall()
        for hop, via, distance, content in rows:
            print(f"  hop {hop} {via or '':<9} {distance:.3f}  {' '.join(content.split())[:80]}")
        context = "\n".join(content for hop, _via, _d, content in rows if hop == 0)
        prompt = f"Answer from this context.\n\nContext:\n{context}\n\nQuestion: {question}"
        print(f"\nSELECT ruvllm_generate(<question + the hop-0 context>, 96);\n")
        print(conn.execute("SELECT ruvllm_generate(%s, 96)", (prompt,)).fetchone()[0])
    print(f"\n[{time.perf_counter() - started:.2f}s]")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="/var/run/postgresql")
    parser.add_argument("--port", type=int, default=5433)
    parser.add_argument("--dbname", default="ruvllm")
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--question", default=None)
    parser.add_argument("--unanswerable", default=UNANSWERABLE,
                        help="a second question, one memory cannot answer ('' to skip it)")
    parser.add_argument("--docs", choices=("postgres",), help="also load a slice of the PostgreSQL manual")
    args = parser.parse_args()
    with psycopg.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user,
                         autocommit=True) as conn:
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'").fetchone()
        if version is None:
            sys.exit("ruvllm is not installed in this database: run make up")
        print(f"ruvllm {version[0]} on {conn.execute('SHOW server_version').fetchone()[0]}")
        load_knowledge(conn)
        if args.docs == "postgres":
            load_postgres_docs(conn, args)
        ask(conn, args.question or (DOCS_QUESTIONS[0] if args.docs == "postgres" else QUESTION))
        if args.unanswerable and has_function(conn, "ruvllm_query"):
            ask(conn, args.unanswerable)
        if args.docs == "postgres":
            print("\nMore questions the manual answers (make psql SQL=\"SELECT ruvllm_query('...')->>'text'\"):")
            for q in DOCS_QUESTIONS[1:]:
                print(f"  {q}")

if __name__ == "__main__":
    main()
