"""Chunking, MinHash and metadata checks (pure)."""
import numpy as np
import pytest

from ruvllm import errors, memory, sqlglue, textutil


def test_short_text_is_one_chunk():
    assert textutil.chunk_text("  one short paragraph.  ") == ["one short paragraph."]


def test_long_text_chunks_respect_limit_and_keep_every_word():
    text = "\n\n".join(" ".join(f"w{p}_{i}." for i in range(70)) for p in range(5))  # 350 words
    chunks = textutil.chunk_text(text, max_words=100)
    assert all(len(c.split()) <= 100 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    # Each 70-word paragraph fits a chunk and no two fit together: one chunk per paragraph.
    assert len(chunks) == 5


def test_overlong_sentence_is_cut_at_words():
    text = " ".join(["word"] * 250)
    chunks = textutil.chunk_text(text, max_words=100)
    assert [len(c.split()) for c in chunks] == [100, 100, 50]


def test_shingles_of_short_and_normal_text():
    assert textutil.shingles("Hello, World") == {"hello world"}
    assert textutil.shingles("a b c d") == {"a b c", "b c d"}
    assert textutil.shingles("!!!") == set()


def test_minhash_estimates_jaccard():
    a = " ".join(f"token{i}" for i in range(200))
    b = " ".join(f"token{i}" for i in range(100, 300))
    # 3-shingles: a and b share 98 of 296 distinct shingles, Jaccard = 98/298 ~ 0.33
    est = textutil.jaccard_estimate(textutil.minhash(a), textutil.minhash(b))
    assert est == pytest.approx(98 / 298, abs=0.12)
    assert textutil.jaccard_estimate(textutil.minhash(a), textutil.minhash(a)) == 1.0


def test_near_duplicates_share_a_band_and_unrelated_texts_do_not():
    a = "The background worker trains the router every ten minutes from the replay buffer."
    b = "The background worker trains the router every ten minutes from the replay buffer!"
    c = "Sourdough bread needs a long fermentation and a hot oven."
    bands = lambda t: set(textutil.minhash_bands(textutil.minhash(t)))
    assert bands(a) & bands(b)
    assert not bands(a) & bands(c)
    assert len(textutil.minhash_bands(textutil.minhash(a))) == textutil.MINHASH_BANDS


def test_metadata_checks():
    assert memory.check_metadata(None) == {}
    assert memory.check_metadata('{"tags": ["a"], "extra": 1}') == {"tags": ["a"], "extra": 1}
    for bad in ("[1]", '{"tags": "a"}', '{"tags": [1]}', '{"version": "2"}', '{"confidence": 1.5}',
                '{"version": true}'):
        with pytest.raises(errors.RuvllmError) as e:
            memory.check_metadata(bad)
        assert e.value.sqlstate == "22023"
    with pytest.raises(errors.RuvllmError) as e:
        memory.check_metadata("{not json")
    assert e.value.sqlstate == "22P02"


def test_vector_literal_round_trip():
    v = np.array([0.5, -0.25, 1e-8], dtype=np.float32)
    assert sqlglue.parse_vector(sqlglue.vector_literal(v)) == pytest.approx(v)


def test_vector_send_is_pgvectors_binary_form():
    v = np.array([0.5, -0.25, 1e-8], dtype=np.float32)
    # int16 dimensions 3, int16 0, then big-endian float4s: 0.5 is 3f000000, -0.25 is be800000.
    assert sqlglue.vector_send(v)[:12].hex() == "00030000" "3f000000" "be800000"
    assert np.array_equal(sqlglue.vector_from_send(sqlglue.vector_send(v)), v)
