"""RouteLLM MMLU routing labels: loading, contamination, splits, cached embeddings.

The data set is read in place from ../shared/datasets/routellm-mmlu/ (relative to the repository
root) and never copied into the repository.
"""

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("RUVLLM_BENCH_DATA")
                or (REPO / ".." / "shared" / "datasets" / "routellm-mmlu").resolve())
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
CACHE_DIR = Path(os.environ.get("RUVLLM_BENCH_CACHE", "/var/tmp/ruvllm-bench"))


@dataclass
class MMLU:
    prompts: list           # n strings, CSV order (subjects alphabetical by file name)
    subject: np.ndarray     # (n,) int, index into subjects
    subjects: list          # 57 names, alphabetical
    weak: np.ndarray        # (n,) bool: Mixtral answered correctly
    strong: np.ndarray      # (n,) bool: GPT-4 answered correctly
    contaminated: np.ndarray  # (n,) bool: listed in contaminated_prompts.jsonl

    def __len__(self):
        return len(self.prompts)


def _bool(v, where):
    if v == "True":
        return True
    if v == "False":
        return False
    raise SystemExit(f"bench/router: {where}: expected True/False, got {v!r}")


def load(data_dir=DATA_DIR):
    data_dir = Path(data_dir)
    files = sorted(data_dir.glob("mmlu_*.csv"))
    if not files:
        raise SystemExit(
            f"bench/router: the RouteLLM MMLU data set is missing.\n"
            f"  expected: {data_dir}/mmlu_<subject>.csv (57 files) and contaminated_prompts.jsonl\n"
            f"  i.e. ../shared/datasets/routellm-mmlu/ relative to the repository root {REPO}\n"
            f"  source: github.com/lm-sys/RouteLLM, routellm/evals/mmlu/responses/")
    csv.field_size_limit(10_000_000)
    prompts, subj, weak, strong, subjects = [], [], [], [], []
    for f in files:
        name = f.stem[len("mmlu_"):]
        s = len(subjects)
        subjects.append(name)
        with open(f, newline="", encoding="utf-8") as fh:
            r = csv.DictReader(fh)
            if r.fieldnames is None or "prompt" not in r.fieldnames \
                    or WEAK not in r.fieldnames or STRONG not in r.fieldnames:
                raise SystemExit(f"bench/router: {f} lacks prompt/{WEAK}/{STRONG} columns "
                                 f"(has {r.fieldnames})")
            for i, row in enumerate(r):
                prompts.append(row["prompt"])
                subj.append(s)
                weak.append(_bool(row[WEAK], f"{f.name} row {i + 2}"))
                strong.append(_bool(row[STRONG], f"{f.name} row {i + 2}"))
    cont = set()
    cpath = data_dir / "contaminated_prompts.jsonl"
    if cpath.is_file():
        with open(cpath, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    cont.add(json.loads(line)["eval_prompt"])
    else:
        print(f"bench/router: warning: {cpath} missing; no prompts marked contaminated",
              file=sys.stderr)
    return MMLU(prompts=prompts, subject=np.asarray(subj), subjects=subjects,
                weak=np.asarray(weak), strong=np.asarray(strong),
                contaminated=np.asarray([p in cont for p in prompts]))


def prompt_groups(prompts):
    """Group id per prompt: identical prompt text -> same group (so a split never leaks them)."""
    ids = {}
    return np.asarray([ids.setdefault(p, len(ids)) for p in prompts])


def stratified_split(strata, groups, fraction, seed, forbid=None):
    """Boolean mask of the `fraction` side of a split, stratified by `strata`.

    Whole groups (identical prompts) go to one side; groups containing a `forbid` row never go
    to the `fraction` side. Per stratum, the groups are shuffled with a fixed seed and taken until
    the stratum's quota round(fraction * rows) is reached.
    """
    rng = np.random.default_rng(seed)
    n = len(strata)
    forbid = np.zeros(n, dtype=bool) if forbid is None else forbid
    bad_groups = set(groups[forbid].tolist())
    out = np.zeros(n, dtype=bool)
    for s in np.unique(strata):
        rows = np.nonzero(strata == s)[0]
        quota = int(round(fraction * rows.size))
        gs = np.unique(groups[rows])
        gs = gs[rng.permutation(gs.size)]
        taken = 0
        for g in gs:
            if taken >= quota:
                break
            if g in bad_groups:
                continue
            members = rows[groups[rows] == g]
            # A group spanning two strata is decided by the first stratum that reaches it.
            if out[members].any():
                continue
            out[groups == g] = True
            taken += members.size
    return out


# ---------------------------------------------------------------------- embeddings


def _prompts_key(prompts, max_tokens):
    h = hashlib.sha256()
    h.update(f"all-MiniLM-L6-v2|max_tokens={max_tokens}|n={len(prompts)}\n".encode())
    for p in prompts:
        b = p.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def cache_file(prompts, cache_dir=CACHE_DIR):
    """Where the embeddings of exactly these prompts are cached: the name carries their hash, so
    caches of other prompt lists (another data version, a small run) live side by side."""
    from ruvllm import embedding as emb

    return Path(cache_dir) / f"mmlu-embeddings-{_prompts_key(prompts, emb.MAX_TOKENS)[:16]}.npz"


def _embed_chunk(texts):
    from ruvllm import embedding as emb

    r = emb.get_embedder("numpy").embed(texts)
    return r.vectors, np.asarray(r.token_counts), np.asarray(r.truncated)


def embeddings(prompts, cache_dir=CACHE_DIR, workers=None, log=print):
    """(vectors (n,384) float32, token_counts (n,), truncated (n,) bool, seconds), cached on
    disk; seconds is how long computing them took (when the cache was made; None if unknown).

    Computed with ruvllm.embedding (the server's numpy all-MiniLM-L6-v2) in ``workers``
    processes (default: one per core), each single-threaded: on 2 busy cores a 2-thread
    OpenBLAS measured ~5x slower than one thread per process. Set OPENBLAS_NUM_THREADS=1
    before numpy is imported (make bench-router does).
    """
    from ruvllm import embedding as emb

    key = _prompts_key(prompts, emb.MAX_TOKENS)
    path = cache_file(prompts, cache_dir)
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["key"]) == key:
                    log(f"embeddings: cached in {path}")
                    secs = float(z["seconds"]) if "seconds" in z.files else None
                    return z["vectors"], z["token_counts"], z["truncated"], secs
                log(f"embedding cache {path} is for other prompts; recomputing")
        except (OSError, KeyError, ValueError) as e:
            log(f"embedding cache {path} unreadable ({e!r}); recomputing")

    import multiprocessing as mp

    # The numpy forward, as the cache was made with: a bulk job, where it is the faster one
    # anyway (ruvllm.embedder), and no llama.cpp state to carry across fork().
    embedder = emb.get_embedder("numpy")  # loaded before forking: the workers share its mmap
    t0 = time.perf_counter()
    ids, _, _ = embedder.tokenize(prompts)
    lengths = np.asarray([len(x) for x in ids])
    # Length-sorted chunks pad little; shortest first gives an honest ETA early.
    order = np.argsort(lengths, kind="stable")
    n = len(prompts)
    chunks = [order[s:s + 256] for s in range(0, n, 256)]
    total_tokens = int(lengths.sum())
    vectors = np.empty((n, emb.DIM), dtype=np.float32)
    counts = np.empty(n, dtype=np.int64)
    trunc = np.empty(n, dtype=bool)
    workers = workers or os.cpu_count() or 1
    log(f"embedding {n} prompts ({total_tokens} tokens) in {workers} processes; "
        f"cache: {path}")
    done_tokens = done = 0
    last = t0
    with mp.get_context("fork").Pool(workers) as pool:
        results = pool.imap(_embed_chunk, ([prompts[i] for i in idx] for idx in chunks))
        for idx, (v, c, t) in zip(chunks, results):
            vectors[idx], counts[idx], trunc[idx] = v, c, t
            done += idx.size
            done_tokens += int(lengths[idx].sum())
            now = time.perf_counter()
            if now - last > 30 or done == n:
                last = now
                el = now - t0
                eta = el * (total_tokens - done_tokens) / max(done_tokens, 1)
                log(f"  embedded {done}/{n} prompts, {done_tokens}/{total_tokens} tokens "
                    f"({el:.0f} s, ~{eta:.0f} s left)")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    secs = time.perf_counter() - t0
    np.savez(tmp, key=np.asarray(key), vectors=vectors, token_counts=counts, truncated=trunc,
             seconds=np.asarray(secs))
    os.replace(tmp, path)
    log(f"embedded {n} prompts in {secs:.0f} s -> {path}")
    return vectors, counts, trunc, secs
