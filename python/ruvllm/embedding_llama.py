"""all-MiniLM-L6-v2 run by llama.cpp (ruvllm.embedder = llama): the same model, from the same
safetensors, written once as a GGUF file and evaluated by the llama.cpp that llama-cpp-python
already puts in every backend (no new dependency).

The tokeniser stays ours (the `tokenizers` package, as for the numpy forward), so token ids,
counts and truncation are identical whichever embedder runs; llama.cpp only sees the ids. Its BERT
graph is the model's own (embeddings + token type 0 + positions, LayerNorm, 6 post-norm encoder
layers, GELU FFN) with mean pooling over each sequence; we L2-normalise. Several texts go into one
llama.cpp batch as separate sequences, packed end to end with no padding. Bulk calls (more than
BULK_TOKENS tokens) go to the numpy forward, which is faster there.

The GGUF file (43 MiB at f16) is built from the installed model.safetensors: by `make install`
into the install's embedding directory, or else on first use into the first writable cache
directory (gguf_dirs()). Its name carries a key over the source files' size and mtime, the dtype
and this writer's version, so a changed model or writer makes a new file rather than reading a
stale one; a file that is there but cut short or of another writer is rebuilt. Inside,
ruvllm.source_sha256 records the safetensors' SHA-256 for audit.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from . import gguf
from .embedding import DIM, MAX_TOKENS, UNDEFINED_FILE, Embedder, find_model_dir, read_safetensors
from .errors import RuvllmError

# Bumped whenever what build_gguf writes changes: the file name's key changes with it.
WRITER_VERSION = 3
ENV_CACHE_DIR = "RUVLLM_EMBED_CACHE_DIR"
FILE_STEM = "all-MiniLM-L6-v2"

# One llama.cpp batch holds at most this many tokens (as several sequences) and sequences. Every
# token attends over the whole batch's mask, so the attention cost grows with its square: 512
# keeps it small next to the weight matmuls (~4% of the FLOPs) while a batch still amortises the
# weights over 10-40 short texts. A single text is at most MAX_TOKENS (256).
BATCH_TOKENS = 512
BATCH_SEQUENCES = 64
# Past this many tokens in one embed() call (two llama.cpp batches), the numpy forward embeds
# instead: OpenBLAS' sgemm over padded batches of up to 4096 tokens beats llama.cpp's packed
# batches, whose every token attends over the whole batch's mask (bench/memory/embedders.py on 2
# shared cores: numpy 95 docs/s, llama.cpp 69 on 500 two-sentence documents; per 9-word query
# llama.cpp 5.8 ms, numpy 10.9; larger llama.cpp batches were slower still). Queries and small
# batches stay with llama.cpp; a backend that bulk-ingests loads both.
BULK_TOKENS = 2 * BATCH_TOKENS
DTYPES = ("f16", "f32", "q8_0")
DTYPE = "f16"
# llama.cpp threads: one. A backend runs beside others on few cores; llama.cpp's threads spin at
# barriers, so a second thread competing with another busy backend slows both (measured tenfold
# for generation, see ruvllm.inference_threads).
THREADS = 1

_HF_TO_GGUF_LAYER = {   # besides attn_qkv, made from attention.self.{query,key,value}
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
# llama.cpp's token types (llama_token_type): normal words and the tokeniser's special tokens.
_TOKEN_NORMAL, _TOKEN_CONTROL = 1, 3
_POOLING_MEAN = 1


# --------------------------------------------------------------------------------------------
# The GGUF file


def _source_key(model_dir: Path, dtype: str) -> str:
    """16 hex digits over what the file is made from: a new install of the model (another size or
    mtime of its files), another dtype or another writer version gives another file name."""
    parts = [f"writer={WRITER_VERSION}", f"dtype={dtype}"]
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        path = model_dir / name
        if path.is_file():
            st = path.stat()
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def gguf_name(model_dir: Path, dtype: str = DTYPE) -> str:
    return f"{FILE_STEM}.{dtype}.{_source_key(Path(model_dir), dtype)}.gguf"


def install_dir() -> Path | None:
    """<pkglibdir>/ruvllm-python/embedding when this package is the installed one
    (<pkglibdir>/ruvllm-python/VERSION/ruvllm): `make install` builds the file there."""
    here = Path(__file__).resolve().parent
    if here.parent.parent.name == "ruvllm-python":
        return here.parent.parent / "embedding"
    return None


def gguf_dirs() -> list[Path]:
    """Where the file is looked for, in order, and built in the first writable one when absent:
    $RUVLLM_EMBED_CACHE_DIR, the install's embedding directory, ~/.cache/ruvllm (for the
    server: the postgres user's home)."""
    dirs = []
    if os.environ.get(ENV_CACHE_DIR):
        dirs.append(Path(os.environ[ENV_CACHE_DIR]))
    inst = install_dir()
    if inst is not None:
        dirs.append(inst)
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    dirs.append(Path(cache_home) / "ruvllm")
    return dirs


def _vocab(model_dir: Path):
    """Token strings and types in id order, as llama.cpp's WordPiece ("bert") vocabulary wants
    them: a word-start piece gets a leading U+2581 and a '##' continuation loses its '##' (what
    convert_hf_to_gguf does); special tokens stay as they are."""
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    special = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}
    tokens = [""] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    if any(t == "" for t in tokens):
        raise RuvllmError(UNDEFINED_FILE, f"{model_dir}/tokenizer.json: vocabulary ids have gaps")
    types = []
    for i, t in enumerate(tokens):
        if t in special:
            types.append(_TOKEN_CONTROL)
        else:
            tokens[i] = t[2:] if t.startswith("##") else "\u2581" + t
            types.append(_TOKEN_NORMAL)
    return tokens, types, {t: vocab[t] for t in special}


def build_gguf(model_dir, path, dtype: str = DTYPE) -> Path:
    """Writes all-MiniLM-L6-v2 from model_dir (model.safetensors, tokenizer.json, config.json)
    as a llama.cpp "bert" GGUF at path. The encoder's matrices and the token embeddings are
    stored as dtype: f32 as they are, f16 (the default: 5.8 ms a query against f32's 7.3, the
    same agreement, half the file), or q8_0 (kept for bench/memory/embedders.py only: cosine
    0.9990 to sentence-transformers, under the 0.9999 bar; fast only with llama.cpp's AMX
    repacking, 3.0 ms, which copies the weights into each backend's memory). 1-D tensors, the
    position and token type embeddings stay f32 (ggml adds no f16 row to f32 activations)."""
    model_dir, path = Path(model_dir), Path(path)
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: one of {', '.join(DTYPES)}")
    cfg = json.loads((model_dir / "config.json").read_text())
    t = read_safetensors(model_dir / "model.safetensors")
    n_layer = int(cfg["num_hidden_layers"])

    def tensor(gguf_name, hf_name, keep_f32=False):
        arr = t[hf_name]
        if arr.ndim == 1 or keep_f32 or dtype == "f32":
            return gguf_name, arr.astype(np.float32, copy=False)
        if dtype == "q8_0" and gguf_name != "token_embd.weight":
            return gguf_name, gguf.quantize_q8_0(arr), gguf.GGML_Q8_0, arr.shape
        return gguf_name, arr.astype(np.float16)

    tensors = [tensor("token_embd.weight", "embeddings.word_embeddings.weight"),
               tensor("token_types.weight", "embeddings.token_type_embeddings.weight", keep_f32=True),
               tensor("position_embd.weight", "embeddings.position_embeddings.weight", keep_f32=True),
               tensor("token_embd_norm.weight", "embeddings.LayerNorm.weight"),
               tensor("token_embd_norm.bias", "embeddings.LayerNorm.bias")]
    for i in range(n_layer):
        a = f"encoder.layer.{i}.attention.self."
        # Q, K and V as one matrix (llama.cpp's attn_qkv, split by views): one matmul, not three
        # (4% faster per query, measured; the same vectors).
        for part in ("weight", "bias"):
            t[f"{a}qkv.{part}"] = np.concatenate([t[f"{a}{n}.{part}"] for n in ("query", "key", "value")])
            tensors.append(tensor(f"blk.{i}.attn_qkv.{part}", f"{a}qkv.{part}"))
        for hf, ours in _HF_TO_GGUF_LAYER.items():
            for part in ("weight", "bias"):
                tensors.append(tensor(f"blk.{i}.{ours}.{part}", f"encoder.layer.{i}.{hf}.{part}"))

    tokens, types, special = _vocab(model_dir)
    sha = hashlib.sha256()
    with open(model_dir / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    U32, S = gguf.UINT32, gguf.STRING
    meta = {
        "general.architecture": (S, "bert"),
        "general.name": (S, FILE_STEM),
        "general.file_type": (U32, {"f32": 0, "f16": 1, "q8_0": 7}[dtype]),  # llama_ftype
        "bert.context_length": (U32, int(cfg["max_position_embeddings"])),
        "bert.embedding_length": (U32, int(cfg["hidden_size"])),
        "bert.feed_forward_length": (U32, int(cfg["intermediate_size"])),
        "bert.block_count": (U32, n_layer),
        "bert.attention.head_count": (U32, int(cfg["num_attention_heads"])),
        "bert.attention.layer_norm_epsilon": (gguf.FLOAT32, float(cfg.get("layer_norm_eps", 1e-12))),
        "bert.attention.causal": (gguf.BOOL, False),
        "bert.pooling_type": (U32, _POOLING_MEAN),
        "tokenizer.ggml.model": (S, "bert"),
        "tokenizer.ggml.tokens": (gguf.ARRAY, (S, tokens)),
        "tokenizer.ggml.token_type": (gguf.ARRAY, (gguf.INT32, types)),
        "tokenizer.ggml.token_type_count": (U32, int(cfg.get("type_vocab_size", 2))),
        # llama.cpp's own spelling of "separator".
        "tokenizer.ggml.seperator_token_id": (U32, special["[SEP]"]),
        "tokenizer.ggml.cls_token_id": (U32, special["[CLS]"]),
        "tokenizer.ggml.unknown_token_id": (U32, special["[UNK]"]),
        "tokenizer.ggml.padding_token_id": (U32, special["[PAD]"]),
        "tokenizer.ggml.mask_token_id": (U32, special["[MASK]"]),
        "ruvllm.writer_version": (U32, WRITER_VERSION),
        "ruvllm.source_sha256": (S, sha.hexdigest()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    gguf.write(path, meta, tensors)
    return path


def _valid(path: Path) -> bool:
    try:
        return gguf.metadata(path).get("ruvllm.writer_version") == WRITER_VERSION
    except (OSError, gguf.GGUFError):
        return False


def ensure_gguf(model_dir=None, dtype: str = DTYPE) -> Path:
    """The GGUF file for the installed model: an existing, well-formed one from gguf_dirs(), or
    one built now in the first directory that can be written."""
    model_dir = Path(model_dir) if model_dir is not None else find_model_dir()
    name = gguf_name(model_dir, dtype)
    dirs = gguf_dirs()
    for d in dirs:
        if _valid(d / name):
            return d / name
    failures = []
    for d in dirs:
        try:
            return build_gguf(model_dir, d / name, dtype)
        except OSError as e:
            failures.append(f"{d}: {e.strerror or e}")
    raise RuvllmError(UNDEFINED_FILE, f"cannot write the embedding model's GGUF file {name}",
                      hint=f"Set {ENV_CACHE_DIR} to a directory the server can write, or "
                           f"ruvllm.embedder = numpy.",
                      detail="; ".join(failures))


# --------------------------------------------------------------------------------------------
# The embedder


class LlamaEmbedder(Embedder):
    """Embedder's tokenisation and API, llama.cpp's forward pass over the GGUF file."""

    kind = "llama"

    def __init__(self, model_dir=None, gguf_path=None, dtype: str = DTYPE, threads: int = THREADS,
                 bulk_tokens: int | None = BULK_TOKENS):
        """bulk_tokens: an embed() call of more tokens goes to the numpy forward (None: never)."""
        self._ctx = self._model = None
        self._bulk = None
        self.bulk_tokens = bulk_tokens
        super().__init__(model_dir, load_weights=False)
        try:
            import llama_cpp
        except ImportError as e:
            raise RuvllmError(UNDEFINED_FILE, f"llama-cpp-python is not importable: {e}",
                              hint="pip install -r python/requirements.txt, or ruvllm.embedder = numpy.")
        self._ll = ll = llama_cpp
        self.gguf_path = Path(gguf_path) if gguf_path is not None else ensure_gguf(self.model_dir, dtype)
        self._lock = threading.Lock()
        _quiet(ll)
        ll.llama_backend_init()
        mparams = ll.llama_model_default_params()
        # Memory-mapped, so backends share the file's pages (as they share the safetensors' for numpy).
        fields = {f[0] for f in type(mparams)._fields_}
        if "load_mode" in fields:
            mparams.load_mode = ll.LLAMA_LOAD_MODE_MMAP
        elif "use_mmap" in fields:
            mparams.use_mmap = True
        mparams.n_gpu_layers = 0
        # No extra buffer types (AMX, repacking): they copy the matrices into private memory
        # (+20 MiB per backend at f16) and are no faster for a query's few tokens (measured).
        if "use_extra_bufts" in fields:
            mparams.use_extra_bufts = False
        load = getattr(ll, "llama_model_load_from_file", None) or ll.llama_load_model_from_file
        self._model = load(str(self.gguf_path).encode(), mparams)
        if not self._model:
            raise RuvllmError(UNDEFINED_FILE, f"llama.cpp could not load {self.gguf_path}")
        cparams = ll.llama_context_default_params()
        # No KV cache (an encoder), so n_ctx only bounds each sequence: llama.cpp gives every one
        # of n_seq_max sequences n_ctx / n_seq_max positions, which must reach MAX_TOKENS.
        cparams.n_ctx = MAX_TOKENS * BATCH_SEQUENCES
        cparams.n_batch = cparams.n_ubatch = BATCH_TOKENS
        cparams.n_seq_max = BATCH_SEQUENCES
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.embeddings = True
        cparams.pooling_type = _POOLING_MEAN
        init = getattr(ll, "llama_init_from_model", None) or ll.llama_new_context_with_model
        self._ctx = init(self._model, cparams)
        if not self._ctx:
            raise RuvllmError(UNDEFINED_FILE, f"llama.cpp could not make a context for {self.gguf_path}")
        n_embd = ll.llama_model_n_embd(self._model) if hasattr(ll, "llama_model_n_embd") \
            else ll.llama_n_embd(self._model)
        if n_embd != DIM:
            raise RuvllmError(UNDEFINED_FILE, f"{self.gguf_path}: {n_embd}-d embeddings, not {DIM}")

        # The batch's arrays are ours (numpy), filled with vector operations; llama_batch_init's
        # per-token seq_id allocations would need a Python loop per token. Never llama_batch_free'd.
        cap = BATCH_TOKENS
        self._tokens = np.zeros(cap, dtype=np.int32)
        self._pos = np.zeros(cap, dtype=np.int32)
        self._n_seq_id = np.ones(cap, dtype=np.int32)
        self._seq = np.zeros(cap, dtype=np.int32)
        self._outputs = np.ones(cap, dtype=np.int8)
        i32p = ctypes.POINTER(ctypes.c_int32)
        base = self._seq.ctypes.data
        self._seq_ptrs = (i32p * cap)(*[ctypes.cast(base + 4 * i, i32p) for i in range(cap)])
        b = self._batch = ll.llama_batch()
        b.token = self._tokens.ctypes.data_as(ctypes.POINTER(ll.llama_token))
        b.embd = None
        b.pos = self._pos.ctypes.data_as(ctypes.POINTER(ll.llama_pos))
        b.n_seq_id = self._n_seq_id.ctypes.data_as(i32p)
        b.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(ctypes.POINTER(ll.llama_seq_id)))
        b.logits = self._outputs.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        # Encoder-only models are run by llama_encode; llama_decode routes them there too in
        # newer llama.cpp, so either works.
        self._run = getattr(ll, "llama_encode", None) or ll.llama_decode

    def embed(self, texts):
        if self.bulk_tokens is not None and len(texts) > 1:
            ids_list, counts, truncated = self.tokenize(texts)
            if sum(len(x) for x in ids_list) > self.bulk_tokens:
                if self._bulk is None:
                    self._bulk = Embedder(self.model_dir)
                return self._bulk.embed_ids(ids_list, counts, truncated)
            return self.embed_ids(ids_list, counts, truncated)
        return super().embed(texts)

    def _batches(self, order, ids_list):
        """Groups of texts (in length order) that fit one llama.cpp batch: no padding, so the only
        bounds are the token and sequence counts."""
        start, n = 0, len(order)
        while start < n:
            end, tokens = start, 0
            while end < n and end - start < BATCH_SEQUENCES \
                    and tokens + len(ids_list[order[end]]) <= BATCH_TOKENS:
                tokens += len(ids_list[order[end]])
                end += 1
            yield order[start:end]
            start = end

    def _embed_ids(self, batch: list[list[int]]) -> np.ndarray:
        ll = self._ll
        lengths = np.fromiter((len(x) for x in batch), dtype=np.int32, count=len(batch))
        n = int(lengths.sum())
        starts = np.cumsum(lengths) - lengths
        self._tokens[:n] = np.fromiter((t for x in batch for t in x), dtype=np.int32, count=n)
        self._pos[:n] = np.arange(n, dtype=np.int32) - np.repeat(starts, lengths)
        self._seq[:n] = np.repeat(np.arange(len(batch), dtype=np.int32), lengths)
        out = np.empty((len(batch), DIM), dtype=np.float32)
        with self._lock:
            self._batch.n_tokens = n
            rc = self._run(self._ctx, self._batch)
            if rc != 0:
                raise RuvllmError("XX000", f"llama.cpp failed to embed a batch of {len(batch)} "
                                           f"texts ({n} tokens): error {rc}")
            for s in range(len(batch)):
                ptr = ll.llama_get_embeddings_seq(self._ctx, s)
                if not ptr:
                    raise RuvllmError("XX000", "llama.cpp returned no pooled embedding")
                out[s] = np.ctypeslib.as_array(ptr, shape=(DIM,))
        norms = np.sqrt(np.einsum("bh,bh->b", out, out))[:, None]
        return out / np.maximum(norms, np.float32(1e-12))

    def close(self) -> None:
        ll = getattr(self, "_ll", None)
        if ll is None:
            return
        if self._ctx:
            ll.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            free = getattr(ll, "llama_model_free", None) or ll.llama_free_model
            free(self._model)
            self._model = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _quiet(ll) -> None:
    """llama.cpp logs every tensor at load to stderr (the server log); only errors should go there."""
    try:
        from llama_cpp import _logger
    except ImportError:
        return
    set_verbose = getattr(_logger, "set_verbose", None)
    if set_verbose is not None:
        set_verbose(False)


def main(argv=None) -> int:
    """`python3 -m ruvllm.embedding_llama [DIR]`: builds the GGUF file into DIR (by default the
    install's embedding directory), as `make install` does. Without the model installed it says
    so and succeeds: a backend then builds the file on first use, in gguf_dirs()."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    target = Path(argv[0]) if argv else install_dir()
    if target is None:
        print("embedding_llama: no directory given and not an installed package", file=sys.stderr)
        return 2
    try:
        model_dir = find_model_dir()
    except RuvllmError as e:
        print(f"embedding GGUF not built: {e.message} (a backend builds it on first use)")
        return 0
    path = target / gguf_name(model_dir)
    if _valid(path):
        print(f"embedding GGUF up to date: {path}")
        return 0
    build_gguf(model_dir, path)
    # Files of earlier model installs or writer versions: only ours, by name.
    for old in target.glob(f"{FILE_STEM}.*.gguf"):
        if old != path and old.name.count(".") == 3:
            old.unlink()
    print(f"embedding GGUF built: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["LlamaEmbedder", "build_gguf", "ensure_gguf", "gguf_dirs", "gguf_name", "BATCH_TOKENS",
           "MAX_TOKENS"]
