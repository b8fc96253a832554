"""The demo `make demo` runs: load the small knowledge base in demo/knowledge, then ask ruvllm.

Runs inside the ruvllm root against the local server (`make up`). It uses the richest pipeline the
installed extension has: ruvllm_query when it exists, the generation smoke function before that.
"""
import argparse
import json
import pathlib
import sys
import time

import psycopg

KNOWLEDGE = pathlib.Path(__file__).parent / "knowledge"
QUESTION = "How do I rotate the witness log?"


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


def ask(conn, question):
    print(f"\nSELECT ruvllm_query('{question}');\n")
    started = time.perf_counter()
    if has_function(conn, "ruvllm_query"):
        result = conn.execute("SELECT ruvllm_query(%s)", (question,)).fetchone()[0]
        print(result["text"])
        print("\nsources:")
        for source in result.get("sources", []):
            print(f"  {source['score']:.3f}  {source['excerpt'][:90]}")
        print("routing:", json.dumps(result.get("routing", {})))
        print("latency_ms:", json.dumps(result.get("latency_ms", {})))
    else:
        text = conn.execute("SELECT ruvllm_generate(%s, 96)", (question,)).fetchone()[0]
        print(text)
        print("\n(answered by ruvllm_generate with SmolLM2-135M-Instruct, without memory:"
              " ruvllm_query is not in this version yet)")
    print(f"\n[{time.perf_counter() - started:.2f}s]")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="/var/run/postgresql")
    parser.add_argument("--port", type=int, default=5433)
    parser.add_argument("--dbname", default="ruvllm")
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--question", default=QUESTION)
    args = parser.parse_args()
    with psycopg.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user,
                         autocommit=True) as conn:
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'").fetchone()
        if version is None:
            sys.exit("ruvllm is not installed in this database: run make up")
        print(f"ruvllm {version[0]} on {conn.execute('SHOW server_version').fetchone()[0]}")
        load_knowledge(conn)
        ask(conn, args.question)


if __name__ == "__main__":
    main()
