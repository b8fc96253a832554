"""Router feature vector (pure): each slice by hand, shape/dtype, describe(), bad input."""
import json
import math
import re

import numpy as np
import pytest

from ruvllm import features as F
from ruvllm import graph, memory
from ruvllm.errors import RuvllmError

D = 384


def q(text, tokens=10, user_frequency=0):
    x = F.query_features(text, tokens, user_frequency)
    return dict(zip(F.FEATURE_NAMES[F.SLICES["query"]], x.tolist()))


def hot(values, prefix):
    return [name for name, v in values.items() if name.startswith(prefix) and v == 1.0]


def basis(i, scale=1.0):
    v = np.zeros(D, dtype=np.float32)
    v[i] = scale
    return v


def row(distance, hop=0, node_type="Document", via_rel=None, edge_weight=None):
    return dict(distance=distance, hop=hop, node_type=node_type, via_rel=via_rel,
                edge_weight=edge_weight)


def search(rows, k, **kw):
    x = F.search_features(rows, k, **kw)
    return x, dict(zip(F.FEATURE_NAMES[F.SLICES["search"]], x.tolist()))


# --- layout ------------------------------------------------------------------------------------

def test_slices_tile_the_input_and_names_are_unique():
    assert F.INPUT_DIM == 128
    bounds = [(s.start, s.stop) for s in F.SLICES.values()]
    assert bounds == [(0, 32), (32, 48), (48, 96), (96, 128)]
    assert len(F.FEATURE_NAMES) == 128 and len(set(F.FEATURE_NAMES)) == 128
    assert F.FEATURE_NAMES[0] == "token_count"
    assert F.FEATURE_NAMES[32] == "norm"
    assert F.FEATURE_NAMES[48] == "k"
    assert F.FEATURE_NAMES[96] == "latency_budget"
    # Padding is named by its absolute dim.
    assert F.FEATURE_NAMES[88:96] == [f"pad_{i}" for i in range(88, 96)]
    assert F.FEATURE_NAMES[121:] == [f"pad_{i}" for i in range(121, 128)]


def test_node_types_and_relations_match_memory():
    # features.py keeps its own copies so the layout stays fixed; a new type must be added there.
    assert F.NODE_TYPES == memory.NODE_TYPES
    assert F.RELS == graph.RELS


def test_documented_dims_match_names():
    n = F.FEATURE_NAMES
    assert n[6:14] == [f"lang_{x}" for x in F.LANGUAGES]
    assert n[14:22] == [f"domain_{x}" for x in F.DOMAINS]
    assert n[22:26] == [f"type_{x}" for x in F.QUERY_TYPES]
    assert n[31] == "chars_per_token"
    assert n[33:41] == [f"pc_{i}" for i in range(8)]
    assert n[46:48] == ["cluster_cosine", "cluster_index"]
    assert n[51:55] == ["dist_mean", "dist_std", "dist_min", "dist_max"]
    assert n[55] == "dist_hist_0" and n[62] == "dist_hist_7"
    assert n[74:79] == ["rel_cites", "rel_follows", "rel_sametopic", "rel_agentstep", "rel_derived"]
    assert n[82:88] == ["node_query", "node_document", "node_agentstep", "node_fact",
                        "node_qapair", "node_concept"]
    assert n[102] == "quality_0" and n[110] == "latency_0" and n[118:121] == [
        "max_tokens", "forced_model", "forced_temperature"]
    # Every used name is in the module documentation, directly or as the start of a range.
    doc = F.__doc__
    for name in n:
        if not name.startswith("pad_"):
            assert re.sub(r"\d+", "0", name) in doc, name


# --- query -------------------------------------------------------------------------------------

def test_query_counts_by_hand():
    x = F.query_features("one two three", 15, user_frequency=3)
    assert x.dtype == np.float32 and x.shape == (32,)
    assert x[0] == pytest.approx(1 / 3)                 # log2(16) / 12
    assert x[1] == pytest.approx(math.log2(14) / 16)    # 13 characters
    assert x[2] == pytest.approx(2 / 12)                # log2(1 + 3 words) / 12
    assert x[3] == pytest.approx((11 / 3) / 16)         # 11 non-space characters over 3 words
    assert x[4] == pytest.approx(1 / 8)                 # one sentence
    assert x[5] == pytest.approx(1 / 8)                 # one line
    assert x[26] == pytest.approx(2 / 8)                # log2(1 + 3) / 8
    assert x[31] == pytest.approx(13 / 15 / 8)


def test_query_character_shares():
    v = q("Ab1, c2!\nXY", tokens=4)
    # non-space: A b 1 , c 2 ! X Y = 9; letters A b c X Y = 5 (3 upper)
    assert v["punct_share"] == pytest.approx(2 / 9)
    assert v["digit_share"] == pytest.approx(2 / 9)
    assert v["upper_share"] == pytest.approx(3 / 5)
    assert v["non_ascii_share"] == 0.0
    assert v["line_count"] == pytest.approx(math.log2(3) / 8)
    assert v["chars_per_token"] == pytest.approx(11 / 4 / 8)
    assert q("ab", tokens=0)["chars_per_token"] == 0.0
    assert q("a" * 100, tokens=1)["chars_per_token"] == 1.0


@pytest.mark.parametrize("text, lang", [
    ("What is the capital of France and why is it famous?", "en"),
    ("Wie kann ich die Datenbank sichern und warum ist das wichtig?", "de"),
    ("Pourquoi le ciel est bleu et comment est-ce que cela fonctionne?", "fr"),
    ("¿Cómo puedo aprender español muy rápido con mi familia?", "es"),
    ("東京の天気はどうですか？", "cjk"),
    ("Как настроить репликацию базы данных?", "other_script"),
    ("Lorem ipsum dolor sit amet", "other_latin"),
    ("12345 + 678 = ?", "unknown"),
    ("", "unknown"),
])
def test_language_one_hot(text, lang):
    v = q(text)
    assert hot(v, "lang_") == [f"lang_{lang}"]


@pytest.mark.parametrize("text, domain", [
    ("How do I speed up a slow SELECT query on a PostgreSQL table with an index?", "ops"),
    ("My Python function raises an exception in the loop", "code"),
    ("Prove the theorem that this integral equation has one solution", "math"),
    ("What dose of this drug treats the infection symptoms?", "medicine"),
    ("Is this contract clause enforceable in court?", "law"),
    ("Should I invest in stocks or bonds given inflation?", "finance"),
    ("Explain photosynthesis and the role of each molecule", "science"),
    ("Tell me a story about a dragon", "general"),
])
def test_domain_one_hot(text, domain):
    assert hot(q(text), "domain_") == [f"domain_{domain}"]


@pytest.mark.parametrize("text, kind", [
    ("How does HNSW work?", "question"),
    ("is it raining", "question"),
    ("Explain HNSW in two sentences.", "instruction"),
    ("Could you, please", "question"),
    ("A short summary, please.", "instruction"),
    ("def f(x):\n    return x + 1", "code"),
    ("Why does this fail?\n```\nSELECT 1\n```", "code"),
    ("x = foo(a[1], b[2]);", "code"),
    ("The weather today.", "other"),
])
def test_query_type_one_hot(text, kind):
    assert hot(q(text), "type_") == [f"type_{kind}"]


def test_query_one_hots_are_exactly_one_each():
    for text in ["", "hello", "東京の天気はどうですか？", "?!", "SELECT * FROM t"]:
        x = F.query_features(text, 3)
        assert x[6:14].sum() == 1.0 and x[14:22].sum() == 1.0 and x[22:26].sum() == 1.0


def test_empty_text_is_finite():
    x = F.query_features("", 0)
    assert np.isfinite(x).all()
    assert x[:6].tolist() == [0.0] * 6


def test_long_text_stays_in_scale():
    x = F.query_features("word. " * 50_000, 60_000, user_frequency=10_000)
    # 50k sentences is about the most 100k characters hold; log scaling keeps it near 2.
    assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() < 2.0


# --- embedding ---------------------------------------------------------------------------------

def e(vec, **kw):
    x = F.embedding_features(vec, **kw)
    assert x.dtype == np.float32 and x.shape == (16,)
    return dict(zip(F.FEATURE_NAMES[F.SLICES["embedding"]], x.tolist()))


def test_embedding_of_a_basis_vector():
    v = e(basis(5, 3.0), components=np.stack([basis(5), basis(6), -basis(5)]))
    assert v["norm"] == pytest.approx(1.5)                # 2 * 3 / (1 + 3)
    assert [v[f"pc_{i}"] for i in range(8)] == pytest.approx([1, 0, -1, 0, 0, 0, 0, 0])
    assert v["entropy"] == pytest.approx(0.0, abs=1e-6)
    assert v["sparsity"] == pytest.approx(383 / 384)
    assert v["max"] == 1.0 and v["min"] == 0.0
    assert v["mean_direction"] == pytest.approx(1 / math.sqrt(D))
    assert v["cluster_cosine"] == 0.0 and v["cluster_index"] == 0.0


def test_embedding_of_an_even_vector():
    v = e(np.full(D, -2.0))
    n = 2 * math.sqrt(D)
    assert v["norm"] == pytest.approx(2 * n / (1 + n))
    assert v["entropy"] == pytest.approx(1.0, abs=1e-5)
    assert v["sparsity"] == 0.0
    assert v["max"] == pytest.approx(-1 / math.sqrt(D)) and v["min"] == pytest.approx(v["max"])
    assert v["mean_direction"] == pytest.approx(-1.0)


def test_sparsity_threshold_is_a_tenth_of_the_rms_coordinate():
    u = np.full(D, 1.0)
    u[:100] = 0.05  # well under a tenth of the others once normalised
    assert e(u)["sparsity"] == pytest.approx(100 / 384)


def test_nearest_centroid():
    cents = np.stack([basis(1), basis(0, 2.0), -basis(0), basis(0) + basis(1)])
    v = e(basis(0), centroids=cents)
    assert v["cluster_cosine"] == pytest.approx(1.0)
    assert v["cluster_index"] == pytest.approx(2 / 4)
    v = e(basis(0) + basis(1) * 0.1, centroids=cents[:1])
    assert v["cluster_cosine"] == pytest.approx(0.1 / math.sqrt(1.01), rel=1e-5)
    assert v["cluster_index"] == 1.0


def test_default_components_are_fixed_scaled_and_clipped():
    rng = np.random.default_rng(3)
    vec = rng.standard_normal(D).astype(np.float32)
    a, b = F.embedding_features(vec), F.embedding_features(vec.tolist())
    np.testing.assert_array_equal(a, b)
    dirs = np.random.default_rng(0x5EED).standard_normal((8, D))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    want = np.clip(dirs @ (vec / np.linalg.norm(vec)) * math.sqrt(D) / 4, -1, 1)
    np.testing.assert_allclose(a[1:9], want, atol=1e-5)
    # A direction itself projects to the clip.
    assert F.embedding_features(dirs[2])[3] == 1.0
    assert F.embedding_features(dirs[2])[0] == pytest.approx(1.0)  # unit norm


def test_fewer_components_than_eight_pad_with_zeros():
    x = F.embedding_features(basis(0), components=basis(0)[None, :])
    assert x[1:9].tolist() == [1.0] + [0.0] * 7


def test_zero_vector():
    v = e(np.zeros(D), centroids=np.ones((2, D)))
    assert v["sparsity"] == 1.0
    assert all(val == 0.0 for name, val in v.items() if name != "sparsity")


# --- search ------------------------------------------------------------------------------------

def test_two_seed_distances_by_hand():
    x, v = search([row(0.3), row(0.1)], k=2)
    assert x.dtype == np.float32 and x.shape == (48,)
    assert x[3:7] == pytest.approx([0.2, 0.1, 0.1, 0.3])   # dims 51..54: mean, std, min, max
    assert v["k"] == pytest.approx(math.log2(3) / 10)
    assert v["n_rows"] == pytest.approx(math.log2(3) / 10)
    assert v["seed_fill"] == 1.0
    assert [v[f"dist_hist_{i}"] for i in range(8)] == [0.5, 0, 0.5, 0, 0, 0, 0, 0]
    p = np.array([1.0, math.exp(-0.2 / 0.05)])
    p /= p.sum()
    assert v["softmax_entropy"] == pytest.approx(-(p * np.log(p)).sum() / math.log(2), rel=1e-5)
    assert v["top_gap"] == pytest.approx(0.2)
    assert v["near_best_share"] == 0.5
    assert v["recall_prior"] == pytest.approx(1 - 0.5 * 2 / 64)
    assert v["max_hop"] == 0.0 and v["hop_0_share"] == 1.0
    assert v["coherence"] == pytest.approx(0.9 * 0.7)          # no embeddings: s_i s_j
    assert v["coherence_measured"] == 0.0
    assert v["node_document"] == 1.0


def test_equal_distances_have_full_entropy_and_last_bin_takes_the_tail():
    _, v = search([row(1.5), row(1.5), row(0.9)], k=3)
    assert v["dist_hist_7"] == 1.0
    _, v = search([row(0.4)] * 4, k=4)
    assert v["softmax_entropy"] == pytest.approx(1.0)
    assert v["near_best_share"] == 1.0 and v["top_gap"] == 0.0 and v["dist_std"] == 0.0


def test_graph_expansion():
    rows = [row(0.1), row(0.2, node_type="Fact"),
            row(0.5, hop=1, node_type="Concept", via_rel="Cites", edge_weight=1.0),
            row(0.7, hop=2, node_type="Concept", via_rel="SameTopic", edge_weight=0.5)]
    _, v = search(rows, k=10, ef_search=5)
    assert v["seed_fill"] == pytest.approx(0.2)
    assert v["recall_prior"] == 0.5                      # ef_search below k counts as k
    assert v["max_hop"] == pytest.approx(2 / 3)
    assert [v[f"hop_{i}_share"] for i in range(4)] == [0.5, 0.25, 0.25, 0.0]
    assert v["rows_per_seed"] == pytest.approx(1 / 8)    # log2(1 + 2/2) / 8
    assert v["edge_weight"] == pytest.approx(math.log2(1.75))
    assert (v["rel_cites"], v["rel_sametopic"], v["rel_follows"]) == (0.5, 0.5, 0.0)
    assert v["expanded_dist_mean"] == pytest.approx(0.6)
    assert v["dist_mean"] == pytest.approx(0.15)         # hop 0 only
    assert (v["node_document"], v["node_fact"], v["node_concept"]) == (0.25, 0.25, 0.5)


def test_coherence_from_embeddings():
    rows = [row(0.1), row(0.2), row(0.3)]
    _, v = search(rows, k=3, embeddings=np.stack([basis(0), basis(0, 5.0), basis(0)]))
    assert v["coherence"] == pytest.approx(1.0) and v["coherence_measured"] == 1.0
    _, v = search(rows, k=3, embeddings=np.stack([basis(0), basis(1), basis(2)]))
    assert v["coherence"] == pytest.approx(0.0, abs=1e-7)
    _, v = search(rows[:2], k=3, embeddings=np.stack([basis(0), basis(0) + basis(1)]))
    assert v["coherence"] == pytest.approx(1 / math.sqrt(2))


def test_empty_search_is_zeros_not_nan():
    x, v = search([], k=10)
    assert np.isfinite(x).all()
    assert v["k"] == pytest.approx(math.log2(11) / 10)
    assert v["recall_prior"] == pytest.approx(1 - 0.5 * 10 / 64)
    assert all(val == 0.0 for name, val in v.items() if name not in ("k", "recall_prior"))
    x, _ = search([], k=0)
    assert not x.any()
    assert not F.search_features(None, 0).any()


def test_one_row_and_unknown_types():
    x, v = search([row(0.2, node_type="Other", via_rel=None)], k=1)
    assert np.isfinite(x).all()
    assert v["dist_std"] == 0.0 and v["softmax_entropy"] == 0.0 and v["coherence"] == 0.0
    assert all(v[f"node_{t.lower()}"] == 0.0 for t in ("Query", "Document"))


def test_only_expanded_rows():
    # Seeds filtered out by the caller: no hop-0 statistics, and no division by zero.
    x, v = search([row(0.4, hop=1, via_rel="Follows")], k=5)
    assert np.isfinite(x).all()
    assert v["dist_mean"] == 0.0 and v["rows_per_seed"] == 0.0 and v["rel_follows"] == 1.0


# --- system ------------------------------------------------------------------------------------

def y(state):
    x = F.system_features(state)
    assert x.dtype == np.float32 and x.shape == (32,)
    return dict(zip(F.FEATURE_NAMES[F.SLICES["system"]], x.tolist()))


def test_system_defaults():
    v = y(F.SystemState())
    assert v["latency_budget"] == 0.0 and v["memory_available"] == 0.0 and v["max_tokens"] == 0.0
    assert (v["device_cpu"], v["device_gpu"]) == (1.0, 0.0)
    assert v["n_models"] == pytest.approx(math.log2(3) / 4)
    assert [v[f"quality_{i}"] for i in range(8)] == [0.5, 0.5, 0, 0, 0, 0, 0, 0]
    assert all(v[f"latency_{i}"] == 0.0 for i in range(8))


def test_system_by_hand():
    v = y(F.SystemState(latency_budget_ms=255, device="GPU", memory_available_mb=3 * 1024,
                        concurrent_requests=3, model_quality=[0.9, None, 0.25],
                        model_latency_ms=[15], max_tokens=255, forced_model=True, n_models=2))
    assert v["latency_budget"] == pytest.approx(0.5)
    assert (v["device_cpu"], v["device_gpu"]) == (0.0, 1.0)
    assert v["memory_available"] == pytest.approx(0.25)   # log2(1 + 3 GB) / 8
    assert v["concurrent"] == pytest.approx(0.25)
    assert v["n_models"] == pytest.approx(0.5)           # 3 slots: the quality list is longer
    assert [v[f"quality_{i}"] for i in range(4)] == pytest.approx([0.9, 0.5, 0.25, 0.0])
    assert [v[f"latency_{i}"] for i in range(3)] == pytest.approx([0.25, 0.0, 0.0])
    assert v["max_tokens"] == pytest.approx(0.5)
    assert (v["forced_model"], v["forced_temperature"]) == (1.0, 0.0)
    assert y(F.SystemState(device="cuda"))["device_gpu"] == 1.0


def test_decimal_numbers_are_accepted():
    from decimal import Decimal  # what plpy returns for numeric columns
    v = y(F.SystemState(model_quality=[Decimal("0.75")], latency_budget_ms=Decimal(255)))
    assert v["quality_0"] == 0.75 and v["latency_budget"] == pytest.approx(0.5)


def test_model_slots_cap_at_eight():
    v = y(F.SystemState(n_models=12, model_quality=[1.0] * 12))
    assert v["n_models"] == pytest.approx(math.log2(9) / 4)
    assert all(v[f"quality_{i}"] == 1.0 for i in range(8))


# --- whole vector ------------------------------------------------------------------------------

def example():
    rng = np.random.default_rng(7)
    vec = rng.standard_normal(D)  # float64 on purpose: the result must still be float32
    rows = [row(0.12 + 0.02 * i) for i in range(10)]
    rows += [row(0.5, hop=1, via_rel="SameTopic", edge_weight=0.8, node_type="Fact")] * 3
    state = F.SystemState(latency_budget_ms=800.0, model_quality=[0.7, 0.9],
                          model_latency_ms=[120.0, 900.0], max_tokens=512)
    text = "How do I speed up a slow SELECT query on a PostgreSQL table?"
    return text, 14, vec, rows, 10, state


def test_build_is_the_concatenation():
    text, tokens, vec, rows, k, state = example()
    cents = np.random.default_rng(1).standard_normal((16, D))
    x = F.build(text, tokens, vec, rows, k, state, user_frequency=2, centroids=cents, ef_search=40)
    assert x.dtype == np.float32 and x.shape == (128,)
    assert np.isfinite(x).all()
    assert x.min() >= -1.0 and x.max() <= 2.0
    np.testing.assert_array_equal(x[F.SLICES["query"]], F.query_features(text, tokens, 2))
    np.testing.assert_array_equal(x[F.SLICES["embedding"]], F.embedding_features(vec, None, cents))
    np.testing.assert_array_equal(x[F.SLICES["search"]], F.search_features(rows, k, None, 40))
    np.testing.assert_array_equal(x[F.SLICES["system"]], F.system_features(state))
    pads = [i for i, n in enumerate(F.FEATURE_NAMES) if n.startswith("pad_")]
    assert not x[pads].any()


def test_describe_round_trips_and_is_json():
    x = F.build(*example())
    d = F.describe(x)
    assert list(d) == ["query", "embedding", "search", "system"]
    json.dumps(d)
    back = np.zeros(128, dtype=np.float32)
    for key, feats in d.items():
        for name, val in feats.items():
            assert type(val) is float
            i = F.FEATURE_NAMES.index(name)
            assert F.SLICES[key].start <= i < F.SLICES[key].stop
            back[i] = val
    np.testing.assert_array_equal(back, x)
    assert sum(map(len, d.values())) == sum(not n.startswith("pad_") for n in F.FEATURE_NAMES)
    assert d["query"]["token_count"] == pytest.approx(math.log2(15) / 12)


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda: F.embedding_features(np.zeros(383)),
    lambda: F.embedding_features(np.zeros((2, D))),
    lambda: F.embedding_features([float("nan")] * D),
    lambda: F.embedding_features(["x"] * D),
    lambda: F.embedding_features(np.zeros(D), components=np.zeros((2, 100))),
    lambda: F.embedding_features(np.zeros(D), centroids=np.zeros(D)),
    lambda: F.search_features([], -1),
    lambda: F.search_features([], 10, ef_search=-5),
    lambda: F.search_features([{"hop": 0}], 10),
    lambda: F.search_features([row(float("nan"))], 10),
    lambda: F.search_features([row("0.1")], 10),
    lambda: F.search_features([row(0.1, hop=-1)], 10),
    lambda: F.search_features([row(0.1, edge_weight=-1.0)], 10),
    lambda: F.search_features("rows", 10),
    lambda: F.search_features([row(0.1)], 10, embeddings=np.zeros((2, D))),
    lambda: F.query_features(None, 3),
    lambda: F.query_features("x", -1),
    lambda: F.query_features("x", 1.5),
    lambda: F.query_features("x", 1, user_frequency=-1),
    lambda: F.system_features(F.SystemState(device="tpu")),
    lambda: F.system_features(F.SystemState(latency_budget_ms=-1)),
    lambda: F.system_features(F.SystemState(memory_available_mb=float("inf"))),
    lambda: F.system_features(F.SystemState(model_quality=[1.5])),
    lambda: F.system_features(F.SystemState(model_latency_ms=[-3])),
    lambda: F.system_features(F.SystemState(concurrent_requests=-1)),
    lambda: F.system_features({"device": "cpu"}),
    lambda: F.describe(np.zeros(127)),
    lambda: F.describe(np.full(128, np.nan)),
])
def test_bad_input_raises_22023(call):
    with pytest.raises(RuvllmError) as err:
        call()
    assert err.value.sqlstate == "22023"


def test_build_rejects_wrong_vector_length():
    text, tokens, vec, rows, k, state = example()
    with pytest.raises(RuvllmError) as err:
        F.build(text, tokens, vec[:100], rows, k, state)
    assert err.value.sqlstate == "22023" and "384" in err.value.message
