#!/usr/bin/env python3
"""bench/inference: ruvllm_query with generation in each backend (ruvllm.inference = in_process)
against the shared, supervised llama-server (server), side by side in one run.

    make bench-inference                            # C = 1, 2, 4, 8 connections, ~10-15 min
    RUVLLM_BENCH_SCALE=small make bench-inference   # C = 1, 2, a few answers, ~3 min

It starts its own throwaway PostgreSQL 17 with ruvllm.inference = server in postgresql.conf (the
supervisor runs one llama-server for SmolLM2, ruvllm.inference_slots slots, all cores), seeds a
small knowledge base, and measures for each mode and C concurrent connections (each asking
distinct questions, max_tokens 32, model SmolLM2): answers/s, p50/p99 latency, time to first
token (ruvllm_query_stream's first row), the first call of a new connection against its second,
the RSS of the backends and of the inference server; the cancellation latency (pg_cancel_backend
to the statement's end, during generation); and the machine's bound in the same run: prefill and
decode tokens/s of the same model at all cores (a bare llama-server, one request at a time), and
the answers/s those rates allow for the prompts the runs sent.

It prints one markdown section; at default scale bench/run.sh records it in bench/RESULTS.md.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for results.py, common.py
import results  # noqa: E402
from common import Server, cli, free_port, log, machine, print_report  # noqa: E402

SECTION = "## bench/inference"
LLAMA_SERVER = "/usr/local/bin/llama-server"
MODELS_DIR = os.environ.get("RUVLLM_MODELS_DIR", "/usr/local/share/ruvllm/models")
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 32
SLOTS = 8
SCALES = {
    "small": dict(clients=(1, 2), per_client=2, cancels=2),
    "default": dict(clients=(1, 2, 4, 8), per_client=4, cancels=5),
}
KNOWLEDGE = [
    "The witness log is rotated by dropping its oldest daily partition.",
    "ruvllm_feedback stores a rating from 1 to 5 on the witness row of a request.",
    "VACUUM reclaims the space of dead tuples left behind by updates and deletes.",
    "HNSW indexes in pgvector find approximate nearest neighbours; ef_search trades recall for speed.",
    "The capital of France is Paris, on the river Seine.",
    "A continuing session sends its earlier turns first, so the server reuses their KV cache.",
]
TOPICS = ["the witness log", "feedback ratings", "VACUUM", "HNSW indexes", "Paris", "sessions",
          "retention", "the router", "embeddings", "backups", "tenants", "the response cache"]


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def fmt(value, spec):
    return "" if value is None else format(value, spec)


def rss_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def post(port, path, body, timeout=300):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_health(port, limit=180):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench/inference: llama-server on {port} did not become healthy")


class Bench:
    def __init__(self, scale):
        self.cfg = SCALES[scale]
        self.scale = scale
        self.q = 0
        self.rows = []          # one per (mode, C)
        self.first_calls = {}   # mode -> (first, second) latency lists
        self.cancel_s = []
        self.bound = {}
        self.prompt_tokens = []
        self.session = []

    def question(self):
        self.q += 1
        return f"Question {self.q}: what should I know about {TOPICS[self.q % len(TOPICS)]}?"

    # -- the machine's bound
    def measure_bound(self):
        """The bare llama-server at all cores, after the runs (nothing else of the bench running):
        prefill and decode tokens/s of one request at a time, and the answers/s that SLOTS
        concurrent requests of the runs' mean prompt size and MAX_TOKENS get from batching."""
        port = free_port()
        log(f"bound: a bare llama-server, all cores, {SLOTS} slots")
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen([LLAMA_SERVER, "--model", os.path.join(MODELS_DIR, SMOL_FILE),
                                     "--host", "127.0.0.1", "--port", str(port), "--parallel", str(SLOTS),
                                     "--ctx-size", str(SLOTS * 2048)], stdout=out, stderr=subprocess.STDOUT)
            try:
                wait_health(port)
                text = " ".join(KNOWLEDGE * 6)
                prefill, decode = [], []
                for i in range(3):
                    r = post(port, "/completion", {"prompt": f"{i} {text}", "n_predict": 64,
                                                   "cache_prompt": False, "ignore_eos": True})
                    t = r["timings"]
                    prefill.append(t["prompt_per_second"])
                    decode.append(t["predicted_per_second"])
                self.bound = {"prefill_tps": statistics.median(prefill),
                              "decode_tps": statistics.median(decode)}
                tokens = post(port, "/tokenize", {"content": " ".join(KNOWLEDGE * 40)})["tokens"]
                n_prompt = max(8, int(round(self.prompt_tokens)))
                rounds = 2
                answered = []

                def client(c):
                    for r in range(rounds):
                        # a distinct first token per request: nothing comes from the prompt cache
                        prompt = [tokens[(c * rounds + r) % len(tokens)]] + tokens[:n_prompt - 1]
                        post(port, "/completion", {"prompt": prompt, "n_predict": MAX_TOKENS,
                                                   "cache_prompt": False, "ignore_eos": True})
                        answered.append(1)
                threads = [threading.Thread(target=client, args=(c,)) for c in range(SLOTS)]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                self.bound["batched_answers_per_s"] = len(answered) / (time.perf_counter() - t0)
            finally:
                proc.terminate()
                proc.wait(30)
        log(f"bound: prefill {self.bound['prefill_tps']:.0f} tok/s, decode {self.bound['decode_tps']:.0f} tok/s, "
            f"{SLOTS} batched: {self.bound['batched_answers_per_s']:.2f} answers/s")

    # -- ruvllm_query under load
    def run_clients(self, server, mode, clients):
        conns = [server.connect() for _ in range(clients)]
        for c in conns:
            c.execute(f"SET ruvllm.inference = '{mode}'")
            self.ask(c)                     # warm: embedder (and in_process: the model) loaded
        lat, errors = [], []
        barrier = threading.Barrier(clients)

        ttft = []

        def worker(conn):
            barrier.wait()
            for _ in range(self.cfg["per_client"]):
                try:
                    first, total = self.ask_streamed(conn)
                    ttft.append(first)
                    lat.append(total)
                except Exception as e:  # noqa: BLE001 - counted
                    errors.append(str(e))
        threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        rss_backends = 0.0
        while any(t.is_alive() for t in threads):
            rss_backends = max(rss_backends, sum(rss_mib(c.info.backend_pid) for c in conns))
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        for c in conns:
            c.close()
        row = {"mode": mode, "clients": clients, "answers": len(lat), "errors": len(errors),
               "answers_per_s": len(lat) / wall, "p50": pct(lat, 50), "p99": pct(lat, 99),
               "ttft_p50": pct(ttft, 50), "rss_backends_mib": rss_backends,
               "rss_server_mib": self.server_rss(server) if mode == "server" else None}
        log(f"{mode} C={clients}: {row['answers_per_s']:.2f} answers/s, p50 {row['p50']:.2f} s, "
            f"errors {len(errors)} {errors[:1]}")
        self.rows.append(row)

    def ask(self, conn):
        r = conn.execute("SELECT ruvllm_query(%s, NULL, %s::jsonb)",
                         (self.question(), json.dumps({"model": MODEL, "max_tokens": MAX_TOKENS}))).fetchone()[0]
        return r

    def ask_streamed(self, conn):
        """(seconds to the first token, seconds to the end) of one answer read through
        ruvllm_query_stream; in process the answer comes as one piece when it is done."""
        t = time.perf_counter()
        with conn.transaction():
            conn.execute("DECLARE s NO SCROLL CURSOR FOR SELECT (x).token FROM "
                         "(SELECT ruvllm_query_stream(%s, NULL, %s::jsonb) AS x OFFSET 0) q",
                         (self.question(), json.dumps({"model": MODEL, "max_tokens": MAX_TOKENS})))
            conn.execute("FETCH 1 FROM s").fetchone()
            first = time.perf_counter() - t
            conn.execute("FETCH ALL FROM s").fetchall()
            conn.execute("CLOSE s")
        return first, time.perf_counter() - t

    def server_rss(self, server):
        with server.connect() as c:
            pids = [r[0] for r in c.execute("SELECT pid FROM ruvllm.inference_servers WHERE pid IS NOT NULL")]
        return sum(rss_mib(p) for p in pids)

    def first_call(self, server, mode, n=3):
        firsts, seconds = [], []
        for _ in range(n):
            with server.connect() as c:
                c.execute(f"SET ruvllm.inference = '{mode}'")
                t = time.perf_counter()
                self.ask(c)
                firsts.append(time.perf_counter() - t)
                t = time.perf_counter()
                self.ask(c)
                seconds.append(time.perf_counter() - t)
        self.first_calls[mode] = (statistics.median(firsts), statistics.median(seconds))
        log(f"{mode} first call {self.first_calls[mode][0]:.2f} s, second {self.first_calls[mode][1]:.2f} s")

    def cancels(self, server):
        with server.connect() as admin, server.connect() as conn:
            port = admin.execute("SELECT port FROM ruvllm.inference_servers WHERE state = 'running'").fetchone()[0]
            self.ask(conn)
            for i in range(self.cfg["cancels"]):
                done = {}

                def run():
                    try:
                        conn.execute("SELECT ruvllm_query(%s, NULL, %s::jsonb)",
                                     (f"Count from 1 to 1000, one number per line ({i}).",
                                      json.dumps({"model": MODEL, "max_tokens": 2048})))
                    except Exception:  # noqa: BLE001 - the cancel we expect
                        pass
                    done["at"] = time.perf_counter()
                t = threading.Thread(target=run)
                t.start()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and t.is_alive():
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/slots", timeout=2) as r:
                        if any(s.get("is_processing") for s in json.loads(r.read())):
                            break
                    time.sleep(0.02)
                sent = time.perf_counter()
                admin.execute("SELECT pg_cancel_backend(%s)", (conn.info.backend_pid,))
                t.join(60)
                self.cancel_s.append(done["at"] - sent)
        log(f"cancel latency p50 {pct(self.cancel_s, 50) * 1000:.0f} ms")

    def session_turns(self, server, turns=6):
        """A session continued by two connections in turn (server mode): what each turn evaluated."""
        with server.connect() as a, server.connect() as b:
            for i in range(turns):
                (a, b)[i % 2].execute("SELECT ruvllm_query(%s, 'bench-session', %s::jsonb)",
                                      (f"Tell me more about {TOPICS[i]}.",
                                       json.dumps({"model": MODEL, "max_tokens": MAX_TOKENS})))
            a.execute("SELECT ruvllm_witness_flush(10000)")
            self.session = a.execute("SELECT prompt_tokens, prompt_cached_tokens FROM ruvllm.witness"
                                     " WHERE session_id = 'bench-session' ORDER BY created_at").fetchall()
        log(f"session turns (prompt, cached): {self.session}")

    def prompt_size(self, server):
        with server.connect() as c:
            n = c.execute("SELECT avg(prompt_tokens)::float8 FROM ruvllm.witness WHERE prompt_tokens > 0"
                          " AND error IS NULL").fetchone()[0]
        self.prompt_tokens = n or 0.0

    def run(self):
        with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
            os.chmod(tmp, 0o755)
            server = Server(tmp, name="bench/inference")
            server.start({"max_connections": "40", "ruvllm.inference": "'server'",
                          "ruvllm.inference_models": f"'{SMOL_FILE}'", "ruvllm.inference_slots": str(SLOTS),
                          # all cores, as the bound is measured (the default is half of them)
                          "ruvllm.inference_threads": str(os.cpu_count()),
                          "ruvllm.inference_ctx_per_slot": "2048"})
            try:
                with server.connect("postgres") as c:
                    c.execute("CREATE DATABASE bench")
                with server.connect() as c:
                    c.execute("CREATE EXTENSION ruvllm CASCADE")
                    c.execute("SELECT ruvllm_ingest_many(%s::text[])", (KNOWLEDGE,))
                    c.execute("ALTER DATABASE bench SET ruvllm.cache_ttl = 0")  # every call generates
                    # The questions range over topics the knowledge base lacks: a serving bench
                    # generates for each of them instead of declining it ("Not found in memory.").
                    c.execute("ALTER DATABASE bench SET ruvllm.abstain_below = 0")
                    deadline = time.monotonic() + 180
                    while not c.execute("SELECT count(*) FROM ruvllm.inference_servers WHERE state = 'running'"
                                        ).fetchone()[0]:
                        if time.monotonic() > deadline:
                            raise SystemExit("bench/inference: the supervised server did not start")
                        time.sleep(0.2)
                    port = c.execute("SELECT port FROM ruvllm.inference_servers").fetchone()[0]
                wait_health(port)
                for mode in ("in_process", "server"):
                    self.first_call(server, mode)
                    for clients in self.cfg["clients"]:
                        self.run_clients(server, mode, clients)
                self.cancels(server)
                self.session_turns(server)
                with server.connect() as c:
                    c.execute("SELECT ruvllm_witness_flush(10000)")
                self.prompt_size(server)
            finally:
                server.stop(check=False)
        self.measure_bound()

    def targets(self, bound, batched, base):
        """The issue's targets against what this run measured."""
        server = {r["clients"]: r for r in self.rows if r["mode"] == "server"}
        out = ["", "Targets (2 cores):", ""]
        top = server.get(max(server)) if server else None
        if top and base:
            c = top["clients"]
            out.append(f"- C = {c}: {top['answers_per_s']:.2f} answers/s = {top['answers_per_s'] / bound:.0%} of the "
                       f"one-stream bound, {top['answers_per_s'] / batched:.0%} of the batched bound (target >= 80%: "
                       f"{_verdict(top['answers_per_s'] >= 0.8 * min(bound, batched))} against the one-stream bound, "
                       f"{_verdict(top['answers_per_s'] >= 0.8 * batched)} against the batched one); "
                       f"{top['answers_per_s'] / base:.2f}x in_process C = 1 (target >= 1.8x: "
                       f"{_verdict(top['answers_per_s'] >= 1.8 * base)}).")
        rates = [server[c]["answers_per_s"] for c in sorted(server)]
        worst = min((b / a - 1 for a, b in zip(rates, rates[1:])), default=0.0)
        out.append(f"- Largest fall in answers/s as clients are added: {min(0.0, worst):.0%} (target: no fall over 10%: "
                   f"{_verdict(worst >= -0.10)}).")
        if "server" in self.first_calls:
            first, second = self.first_calls["server"]
            out.append(f"- A new connection's first answer {first - second:+.2f} s against its second "
                       f"(target <= 0.5 s: {_verdict(first - second <= 0.5)}).")
        per_backend = max((r["rss_backends_mib"] / r["clients"] for r in server.values()), default=0.0)
        out.append(f"- Backend RSS, the most per backend in server mode: {per_backend:.0f} MiB (target <= 150 MiB: "
                   f"{_verdict(per_backend <= 150)}).")
        if 1 in server:
            out.append(f"- TTFT p50 at C = 1: {server[1]['ttft_p50']:.2f} s (target <= 0.3 s: "
                       f"{_verdict(server[1]['ttft_p50'] <= 0.3)}), with a mean prompt of {self.prompt_tokens:.0f} tokens.")
        return out + [""]

    def report(self):
        cpu, cores, mem, kernel = machine()
        p, d = self.bound["prefill_tps"], self.bound["decode_tps"]
        per_answer = self.prompt_tokens / p + MAX_TOKENS / d
        bound = 1 / per_answer if per_answer else float("nan")
        batched = self.bound["batched_answers_per_s"]
        base = next((r["answers_per_s"] for r in self.rows if r["mode"] == "in_process" and r["clients"] == 1), None)
        lines = [SECTION, "",
                 f"`make bench-inference`, {time.strftime('%Y-%m-%d')}, {cpu}, {cores} cores, {mem:.0f} GiB, {kernel}; "
                 f"SmolLM2-135M Q4_1, max_tokens {MAX_TOKENS}, distinct questions (response cache off), "
                 f"server: {SLOTS} slots, all cores. Load average at the end: {os.getloadavg()[0]:.1f} "
                 "(the machine is shared: other jobs take cores too).", "",
                 f"Machine bound in this run (bare llama-server, all cores): prefill {p:.0f} tok/s, decode {d:.0f} tok/s; "
                 f"mean prompt {self.prompt_tokens:.0f} tokens, so one stream allows {bound:.2f} answers/s "
                 "(the issue's bound: batched decoding goes past it). "
                 f"The same server with {SLOTS} slots and {SLOTS} concurrent requests of that prompt size and "
                 f"{MAX_TOKENS} tokens, nothing from the prompt cache: {batched:.2f} answers/s (the batched bound).", "",
                 "| mode | C | answers | answers/s | of one-stream bound | of batched bound | vs in_process C=1 | p50 s | p99 s | TTFT p50 s | backends RSS MiB | server RSS MiB | errors |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            lines.append(
                f"| {r['mode']} | {r['clients']} | {r['answers']} | {r['answers_per_s']:.2f} | "
                f"{r['answers_per_s'] / bound:.0%} | {r['answers_per_s'] / batched:.0%} | {r['answers_per_s'] / base:.2f}x | {r['p50']:.2f} | {r['p99']:.2f} | "
                f"{fmt(r['ttft_p50'], '.2f')} | {r['rss_backends_mib']:.0f} | "
                f"{fmt(r['rss_server_mib'], '.0f')} | {r['errors']} |")
        lines.append("")
        for mode, (first, second) in self.first_calls.items():
            lines.append(f"- {mode}: a new connection's first answer {first:.2f} s, its second {second:.2f} s "
                         f"(+{first - second:.2f} s).")
        if self.session:
            turns = "; ".join(f"{i + 1}: {p} ({p - (c or 0)} evaluated)" for i, (p, c) in enumerate(self.session))
            lines.append(f"- A session of {len(self.session)} turns, asked by two connections in turn (server mode), "
                         f"prompt tokens per turn: {turns}. Turns after the first evaluate their new "
                         "message and the previous turn's question and answer; the rest comes from the slot's cache.")
        lines += self.targets(bound, batched, base)
        if self.cancel_s:
            lines.append(f"- Cancellation (pg_cancel_backend during generation to the statement's end, server mode): "
                         f"p50 {pct(self.cancel_s, 50) * 1000:.0f} ms, max {max(self.cancel_s) * 1000:.0f} ms "
                         f"over {len(self.cancel_s)}.")
        return "\n".join(lines) + "\n"


def _verdict(ok):
    return "met" if ok else "**missed**"




def record(report_path, results_path):
    results.record_section(SECTION, report_path, results_path)


def main():
    args, scale = cli("inference", __doc__, record, SCALES)
    bench = Bench(scale)
    bench.run()
    print_report(bench.report(), args.out)


if __name__ == "__main__":
    main()
