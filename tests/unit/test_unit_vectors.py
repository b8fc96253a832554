"""The evidence units' stored vectors: how a node's units are numbered, packed and found again for
the candidates of a request, on hand-checked cases."""
import numpy as np
import pytest

from ruvllm import evidence, unit_vectors as UV

TIMEOUT_DOC = ("deadlock_timeout (integer)\n\nThe time to wait on a lock before checking for a deadlock. "
               "The default is one second (1s). Only superusers can change this setting.")
FRANCE = "The capital of France is Paris. Paris lies on the river Seine."


def axis(i, scale=1.0):
    v = np.zeros(UV.DIMENSIONS, np.float32)
    v[i] = scale
    return v


def test_a_nodes_units_are_numbered_in_order_whatever_its_place():
    alone, _ = evidence.candidate_units([(0, TIMEOUT_DOC, 1.0)])
    second, _ = evidence.candidate_units([(0, FRANCE, 1.0), (1, TIMEOUT_DOC, 0.5)])
    # France: "The capital ... Paris." then "Paris lies ..." (which does not lean back): 2 units.
    assert [(u.node, u.ordinal) for u in second] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert [u.read for u in second if u.node == 1] == [u.read for u in alone] == \
        evidence.unit_reads(TIMEOUT_DOC)
    assert evidence.unit_reads(TIMEOUT_DOC)[1] == "deadlock_timeout (integer) ... The default is one second (1s)."


def test_vectors_are_stored_as_float16_and_read_back_as_float32():
    v = np.stack([axis(0), axis(1, 1 / 3)])
    blob = UV.pack(v)
    assert len(blob) == 2 * 384 * 2
    assert blob[:2] == b"\x00\x3c"   # 1.0 in IEEE half precision, little-endian
    back = UV.unpack(blob)
    assert back.dtype == np.float32 and back.shape == (2, 384)
    assert back[0, 0] == 1.0 and back[1, 1] == pytest.approx(0.33325195, abs=1e-8)   # 1/3 in half
    with pytest.raises(ValueError):
        UV.unpack(blob[:-2])


def test_units_read_alike_are_embedded_once_and_a_whole_note_takes_its_vector():
    asked = []

    def embed(texts):
        asked.extend(texts)
        return np.stack([axis(10 + len(asked) - len(texts) + i) for i in range(len(texts))])
    note = "Backups run nightly at two."   # one unit, which reads as the whole note
    blobs = UV.embed_nodes([FRANCE, note, FRANCE + "  ", ""], embed,
                           node_vectors=[axis(1), axis(2), axis(3), axis(4)])
    # FRANCE's two units, once for both nodes that have them; the note is not embedded again.
    assert asked == ["The capital of France is Paris.", "Paris lies on the river Seine."]
    assert [UV.unpack(b).argmax(axis=1).tolist() if b else None for b in blobs] == [[10, 11], [2], [10, 11], None]


def test_a_candidate_gets_its_own_units_vector_or_none():
    nodes = [(0, FRANCE, 1.0), (1, TIMEOUT_DOC, 0.5)]
    units, _ = evidence.candidate_units(nodes)
    ids = ["a", "b"]
    stored = {"b": np.stack([axis(20), axis(21)])}   # b's row has 2 of its 3 units
    got = UV.for_units(units, ids, stored)
    assert [None if v is None else int(v.argmax()) for v in got] == [None, None, 20, 21, None]
