#!/usr/bin/env python3
"""Span choice replayed offline: the evidence the extractive tier would give, for every answerable
question of bench/answers, in about a minute a variant, without asking PostgreSQL again.

    dump    asks each question once in a throwaway server with the pgdocs slice (restored from
            .ruvllm/pgdocs-cache as bench/answers does) and keeps what evidence.select is given:
            the attention-ranked nodes (content, score, source, distance, hop) and the question's
            vector
    score   runs this checkout's python/ruvllm/evidence.select and extractive_answer over the
            dumped nodes (sentence vectors cached in a file next to the dump) and prints the share
            of extractive answers and of evidence that contain a gold answer (bench/qa_metrics),
            for all questions and for each half (even and odd positions), so a change that only
            fits one half shows. --unit-vectors late scores units by vectors pooled from their
            node's one forward pass (what ingest could store, so that the request path embeds no
            sentence), --max-embedded how many units are scored

Inside the root (the checkout is /src there):

    env/enter.sh --layer test -- sh -c 'sh env/install-extension.sh >/dev/null &&
        chown postgres: .ruvllm && setpriv --reuid=postgres --regid=postgres --init-groups
        env HOME=/var/lib/postgresql python3 bench/answers/replay.py dump'
    env/enter.sh --layer test -- python3 bench/answers/replay.py score

Retrieval and attention are those of the dump: after a change to them, dump again.
"""
import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
DUMP = REPO / ".ruvllm" / "bench-answers-nodes.json"

# Runs in the server: the request's stages up to attention, with the extractive tier forced, and
# the attention-ranked nodes evidence.select would be given.
DUMP_FUNCTION = r'''
CREATE FUNCTION pg_temp.replay_nodes(q text) RETURNS jsonb LANGUAGE plpython3u AS $f$
import json
plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import attention, query as Q
seen = {}
attend = Q.attend
def keep(plpy_, req):
    attend(plpy_, req)
    seen["req"] = req
stages = Q.STAGES
Q.STAGES = tuple(keep if s is attend else s for s in stages)
try:
    Q.run(plpy, q, None, {"model": "extractive"})
finally:
    Q.STAGES = stages
req = seen.get("req")
if req is None:
    return json.dumps({"abstained": True})
rows = req.rows
ranked = attention.rank(req.vec, req.node_vecs, [r["hop"] for r in rows], [r["via_rel"] for r in rows],
                        [r["edge_weight"] for r in rows], req.ages)
ranked = [n for n in ranked if n.score >= Q.MIN_RELATIVE_SCORE * ranked[0].score]
return json.dumps({"vec": [float(v) for v in req.vec],
                   "nodes": [{"content": rows[n.index]["content"], "score": float(n.score),
                              "source": rows[n.index]["source"], "hop": rows[n.index]["hop"],
                              "distance": float(rows[n.index]["distance"])} for n in ranked]})
$f$;
'''


def dump(path):
    import pgdocs
    from common import Server, log, make_up_settings
    settings = dict(make_up_settings(), **{"ruvllm.inference": "'in_process'"})
    questions = pgdocs.load_questions()
    with tempfile.TemporaryDirectory(prefix="bench-answers-replay-") as tmp:
        os.chmod(tmp, 0o755)
        server = Server(tmp, name="bench/answers replay")
        server.start(settings)
        try:
            pgdocs.build_memory(server, "pgdocs", [q["source"] for q in questions if q["source"]],
                                pgdocs.DEFAULT_CHUNKS, 2, str(REPO / ".ruvllm" / "pgdocs-cache"), log=log)
            out = []
            with server.connect("pgdocs") as conn:
                conn.execute("SELECT set_config('ruvllm.tenant', %s, false)", (pgdocs.TENANT,))
                conn.execute("SET ruvllm.cache_ttl = 0")
                conn.execute("SET ruvllm.answer_style = 'evidence'")
                conn.execute(DUMP_FUNCTION)
                for i, q in enumerate(questions, 1):
                    d = conn.execute("SELECT pg_temp.replay_nodes(%s)", (q["question"],)).fetchone()[0]
                    out.append(dict(d, q=q))
                    if i % 50 == 0:
                        log(f"replay dump: {i}/{len(questions)}")
        finally:
            server.stop(check=False)
    path.write_text(json.dumps(out))
    print(f"{len(out)} questions dumped to {path}")


def score(path, unit_vectors="embedded", max_embedded=None):
    sys.path.insert(0, str(REPO / "python"))
    import numpy as np
    import qa_metrics as M
    from ruvllm import embedding, evidence
    cache_path = path.with_suffix(".vectors.pickle")
    cache = pickle.loads(cache_path.read_bytes()) if cache_path.exists() else {}
    known = len(cache)

    def embed(texts):
        missing = [t for t in texts if t not in cache]
        for t, v in zip(missing, embedding.embed(missing).vectors if missing else []):
            cache[t] = np.asarray(v, dtype=np.float32)
        return [cache[t] for t in texts]

    late = {}

    def late_vectors(prep, nodes):
        """Each unit's vector pooled from its node's one forward pass (Embedder.span_vectors)."""
        out = []
        for u in prep.units:
            content = nodes[u.node][1]
            if content not in late:
                units, sents = evidence.candidate_units([(0, content, 0.0)])
                groups = [tuple(evidence.unit_pieces(x)) for x in units]
                late[content] = dict(zip(groups, numpy_embedder.span_vectors(sents[0], groups)))
            out.append(late[content].get(tuple(evidence.unit_pieces(u))))
        return out

    numpy_embedder = embedding.Embedder() if unit_vectors == "late" else None
    data = [d for d in json.loads(path.read_text()) if d["q"]["answerable"] and "nodes" in d]
    answers, evidences, words = [], [], []
    for d in data:
        evidence._vectors.clear()
        nodes = [(i, n["content"], n["score"]) for i, n in enumerate(d["nodes"])]
        qvec = np.asarray(d["vec"], dtype=np.float32)
        prep = evidence.candidates(d["q"]["question"], nodes,
                                   max_embedded=max_embedded or evidence.MAX_EMBEDDED)
        prep.score(qvec, nodes, embed, vectors=late_vectors(prep, nodes) if numpy_embedder else None)
        sel = evidence.select(d["q"]["question"], qvec, nodes, evidence.DEFAULT_BUDGET_TOKENS,
                              evidence.approx_tokens, embed=embed, prepared=prep)
        text = evidence.extractive_answer(sel)
        answers.append(M.contains(text, d["q"]["answers"]))
        evidences.append(M.contains(" ".join(n.text for n in sel.nodes), d["q"]["answers"]))
        words.append(len(text.split()))
    if len(cache) > known:
        cache_path.write_bytes(pickle.dumps(cache))
    n = len(data)
    halves = [sum(a for i, a in enumerate(answers) if i % 2 == h) for h in (0, 1)]
    print(f"unit vectors {unit_vectors}, max_embedded {max_embedded or evidence.MAX_EMBEDDED}: "
          f"{n} answerable questions: the extractive answer contains a gold answer "
          f"{sum(answers) / n:.1%} (halves {halves[0]}/{(n + 1) // 2}, {halves[1]}/{n // 2}), "
          f"the evidence {sum(evidences) / n:.1%}; answer words p50 {statistics.median(words):g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("dump", "score"))
    ap.add_argument("--file", type=Path, default=DUMP)
    ap.add_argument("--unit-vectors", choices=("embedded", "late"), default="embedded",
                    help="score: units embedded one by one (the request path today), or pooled from "
                         "their node's one forward pass (embedding.Embedder.span_vectors)")
    ap.add_argument("--max-embedded", type=int, help="score: units scored per question "
                    f"(default evidence.MAX_EMBEDDED)")
    args = ap.parse_args()
    dump(args.file) if args.step == "dump" else score(args.file, args.unit_vectors, args.max_embedded)


if __name__ == "__main__":
    main()
