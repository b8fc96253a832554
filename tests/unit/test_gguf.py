"""GGUF structure checks on hand-built files: what passes, and where each broken file breaks."""
import struct

import pytest

from ruvllm import gguf


def gguf_bytes(*, version=3, n_tensors=None, n_kv=None, dims=(8,), ggml_type=0, offset=0,
               data=32, alignment=32, extra_kv=()):
    kv = [(b"general.alignment", struct.pack("<II", 4, alignment))] + list(extra_kv)
    out = b"GGUF" + struct.pack("<IQQ", version, 1 if n_tensors is None else n_tensors,
                                len(kv) if n_kv is None else n_kv)
    for key, typed_value in kv:
        out += struct.pack("<Q", len(key)) + key + typed_value
    out += struct.pack("<Q", 1) + b"t" + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ggml_type, offset)
    out += b"\0" * (-len(out) % alignment)
    return out + b"\0" * data


def write(tmp_path, data):
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    return str(path)


def test_a_whole_file_passes(tmp_path):
    # One f32 tensor of 8 elements: 32 bytes of data after a 90-byte header aligned to 96.
    assert gguf.check(write(tmp_path, gguf_bytes())) == {"version": 3, "tensors": 1, "metadata": 1,
                                                         "data_bytes": 32}
    # Q4_1 blocks of 32 elements take 20 bytes: 64 elements need 40.
    assert gguf.check(write(tmp_path, gguf_bytes(dims=(64,), ggml_type=3, data=40)))["data_bytes"] == 40
    strings = struct.pack("<IIQ", 9, 8, 2) + struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 2) + b"bc"
    assert gguf.check(write(tmp_path, gguf_bytes(extra_kv=[(b"tokens", strings)])))["metadata"] == 2


@pytest.mark.parametrize("data, message", [
    (b"GGUF", "the file has 4 bytes, fewer than a GGUF header's 24"),
    (b"GGML" + b"\0" * 60, "no GGUF magic"),
    (gguf_bytes(version=1), "GGUF version 1 is not supported"),
    (gguf_bytes(n_tensors=10**15), "cannot fit in a file of"),
    (gguf_bytes(n_kv=2**40), "cannot fit in a file of"),
    (gguf_bytes(n_tensors=0), "describes no tensors"),
    (gguf_bytes(data=31), "the tensor data needs 128 bytes, the file has 127"),
    (gguf_bytes(offset=8), "the tensor data needs 136 bytes"),
    (gguf_bytes(dims=(64,), ggml_type=3, data=39), "the tensor data needs"),
    (gguf_bytes(dims=()), "has rank 0"),
    (gguf_bytes(alignment=24), "not a power of two"),
    (gguf_bytes(extra_kv=[(b"k", struct.pack("<IQ", 8, 10**9))]), "runs past the end of the file"),
    (gguf_bytes(extra_kv=[(b"k", struct.pack("<I", 77))]), "unknown metadata type 77"),
])
def test_broken_files_say_where_they_break(tmp_path, data, message):
    with pytest.raises(gguf.GGUFError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gguf.check(write(tmp_path, data))


def test_half_of_a_real_looking_file_is_cut_short(tmp_path):
    whole = gguf_bytes(dims=(256, 256), ggml_type=12, data=144 * 256)
    assert gguf.check(write(tmp_path, whole))
    with pytest.raises(gguf.GGUFError, match="cut short"):
        gguf.check(write(tmp_path, whole[: len(whole) // 2]))
