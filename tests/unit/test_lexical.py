"""BM25 as lexical search scores it (lexical.bm25, the reference ruvllm._bm25 in C is tested
against in tests/integration/test_retrieval.py), on hand-computed numbers."""
import math

import pytest

from ruvllm import lexical


def test_idf_is_the_bm25_plus_one_form():
    # 4 nodes: a term in 1 of them, ln(1 + 3.5 / 1.5) = ln(10/3); in 2, ln(1 + 2.5 / 2.5) = ln 2.
    assert lexical.idf(4, 1) == pytest.approx(math.log(10 / 3))
    assert lexical.idf(4, 2) == pytest.approx(math.log(2))
    # A term in every node (or counted in more nodes than there are) still weighs a little.
    assert lexical.idf(4, 4) == pytest.approx(math.log(1 + 0.5 / 4.5))
    assert lexical.idf(4, 9) == pytest.approx(math.log(1 + 0.5 / 9.5))


def test_bm25_by_hand():
    idf = {"alpha": math.log(10 / 3), "beta": math.log(2), "delta": 5.0}
    # A node of 5 distinct lexemes where they average 10: k1 (1 - b + b * 5/10) = 1.2 * 0.625 = 0.75.
    # alpha twice: idf * 2 * 2.2 / (2 + 0.75) = 1.6 idf; beta once: idf * 2.2 / 1.75; delta is
    # not in the node and gamma not in the question: neither counts.
    score = lexical.bm25({"alpha": 2, "beta": 1, "gamma": 4}, 5, idf, 10)
    assert score == pytest.approx(1.6 * math.log(10 / 3) + 2.2 / 1.75 * math.log(2))
    assert score == pytest.approx(2.7977415, abs=1e-6)


def test_bm25_at_the_average_length_a_single_occurrence_scores_its_idf():
    assert lexical.bm25({"alpha": 1}, 10, {"alpha": 0.7}, 10) == pytest.approx(0.7)
    # Occurrences saturate: k1 + 1 times the idf at most.
    assert lexical.bm25({"alpha": 10 ** 6}, 10, {"alpha": 0.7}, 10) == pytest.approx(0.7 * 2.2, rel=1e-5)
    # Longer nodes score less for the same occurrences, shorter ones more.
    assert lexical.bm25({"alpha": 1}, 40, {"alpha": 0.7}, 10) < 0.7 < lexical.bm25({"alpha": 1}, 2, {"alpha": 0.7}, 10)


def test_bm25_of_a_node_without_the_terms_is_zero():
    assert lexical.bm25({"gamma": 3}, 5, {"alpha": 1.0}, 10) == 0
    assert lexical.bm25({}, 5, {}, 10) == 0
