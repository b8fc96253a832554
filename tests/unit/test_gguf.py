"""GGUF structure checks on hand-built files (what passes, and where each broken file breaks), and
the writer: its bytes checked by hand, its files read back."""
import struct

import numpy as np
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


# --- the writer --------------------------------------------------------------------------------

def test_written_header_bytes_hand_checked(tmp_path):
    path = tmp_path / "w.gguf"
    gguf.write(path, {"general.architecture": (gguf.STRING, "bert")},
               [("w", np.arange(6, dtype=np.float32).reshape(2, 3))])
    data = path.read_bytes()
    # magic, version 3, 1 tensor, 1 metadata entry: 24 bytes.
    assert data[:24] == b"GGUF" + bytes([3, 0, 0, 0]) + bytes([1] + [0] * 7) + bytes([1] + [0] * 7)
    # key (u64 length 20, the name), type 8 (string), value (u64 length 4, "bert"): 44 bytes.
    assert data[24:68] == (bytes([20] + [0] * 7) + b"general.architecture" + bytes([8, 0, 0, 0])
                           + bytes([4] + [0] * 7) + b"bert")
    # tensor "w": name, rank 2, dims innermost first (3, 2), type 0 (F32), offset 0: 41 bytes.
    assert data[68:109] == (bytes([1] + [0] * 7) + b"w" + bytes([2, 0, 0, 0]) + bytes([3] + [0] * 7)
                            + bytes([2] + [0] * 7) + bytes(4) + bytes(8))
    # padding to the 32-byte boundary at 128, then the 24 data bytes row-major, padded to 160.
    assert data[109:128] == bytes(19)
    assert data[128:152] == np.arange(6, dtype="<f4").tobytes()
    assert len(data) == 160 and data[152:] == bytes(8)
    assert gguf.check(str(path)) == {"version": 3, "tensors": 1, "metadata": 1, "data_bytes": 24}


def test_written_file_reads_back(tmp_path):
    path = tmp_path / "m.gguf"
    meta = {"general.architecture": (gguf.STRING, "bert"),
            "bert.block_count": (gguf.UINT32, 6),
            "bert.attention.layer_norm_epsilon": (gguf.FLOAT32, 1e-12),
            "bert.attention.causal": (gguf.BOOL, False),
            "tokenizer.ggml.tokens": (gguf.ARRAY, (gguf.STRING, ["[PAD]", "\u2581a", "b"])),
            "tokenizer.ggml.token_type": (gguf.ARRAY, (gguf.INT32, [3, 1, 1]))}
    # 5 f16 values (10 bytes) padded to 32: the f32 tensor after it starts at offset 32.
    gguf.write(path, meta, [("h", np.ones(5, dtype=np.float16)), ("f", np.ones((4, 2), np.float32))])
    assert gguf.check(str(path))["data_bytes"] == 32 + 32
    got = gguf.metadata(str(path))
    assert got["general.architecture"] == "bert" and got["bert.block_count"] == 6
    assert got["bert.attention.causal"] is False
    assert got["bert.attention.layer_norm_epsilon"] == pytest.approx(1e-12, rel=1e-6)
    assert got["tokenizer.ggml.tokens"] == 3 and got["tokenizer.ggml.token_type"] == 3
    # Cut short, the reader says so.
    whole = path.read_bytes()
    path.write_bytes(whole[:-8])
    with pytest.raises(gguf.GGUFError, match="cut short"):
        gguf.check(str(path))


@pytest.mark.parametrize("arr, message", [
    (np.zeros(3, dtype=np.int32), "not float32 or float16"),
    (np.float32(1.0), "rank 0"),
    (np.zeros((1, 1, 1, 1, 1), dtype=np.float32), "rank 5"),
])
def test_writer_refuses_what_it_cannot_store(tmp_path, arr, message):
    with pytest.raises(ValueError, match=message):
        gguf.write(tmp_path / "x.gguf", {}, [("t", arr)])
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_q8_0_blocks_hand_checked():
    # One block of 32: max |x| = 31, so d = 31/127 and q = round(x * 127/31); x = 1 -> 4.1 -> 4.
    x = np.arange(-15, 17, dtype=np.float32)   # -15 .. 16
    x[-1] = 31.0
    raw = gguf.quantize_q8_0(x)
    assert raw.shape == (34,)
    d = raw[:2].view("<f2")[0]
    assert d == np.float16(31 / 127)
    q = raw[2:].view(np.int8)
    assert q[15] == 0 and q[16] == 4 and q[-1] == 127 and q[0] == -61   # -15 * 127/31 = -61.45
    assert np.abs(q.astype(np.float32) * np.float32(d) - x).max() <= float(d) / 2 + 1e-3
