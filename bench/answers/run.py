#!/usr/bin/env python3
"""bench/answers: ruvllm_query's answers on real documents, the PostgreSQL 17 manual.

    make bench-answers                                    # every question, every configuration
    make bench-answers ARGS="--questions 20 --configs documents,extractive,routed"
    RUVLLM_BENCH_SCALE=small make bench-answers           # 12 + 3 questions, not recorded

Memory is a slice of the manual (bench/pgdocs.py: the pages of the questions' gold sections, then
neighbouring chapters, ~3,000 chunks) in tenant `pgdocs` of a throwaway PostgreSQL 17; the ingested
database is kept as a pg_dump in .ruvllm/pgdocs-cache and restored on the next run. The questions
are bench/answers/questions.jsonl: answerable ones (a gold answer the manual states and the section
it comes from) and unanswerable ones. Every configuration answers the same questions, one after
the other, with the response cache off and `ruvllm.inference` = in_process (--inference server
for the supervised llama-server):

  documents               today's pipeline (ruvllm.answer_style = documents; on a build without
                          that setting, the only pipeline there is)
  extractive, smollm2-135m-instruct, gemma-3-270m
                          a forced tier (constraints {"model": ...}) with answer_style = evidence
  routed                  answer_style = evidence, no constraint: the router picks

Per configuration: contains-accuracy and token-F1 against the gold answers (bench/qa_metrics.py),
citation precision (cited sources that are the gold section or contain a gold answer), abstention
on the unanswerable questions (precision, recall) and false abstentions on answerable ones,
wrong answers, hallucination rate (wrong, and its words not in the passages it came from), prompt
tokens p50 (the witness row's prompt_tokens) and latency p50/p90 (the result's latency_ms.total);
--report-from scores an earlier run's raw answers again. A
configuration the build does not have is a row saying so. A run over a subset (--questions,
--configs) is printed but not recorded in bench/RESULTS.md. bench/answers/replay.py replays the
extractive tier's span choice offline over the nodes one run retrieved (a minute a variant).
"""
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
import pgdocs  # noqa: E402
import qa_metrics as M  # noqa: E402
import results  # noqa: E402
from common import Server, cli, log, machine, make_up_settings, print_report  # noqa: E402

SECTION = "## bench/answers"
CONFIGS = ("documents", "extractive", "smollm2-135m-instruct", "gemma-3-270m", "routed")
TIERS = ("extractive", "smollm2-135m-instruct", "gemma-3-270m")
ABSTAIN_TEXT = "not found in memory"
SCALES = {"small": dict(questions=12), "default": dict(questions=None)}
# Targets of issue 14 (routed against documents, on the same questions).
TARGET_ACC_X = 2.0
TARGET_ABSTAIN = 0.90
TARGET_HALLUCINATED = 0.10
TARGET_PROMPT_TOKENS = 300
TARGET_P50_MS = 1000
# An answer is unsupported (a hallucination, when it is also wrong) when less than this share of its
# content words occur in the passages it came from (qa_metrics.supported_share).
SUPPORTED_SHARE = 0.8


def extra_args(ap):
    ap.add_argument("--questions", type=int, help="answerable questions to ask (spread over the "
                    "list), with unanswerable ones in the file's proportion; default all")
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma list of configurations (default {','.join(CONFIGS)})")
    ap.add_argument("--inference", choices=("in_process", "server"), default="in_process")
    ap.add_argument("--chunks", type=int, default=pgdocs.DEFAULT_CHUNKS,
                    help="chunks of the manual to load (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=2, help="connections ingesting at once")
    ap.add_argument("--cache-dir", default=str(pgdocs.REPO / ".ruvllm" / "pgdocs-cache"),
                    help="where the ingested slice is kept between runs ('' for nowhere)")
    ap.add_argument("--raw", help="also write every answer and the metrics as JSON to this file")
    ap.add_argument("--report-from", metavar="RAW",
                    help="ask nothing: render the report of an earlier run from its --raw file")


def spread(items, n):
    """n items evenly spaced over the list (all when n is None or too big)."""
    if n is None or n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def pick_questions(all_q, n):
    answerable = [q for q in all_q if q["answerable"]]
    unanswerable = [q for q in all_q if not q["answerable"]]
    if n is None:
        return answerable + unanswerable
    m = max(1, math.ceil(n * len(unanswerable) / len(answerable)))
    return spread(answerable, n) + spread(unanswerable, m)


class Bench:
    def __init__(self, args, scale):
        self.args = args
        n = args.questions if args.questions is not None else SCALES[scale]["questions"]
        self.all_questions = pgdocs.load_questions()
        self.questions = pick_questions(self.all_questions, n)
        self.subset = n is not None or set(args.configs.split(",")) != set(CONFIGS)
        self.configs = [c for c in args.configs.split(",") if c]
        unknown = set(self.configs) - set(CONFIGS)
        if unknown:
            raise SystemExit(f"bench/answers: unknown configuration(s) {', '.join(sorted(unknown))}")
        self.runs = {}        # config -> list of per-question records, or a string why not
        self.facts = {}
        self.started = time.time()

    # --- what this build has ---------------------------------------------------------------

    def probe(self, conn):
        has_style = conn.execute("SELECT current_setting('ruvllm.answer_style', true)").fetchone()[0]
        models = {r[0] for r in conn.execute("SELECT name FROM ruvllm.models WHERE enabled")}
        self.facts["answer_style_setting"] = has_style is not None
        self.facts["models"] = sorted(models)
        why = {}
        for c in self.configs:
            if c in TIERS and not has_style:
                why[c] = "not available on this build (no ruvllm.answer_style: no evidence pipeline)"
            elif c in TIERS and c not in models:
                why[c] = f"not available on this build (no enabled model {c} in ruvllm.models)"
            elif c == "routed" and not has_style:
                why[c] = "not available on this build (no ruvllm.answer_style: routed = documents)"
        return why

    def setup(self, conn, config):
        conn.execute("SELECT set_config('ruvllm.tenant', %s, false)", (pgdocs.TENANT,))
        conn.execute("SET ruvllm.cache_ttl = 0")
        conn.execute("SET ruvllm.inference = %s" % ("'server'" if self.args.inference == "server"
                                                   else "'in_process'"))
        if self.facts["answer_style_setting"]:
            style = "documents" if config == "documents" else "evidence"
            conn.execute("SELECT set_config('ruvllm.answer_style', %s, false)", (style,))

    # --- asking ----------------------------------------------------------------------------

    def ask_all(self, server, config):
        constraints = {"model": config} if config in TIERS else {}
        out = []
        with server.connect("pgdocs") as conn:
            self.setup(conn, config)
            for i, q in enumerate(self.questions, 1):
                t0 = time.perf_counter()
                try:
                    r = conn.execute("SELECT ruvllm_query(%s, NULL, %s::jsonb)",
                                     (q["question"], json.dumps(constraints))).fetchone()[0]
                    err = None
                except Exception as e:  # one failed call is a wrong answer, not a failed bench
                    r, err = None, f"{type(e).__name__}: {str(e).splitlines()[0]}"
                    if getattr(e, "sqlstate", None) == "42704" and config in TIERS:
                        return f"not available on this build ({err})"
                client_ms = (time.perf_counter() - t0) * 1000
                out.append({"qid": q["id"], "result": r, "error": err, "client_ms": client_ms})
                if i % 10 == 0 or i == len(self.questions):
                    log(f"{config}: {i}/{len(self.questions)} ({client_ms:.0f} ms the last)")
            conn.execute("SELECT ruvllm_witness_flush(10000)")
            ids = [a["result"]["request_id"] for a in out if a["result"]]
            tokens = dict(conn.execute(
                "SELECT request_id::text, prompt_tokens FROM ruvllm.witness WHERE request_id = ANY(%s::uuid[])",
                (ids,)).fetchall())
            node_ids = sorted({s["id"] for a in out if a["result"] for s in a["result"].get("sources", [])})
            nodes = {str(k): (src, content) for k, src, content in conn.execute(
                "SELECT id, source, content FROM ruvllm.nodes WHERE id = ANY(%s::uuid[])", (node_ids,))}
        for a in out:
            r = a["result"]
            a["prompt_tokens"] = tokens.get(r["request_id"]) if r else None
            a["sources"] = [{"source": nodes.get(str(s["id"]), (None, ""))[0],
                             "content": nodes.get(str(s["id"]), (None, ""))[1],
                             "evidence": s.get("evidence")} for s in (r or {}).get("sources", [])]
        return out

    # --- scoring ---------------------------------------------------------------------------

    def score(self, answers):
        by_id = {q["id"]: q for q in self.questions}
        acc, f1, cited, cited_ok, abst_u, abst_a, halluc, n_u, n_a = [], [], 0, 0, 0, 0, 0, 0, 0
        lat, ptoks, grounded_known, wrong = [], [], 0, 0
        for a in answers:
            q = by_id[a["qid"]]
            r = a["result"] or {}
            text = r.get("text") or ""
            abstained = bool(r.get("abstained")) or M.normalise(text).startswith(ABSTAIN_TEXT)
            grounded = r.get("grounded")
            if grounded is not None:
                grounded_known += 1
            lat.append((r.get("latency_ms") or {}).get("total"))
            ptoks.append(a["prompt_tokens"] if a["prompt_tokens"] is not None else
                         (0 if r and (r.get("routing") or {}).get("model") == "extractive" else None))
            if q["answerable"]:
                n_a += 1
                right = (not abstained) and M.contains(text, q["answers"])
                acc.append(1.0 if right else 0.0)
                f1.append(0.0 if abstained else M.token_f1(text, q["answers"]))
                abst_a += abstained
                for n in M.citations(text):
                    cited += 1
                    if 1 <= n <= len(a["sources"]):
                        s = a["sources"][n - 1]
                        cited_ok += (s["source"] == q["source"]
                                     or M.contains(s["content"], q["answers"]))
            else:
                n_u += 1
                right = abstained
                abst_u += abstained
                for n in M.citations(text):
                    cited += 1   # a citation for an answer the manual does not hold is never right
            if not abstained and not right:
                wrong += 1
                # Judged by the bench, not by the pipeline's own check: the words it claims are
                # not in the passages it was given.
                if M.supported_share(text, [s["content"] for s in a["sources"]]) < SUPPORTED_SHARE:
                    halluc += 1
        total = n_a + n_u
        abstentions = abst_u + abst_a
        return {
            "answerable": n_a, "unanswerable": n_u,
            "accuracy": sum(acc) / n_a if n_a else None,
            "f1": sum(f1) / n_a if n_a else None,
            "citations": cited, "citation_precision": cited_ok / cited if cited else None,
            "abstain_recall": abst_u / n_u if n_u else None,
            "abstain_precision": abst_u / abstentions if abstentions else None,
            "false_abstentions": abst_a / n_a if n_a else None,
            "hallucinated": halluc / total if total else None,
            "wrong": wrong / total if total else None,
            "grounded_reported": grounded_known,
            "prompt_tokens_p50": M.percentile(ptoks, 50),
            "prompt_tokens_generated_p50": M.percentile([t for t in ptoks if t], 50),
            "generated": sum(1 for t in ptoks if t),
            "right": int(sum(acc)),
            "p50_ms": M.percentile(lat, 50), "p90_ms": M.percentile(lat, 90),
            "errors": sum(1 for a in answers if a["error"]),
            "models": sorted({(a["result"] or {}).get("routing", {}).get("model") for a in answers
                              if a["result"]} - {None}),
        }

    # --- the run ---------------------------------------------------------------------------

    def run(self):
        settings = make_up_settings()
        settings["max_connections"] = "20"
        # Set at server start: with `server` the supervisor runs its llama-servers from the start.
        settings["ruvllm.inference"] = f"'{self.args.inference}'"
        with tempfile.TemporaryDirectory(prefix="bench-answers-") as tmp:
            os.chmod(tmp, 0o755)
            server = Server(tmp, name="bench/answers")
            server.start(settings)
            try:
                sources = [q["source"] for q in self.all_questions if q["source"]]
                self.facts["corpus"] = pgdocs.build_memory(
                    server, "pgdocs", sources, self.args.chunks, self.args.jobs,
                    self.args.cache_dir or None, log=log)
                with server.connect("pgdocs") as conn:
                    why = self.probe(conn)
                for config in self.configs:
                    if config in why:
                        self.runs[config] = why[config]
                        continue
                    t0 = time.perf_counter()
                    out = self.ask_all(server, config)
                    self.facts.setdefault("config_s", {})[config] = time.perf_counter() - t0
                    self.runs[config] = out
            finally:
                self.facts["load_end"] = os.getloadavg()[0]
                server.stop(check=False)

    def load_raw(self, path):
        """An earlier run's answers (its --raw file), to score and report again."""
        raw = json.loads(Path(path).read_text())
        self.facts, self.questions, self.runs = raw["facts"], raw["questions"], raw["runs"]
        self.configs = [c for c in CONFIGS if c in self.runs]
        self.facts["scored_from_raw"] = True
        self.subset = (len(self.questions) != len(self.all_questions)
                       or set(self.configs) != set(CONFIGS))

    def estimate_full(self):
        """Seconds a full run (every question, every configuration) would take, from this run's
        per-question times (configurations not run are not in it)."""
        per_q = {c: s / len(self.questions) for c, s in self.facts.get("config_s", {}).items()}
        if not per_q:
            return None
        n_all = len(self.all_questions)
        mean = sum(per_q.values()) / len(per_q)
        return sum(per_q.get(c, mean) for c in CONFIGS) * n_all

    def report(self):
        cpu, cores, mem, kernel = machine()
        c = self.facts.get("corpus", {})
        load_end = (f"{self.facts['load_end']:.1f}" if "load_end" in self.facts
                    else "not recorded")
        n_a = sum(q["answerable"] for q in self.questions)
        ingest = (f"ingested in {c['ingest_s']:.0f} s ({c.get('chunks_per_s', 0):.1f} chunks/s, "
                  f"{self.args.jobs} connections)" if c.get("ingest_s") else
                  f"restored from the cache in {c.get('restore_s', 0):.0f} s")
        lines = [SECTION, ""]
        if self.subset:
            lines += [results.SUBSET_MARK, ""]
        lines += [
            f"`make bench-answers`, {time.strftime('%Y-%m-%d')}, {cpu}, {cores} cores, {mem:.0f} GiB, "
            f"{kernel}; load average at the end {load_end}. ruvllm.inference = "
            f"{self.args.inference}, response cache off.", "",
            f"Memory: {c.get('pages')} pages of the PostgreSQL 17 manual (postgresql-doc-17), "
            f"{c.get('sections')} sections, {c.get('nodes')} nodes, {ingest}. Questions: {n_a} answerable "
            f"and {len(self.questions) - n_a} unanswerable of bench/answers/questions.jsonl "
            f"({sum(q['answerable'] for q in self.all_questions)} + "
            f"{sum(not q['answerable'] for q in self.all_questions)} in all).", "",
            "| configuration | contains-acc | token-F1 | citation precision (cited) | abstain P / R "
            "(unanswerable) | false abstentions | wrong | hallucinated | grounded reported | prompt tokens p50 "
            "| p50 ms | p90 ms | models | errors |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        scores = {}
        for config in self.configs:
            run = self.runs.get(config)
            if run is None or isinstance(run, str):
                lines.append(f"| {config} | {run or 'not run'} |" + " |" * 12)
                continue
            s = scores[config] = self.score(run)
            lines.append(
                f"| {config} | {pc(s['accuracy'])} | {num(s['f1'], '.2f')} | "
                f"{pc(s['citation_precision'])} ({s['citations']}) | {pc(s['abstain_precision'])} / "
                f"{pc(s['abstain_recall'])} | {pc(s['false_abstentions'])} | {pc(s['wrong'])} | "
                f"{pc(s['hallucinated'])} | {s['grounded_reported']} | "
                f"{num(s['prompt_tokens_p50'], '.0f')} | {num(s['p50_ms'], '.0f')} | "
                f"{num(s['p90_ms'], '.0f')} | {', '.join(s['models'])} | {s['errors']} |")
        lines += ["", "Targets (issue 14; routed on the same questions as documents):", "",
                  "| target | measured | |", "| --- | --- | --- |"]
        r, d = scores.get("routed"), scores.get("documents")

        def target(name, value, ok):
            lines.append(f"| {name} | {value} | {'pass' if ok else 'miss' if ok is not None else 'n/a'} |")
        if r and d and d["accuracy"] is not None and r["accuracy"] is not None:
            x = r["accuracy"] / d["accuracy"] if d["accuracy"] else math.inf
            target(f"routed contains-accuracy ≥ {TARGET_ACC_X:.0f}× documents",
                   f"{pc(r['accuracy'])} ({r['right']}/{r['answerable']}) vs {pc(d['accuracy'])} "
                   f"({d['right']}/{d['answerable']}): {x:.2f}×", x >= TARGET_ACC_X)
        else:
            target(f"routed contains-accuracy ≥ {TARGET_ACC_X:.0f}× documents", "routed or documents not measured", None)
        if r:
            target(f"unanswerable abstain ≥ {TARGET_ABSTAIN:.0%}", pc(r["abstain_recall"]),
                   None if r["abstain_recall"] is None else r["abstain_recall"] >= TARGET_ABSTAIN)
            target(f"hallucinated ≤ {TARGET_HALLUCINATED:.0%}", pc(r["hallucinated"]),
                   r["hallucinated"] <= TARGET_HALLUCINATED)
            # The extractive tier has no prompt (0 tokens): the p50 of the answers a model
            # generated is shown beside the p50 of all, which the target is about.
            generated = r["prompt_tokens_generated_p50"]
            target(f"prompt tokens p50 ≤ {TARGET_PROMPT_TOKENS}",
                   f"{num(r['prompt_tokens_p50'], '.0f')} (of the {r['generated']} answers a model "
                   f"generated: {num(generated, '.0f')})",
                   None if r["prompt_tokens_p50"] is None else r["prompt_tokens_p50"] <= TARGET_PROMPT_TOKENS)
            target(f"routed p50 latency ≤ {TARGET_P50_MS} ms ({self.args.inference})", num(r["p50_ms"], ".0f"),
                   None if r["p50_ms"] is None else r["p50_ms"] <= TARGET_P50_MS)
        else:
            for name in ("unanswerable abstain", "hallucinated", "prompt tokens p50", "routed p50 latency"):
                target(name, "routed not measured", None)
        lines.append("")
        if self.facts.get("scored_from_raw"):
            lines.append("Scored again from this run's raw answers (`--report-from`), with the "
                         "scoring of the current bench/answers/run.py.")
            lines.append("")
        lines.append("Wrong: answered (not abstained) and wrong, of all questions (an unanswerable "
                     "question answered counts as wrong). Hallucinated: wrong, and less than "
                     f"{SUPPORTED_SHARE:.0%} of its content words occur in the passages it came from "
                     "(the sources' full text; judged by the bench, not by the pipeline's `grounded`: "
                     "an extract of the wrong passage is wrong but not invented). Grounded reported: "
                     "answers carrying a `grounded` true/false. Citation precision: cited [n] that "
                     "are the gold section or contain a gold answer.")
        times = self.facts.get("config_s", {})
        if times:
            est = self.estimate_full()
            lines.append("")
            lines.append("Time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items())
                         + (f"; a full run ({len(self.all_questions)} questions × {len(CONFIGS)} "
                            f"configurations) would take ~{est / 60:.0f} min at these rates." if est else ""))
        return "\n".join(lines) + "\n"

    def raw(self):
        return {"facts": self.facts, "questions": self.questions,
                "runs": {k: v for k, v in self.runs.items()},
                "scores": {k: self.score(v) for k, v in self.runs.items() if not isinstance(v, str)}}


def pc(x):
    return "—" if x is None else f"{x:.0%}"


def num(x, fmt):
    return "—" if x is None else format(x, fmt)


def record(report_path, results_path):
    return results.record_section(SECTION, report_path, results_path)


def main():
    args, scale = cli("answers", __doc__, record, SCALES, extra=extra_args)
    bench = Bench(args, scale)
    if args.report_from:
        bench.load_raw(args.report_from)
    else:
        bench.run()
    print_report(bench.report(), args.out)
    if args.raw:
        Path(args.raw).write_text(json.dumps(bench.raw(), indent=1, default=str))


if __name__ == "__main__":
    main()
