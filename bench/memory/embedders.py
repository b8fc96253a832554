#!/usr/bin/env python3
"""The embedding candidates side by side, in one process each, interleaved (issue 16, item 1):

    python3 bench/memory/embedders.py [--queries 300] [--docs 500] [--candidates numpy,llama,llama-f32]

Candidates: numpy (ruvllm.embedder = numpy), llama (the default: llama.cpp over the f16 GGUF),
llama-f32 and llama-q8_0 (the same file at another dtype; q8_0 is ~2x faster again but misses
the 0.9999 agreement bar). llama here is llama.cpp alone (no bulk hand-off to numpy), so its
docs/s is llama.cpp's own.

For each candidate: p50/p90 of one 9-word query (embed_one; every candidate embeds query i before
any embeds query i+1, the order rotating), docs/s over 500 two-sentence documents in one embed()
call (each candidate in turn, three rounds, the best kept), the minimum cosine against
sentence-transformers' vectors (tests/fixtures/minilm_reference.json), and the RSS one fresh
process adds by loading the candidate and embedding (measured in a child process per candidate).
Outside PostgreSQL: bench/memory's ruvllm_embed rows give the same in a backend.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # bench/, for topics.py

QUERIES = [
    "how do I make the nightly backup job faster",
    "what does the checkpoint timeout setting change here",
    "which index type fits a column of geographic points",
    "why is my replication slot keeping so much WAL",
    "when should autovacuum run on a busy table",
]  # 9 words each
BLOCK = 10


def make(name):
    from ruvllm import embedding as E
    if name == "numpy":
        return E.Embedder(E.find_model_dir())
    from ruvllm import embedding_llama as EL
    dtype = name.split("-", 1)[1] if "-" in name else EL.DTYPE
    return EL.LlamaEmbedder(E.find_model_dir(), dtype=dtype, bulk_tokens=None)


def rss_mib():
    """(RssAnon, RssFile) of this process in MiB: private memory, and mapped file pages (the
    model files, shared by every process that maps them)."""
    got = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            got[key] = int(rest.split()[0]) / 1024
    return np.array([got["RssAnon"], got["RssFile"]])


def child_rss(name):
    """RSS a fresh process adds: imports and model load, then a query and a 500-doc batch."""
    import corpus
    docs = [t for t, _ in corpus.documents(500, seed=1)]
    import tokenizers  # noqa: F401  (both candidates need it: not charged to either)
    base = rss_mib()
    emb = make(name)
    emb.embed_one(QUERIES[0])
    after_query = rss_mib()
    emb.embed(docs)
    print(json.dumps({"after_query": list(after_query - base), "after_batch": list(rss_mib() - base)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--candidates", default="numpy,llama,llama-f32,llama-q8_0")
    ap.add_argument("--child-rss")
    args = ap.parse_args()
    if args.child_rss:
        child_rss(args.child_rss)
        return
    import corpus
    names = args.candidates.split(",")
    ref = json.loads((REPO / "tests/fixtures/minilm_reference.json").read_text())
    cases = ref["cases"]
    docs = [t for t, _ in corpus.documents(args.docs, seed=1)]
    t0 = time.perf_counter()
    embs = {}
    for n in names:
        t0 = time.perf_counter()
        embs[n] = make(n)
        print(f"{n}: loaded in {time.perf_counter() - t0:.2f} s", flush=True)
    ids = embs[names[0]].tokenize([QUERIES[0]])[0][0]
    print(f"query: {len(QUERIES[0].split())} words, {len(ids)} tokens; "
          f"docs: {len(docs)}, mean {np.mean([len(d.split()) for d in docs]):.0f} words")

    for e in embs.values():
        for q in QUERIES:
            e.embed_one(q)
    # Blocks of BLOCK queries per candidate, the candidates' order rotating block by block: load
    # from elsewhere on the machine hits all alike, and each candidate runs warm, as in a backend
    # that uses one (query by query, each would evict the other's weights from the caches).
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for b in range(max(1, args.queries // BLOCK)):
        shift = b % len(names)
        for n in names[shift:] + names[:shift]:
            for i in range(BLOCK):
                t0, c0 = time.perf_counter(), time.thread_time()
                embs[n].embed_one(QUERIES[i % len(QUERIES)])
                cpu[n].append((time.thread_time() - c0) * 1000)
                times[n].append((time.perf_counter() - t0) * 1000)
    rates = {n: 0.0 for n in names}
    for _round in range(3):
        for n in names:
            t0 = time.perf_counter()
            embs[n].embed(docs)
            rates[n] = max(rates[n], len(docs) / (time.perf_counter() - t0))
    agree, vs_numpy = {}, {}
    texts = [c["text"] for c in cases]
    refv = np.array([c["vector"] for c in cases], dtype=np.float64)
    vecs = {}
    for n in names:
        v = embs[n].embed(texts).vectors.astype(np.float64)
        vecs[n] = v
        cos = np.einsum("ij,ij->i", v, refv) / np.linalg.norm(refv, axis=1) / np.linalg.norm(v, axis=1)
        agree[n] = float(cos.min())
    if "numpy" in vecs:
        dv = {n: embs[n].embed(docs[:200]).vectors.astype(np.float64) for n in names}
        for n in names:
            vs_numpy[n] = float(np.einsum("ij,ij->i", dv[n], dv["numpy"]).min())
    rss = {}
    for n in names:
        out = subprocess.run([sys.executable, __file__, "--child-rss", n], capture_output=True,
                             text=True, check=True)
        rss[n] = json.loads(out.stdout.strip().splitlines()[-1])

    base = "numpy" if "numpy" in names else names[0]
    p50 = {n: statistics.median(times[n]) for n in names}
    print()
    print("| candidate | query p50 ms (CPU ms) | p90 ms | vs numpy | docs/s (500 docs) | vs numpy "
          "| min cosine vs s-t | min cosine vs numpy (200 docs) "
          "| RSS added MiB, anon + file: after a query / after the batch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in names:
        qa, qf = rss[n]["after_query"]
        ba, bf = rss[n]["after_batch"]
        print(f"| {n} | {p50[n]:.2f} ({statistics.median(cpu[n]):.2f}) | {np.percentile(times[n], 90):.2f} "
              f"| {p50[n] / p50[base]:.2f}x | {rates[n]:.0f} | {rates[n] / rates[base]:.2f}x "
              f"| {agree[n]:.7f} | {vs_numpy.get(n, float('nan')):.7f} "
              f"| {qa:.1f} + {qf:.1f} / {ba:.1f} + {bf:.1f} |")
    print(f"\n(threads: OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"llama.cpp 1; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
