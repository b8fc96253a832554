"""ruvllm.embedding_llama: all-MiniLM-L6-v2 as a GGUF file run by llama.cpp, against
sentence-transformers' own vectors (tests/fixtures/minilm_reference.json) and the numpy forward.

Needs the model files, tokenizers and llama-cpp-python (all in the root); skips without them.
"""

import hashlib
import os

import numpy as np
import pytest

from ruvllm import embedding as E
from ruvllm import embedding_llama as EL
from ruvllm import gguf
from ruvllm.errors import RuvllmError


@pytest.fixture(scope="module")
def built(model_dir, tmp_path_factory):
    return EL.build_gguf(model_dir, tmp_path_factory.mktemp("gguf") / EL.gguf_name(model_dir))


@pytest.fixture(scope="module")
def llama(model_dir, built):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    return EL.LlamaEmbedder(model_dir, gguf_path=built)


def cosines(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- the file --------------------------------------------------------------------------------

def test_built_file_is_a_bert_gguf_the_reader_accepts(model_dir, built):
    info = gguf.check(str(built))
    # token, type and position embeddings, their LayerNorm (2), and 12 tensors in each of 6 layers
    # (weight and bias of attn_qkv, attn_output, attn_output_norm, ffn_up, ffn_down,
    # layer_output_norm).
    assert info["tensors"] == 5 + 6 * 12
    meta = gguf.metadata(str(built))
    assert meta["general.architecture"] == "bert"
    assert (meta["bert.block_count"], meta["bert.embedding_length"], meta["bert.feed_forward_length"],
            meta["bert.attention.head_count"], meta["bert.context_length"]) == (6, 384, 1536, 12, 512)
    assert meta["bert.pooling_type"] == 1 and meta["bert.attention.causal"] is False
    assert meta["tokenizer.ggml.model"] == "bert" and meta["tokenizer.ggml.tokens"] == 30522
    # tokenizer.json: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103.
    assert (meta["tokenizer.ggml.padding_token_id"], meta["tokenizer.ggml.unknown_token_id"],
            meta["tokenizer.ggml.cls_token_id"], meta["tokenizer.ggml.seperator_token_id"],
            meta["tokenizer.ggml.mask_token_id"]) == (0, 100, 101, 102, 103)
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert meta["ruvllm.source_sha256"] == digest
    assert meta["ruvllm.writer_version"] == EL.WRITER_VERSION
    # f16 matrices and token embeddings (22.4M values), f32 rest (0.2M): 43.5 MiB. The pooler
    # (unused for mean pooling) is left out.
    assert 43 * 2**20 < info["data_bytes"] < 44 * 2**20
    assert meta["general.file_type"] == 1


def test_name_changes_with_the_source_and_dtype(model_dir, tmp_path):
    fake = tmp_path / "model"
    fake.mkdir()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        (fake / name).write_bytes(b"x")
    first = EL.gguf_name(fake)
    assert first == EL.gguf_name(fake)
    assert EL.gguf_name(fake, "f32") != first
    os.utime(fake / "model.safetensors", ns=(1, 1))
    assert EL.gguf_name(fake) != first
    assert EL.gguf_name(model_dir).startswith("all-MiniLM-L6-v2.f16.")


def test_ensure_gguf_reuses_a_good_file_and_rebuilds_a_broken_one(model_dir, built, tmp_path, monkeypatch):
    monkeypatch.setenv(EL.ENV_CACHE_DIR, str(tmp_path))
    target = tmp_path / built.name
    target.write_bytes(built.read_bytes())
    stamp = target.stat().st_mtime_ns
    assert EL.ensure_gguf(model_dir) == target and target.stat().st_mtime_ns == stamp
    target.write_bytes(built.read_bytes()[: 2**20])  # cut short, as by a failed copy
    assert EL.ensure_gguf(model_dir) == target
    assert gguf.check(str(target))["tensors"] == 77
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gguf-")]


def test_ensure_gguf_skips_a_directory_it_cannot_write(model_dir, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: every directory is writable")
    monkeypatch.setenv(EL.ENV_CACHE_DIR, str(locked))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = EL.ensure_gguf(model_dir)
    assert path.parent == tmp_path / "cache" / "ruvllm"


# --- the vectors -----------------------------------------------------------------------------

def test_llama_matches_sentence_transformers(llama, reference):
    cases = reference["cases"]
    result = llama.embed([c["text"] for c in cases])
    cos = cosines(result.vectors, [c["vector"] for c in cases])
    print(f"\nllama.cpp vs sentence-transformers: minimum cosine {cos.min():.9f}")
    assert cos.min() >= 0.9999, list(zip(cos, [c["text"][:40] for c in cases]))
    assert result.token_counts == [c["token_count"] for c in cases]
    assert result.truncated == [c["truncated"] for c in cases]


def test_llama_matches_numpy(llama, numpy_embedder, reference):
    texts = [c["text"] for c in reference["cases"]] + [
        "How do I configure shared_buffers?", "hi", "Grüße aus München 🐘", "SELECT 1;"]
    a, b = llama.embed(texts), numpy_embedder.embed(texts)
    assert cosines(a.vectors, b.vectors).min() >= 0.9999
    assert a.token_counts == b.token_counts


def test_one_batch_equals_one_by_one(llama, reference):
    # Texts of different lengths share a llama.cpp batch as separate sequences, without padding.
    texts = [c["text"] for c in reference["cases"]] * 3
    together = llama.embed(texts).vectors
    alone = np.stack([llama.embed_one(t)[0] for t in texts])
    assert cosines(together, alone).min() >= 0.99999


def test_many_short_texts_span_several_batches(llama):
    texts = [f"document number {i} is about topic {i % 7}" for i in range(300)]
    result = llama.embed(texts)
    assert result.vectors.shape == (300, 384) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    # Alone, a text takes llama.cpp's single-row kernels, in a batch its matrix ones: the same
    # vector to rounding (6e-5 at most per component, measured).
    alone = llama.embed_one(texts[123])[0]
    assert float(result.vectors[123] @ alone) >= 0.99999


def test_bulk_calls_go_to_the_numpy_forward(model_dir, built, numpy_embedder):
    emb = EL.LlamaEmbedder(model_dir, gguf_path=built, bulk_tokens=40)
    few = ["a short text", "another short one"]         # 10 tokens: llama.cpp
    emb.embed(few)
    assert emb._bulk is None
    many = [f"document {i} says something about backups" for i in range(8)]  # 80 tokens: numpy
    result = emb.embed(many)
    assert isinstance(emb._bulk, E.Embedder)
    np.testing.assert_array_equal(result.vectors, numpy_embedder.embed(many).vectors)
    assert result.token_counts == numpy_embedder.embed(many).token_counts
    emb.close()


def test_bad_text_is_refused_as_by_numpy(llama):
    with pytest.raises(RuvllmError) as ei:
        llama.embed(["fine", "  "])
    assert ei.value.sqlstate == "22023" and "text #2 of 2" in ei.value.message


# --- choosing ----------------------------------------------------------------------------------

def test_setting_outside_postgres_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(E.ENV_EMBEDDER, raising=False)
    assert E.embedder_kind() == "llama"
    monkeypatch.setenv(E.ENV_EMBEDDER, "numpy")
    assert E.embedder_kind() == "numpy"
    monkeypatch.setenv(E.ENV_EMBEDDER, "bogus")
    assert E.embedder_kind() == "llama"


def test_get_embedder_by_kind(model_dir, built, monkeypatch):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    monkeypatch.setattr(E, "_loaded", {})
    monkeypatch.setenv(EL.ENV_CACHE_DIR, str(built.parent))
    assert type(E.get_embedder("numpy")) is E.Embedder
    emb = E.get_embedder("llama")
    assert isinstance(emb, EL.LlamaEmbedder) and emb.gguf_path == built
    assert E.get_embedder("llama") is emb


def test_llama_unavailable_falls_back_to_numpy(model_dir, monkeypatch):
    def unavailable(*args, **kwargs):
        raise RuvllmError(E.UNDEFINED_FILE, "llama-cpp-python is not importable: no module")
    monkeypatch.setattr(E, "_loaded", {})
    monkeypatch.setattr(E, "_fell_back", [])
    monkeypatch.setattr(E.errors, "pending_warnings", [])
    monkeypatch.setattr(EL, "LlamaEmbedder", unavailable)
    emb = E.get_embedder("llama")
    assert type(emb) is E.Embedder and E.get_embedder("numpy") is emb
    assert E._fell_back == ["llama-cpp-python is not importable: no module"]
    # One WARNING for the client, which the SQL glue sends when the call returns.
    [(message, _detail, _hint)] = E.errors.pending_warnings
    assert message.startswith("ruvllm.embedder = llama is unavailable (llama-cpp-python is not importable")
    # A missing model is no reason to fall back: numpy could not embed either.
    monkeypatch.setattr(E, "_loaded", {})
    monkeypatch.setattr(E, "find_model_dir", lambda: (_ for _ in ()).throw(
        RuvllmError(E.UNDEFINED_FILE, "embedding model all-MiniLM-L6-v2 not found")))
    with pytest.raises(RuvllmError, match="not found"):
        E.get_embedder("llama")
