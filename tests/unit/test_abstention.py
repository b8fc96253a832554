"""abstention.question_support on hand-computed cases."""
import math

import pytest

from ruvllm import abstention


def test_support_is_the_geometric_mean_of_similarity_and_coverage():
    assert abstention.hit_support(0.64, 0.25) == pytest.approx(0.4)       # sqrt(0.16)
    assert abstention.hit_support(0.81, 1.0) == pytest.approx(0.9)
    assert abstention.hit_support(0.6, 0.0) == 0.0                        # no term of the question


def test_without_lexical_terms_similarity_alone_supports():
    assert abstention.hit_support(0.37, None) == pytest.approx(0.37)


def test_out_of_range_inputs_are_clamped():
    assert abstention.hit_support(-0.2, 0.5) == 0.0                       # cosine below 0
    assert abstention.hit_support(0.49, 1.3) == pytest.approx(0.7)        # coverage capped at 1


def test_the_best_hop0_hit_supports_the_question_neighbours_do_not():
    rows = [dict(hop=0, distance=0.36, coverage=0.25),    # sqrt(0.64 * 0.25) = 0.4
            dict(hop=0, distance=0.5, coverage=0.98),     # sqrt(0.5 * 0.98) = 0.7
            dict(hop=1, distance=0.0, coverage=1.0)]      # a graph neighbour: not a hit
    assert abstention.question_support(rows) == pytest.approx(math.sqrt(0.49))
    assert abstention.question_support([]) == 0.0
    assert abstention.question_support(rows[2:]) == 0.0
