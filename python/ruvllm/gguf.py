"""GGUF files: their structure checked without loading them (check), their scalar metadata read
(metadata), and a small writer (write) for the files ruvllm makes itself (the embedding model's).

check: the header, every metadata entry and tensor description must lie inside the file, and so
must every tensor's data.

A file that passes the 4-byte magic can still be a stub, have absurd counts, or be cut short by a
failed copy; llama.cpp then fails only when a backend loads it, as an error nobody can act on.
The layout (version 2 and 3): magic, uint32 version, uint64 tensor count, uint64 metadata count,
the metadata entries (key, uint32 type, value), the tensor descriptions (name, uint32 rank, the
dimensions as uint64, uint32 ggml type, uint64 offset into the data), then the data, aligned to
general.alignment (32 by default).
"""
import mmap
import os
import struct
import tempfile

import numpy as np

MAGIC = b"GGUF"
VERSIONS = (2, 3)

# Metadata value types: fixed sizes, and the two variable ones.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
# The same types by name, for write(); the struct format of each fixed one.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL = 0, 1, 2, 3, 4, 5, 6, 7
STRING, ARRAY, UINT64, INT64, FLOAT64 = 8, 9, 10, 11, 12
_FORMAT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}
# ggml tensor types write() stores: numpy dtype -> ggml type.
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
_GGML_OF_DTYPE = {np.dtype("<f4"): GGML_F32, np.dtype("<f2"): GGML_F16}
ALIGNMENT = 32

# ggml tensor types: (bytes per block, elements per block), for the types GGUF models use. A
# tensor of a type not listed is checked by its offset alone.
GGML_TYPE_SIZES = {
    0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32), 9: (36, 32),
    10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256), 15: (292, 256),
    24: (1, 1), 25: (2, 1), 26: (4, 1), 27: (8, 1), 28: (8, 1), 30: (2, 1),
}


class GGUFError(ValueError):
    """The file is not a well-formed GGUF file; the message says where it breaks."""


class _Reader:
    """Reads a mapped file; every read is checked against the file's end."""

    def __init__(self, data):
        self.data, self.size, self.pos = data, len(data), 0

    def _advance(self, n, what):
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(f"{what} at byte {self.pos} runs past the end of the file ({self.size} bytes)")
        start = self.pos
        self.pos += n
        return start

    def take(self, n, what):
        start = self._advance(n, what)
        return self.data[start:self.pos]

    def skip(self, n, what):
        self._advance(n, what)

    def u32(self, what):
        return struct.unpack_from("<I", self.data, self._advance(4, what))[0]

    def u64(self, what):
        return struct.unpack_from("<Q", self.data, self._advance(8, what))[0]

    def string(self, what):
        n = self.u64(what + " length")
        return self.take(n, what)


def _skip_value(r, vtype, what, depth=0):
    if vtype in _FIXED:
        r.skip(_FIXED[vtype], what)
    elif vtype == _STRING:
        r.skip(r.u64(what + " length"), what)
    elif vtype == _ARRAY and depth == 0:
        etype = r.u32(what + " element type")
        count = r.u64(what + " element count")
        if etype in _FIXED:
            r.skip(count * _FIXED[etype], what)
        elif etype == _STRING:
            if count > (r.size - r.pos) // 8:
                raise GGUFError(f"{what}: {count} strings cannot fit in the rest of the file")
            # A vocabulary is this loop's 50K-260K strings: kept lean.
            pos, data, size, unpack = r.pos, r.data, r.size, struct.unpack_from
            for _ in range(count):
                if pos + 8 > size:
                    break
                pos += 8 + unpack("<Q", data, pos)[0]
                if pos > size:
                    break
            else:
                r.pos = pos
                return
            raise GGUFError(f"{what}: a string at byte {pos} runs past the end of the file ({size} bytes)")
        else:
            raise GGUFError(f"{what}: unsupported array element type {etype}")
    else:
        raise GGUFError(f"{what}: unknown metadata type {vtype}")


def check(path):
    """Checks the file's structure; returns {"version", "tensors", "metadata", "data_bytes"} or
    raises GGUFError."""
    size = os.path.getsize(path)
    if size < 24:
        raise GGUFError(f"the file has {size} bytes, fewer than a GGUF header's 24")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        r = _Reader(data)
        if r.take(4, "the magic") != MAGIC:
            raise GGUFError("not a GGUF file (no GGUF magic)")
        version = r.u32("the version")
        if version not in VERSIONS:
            raise GGUFError(f"GGUF version {version} is not supported (only {', '.join(map(str, VERSIONS))})")
        n_tensors = r.u64("the tensor count")
        n_kv = r.u64("the metadata count")
        # Each metadata entry takes at least 13 bytes, each tensor description at least 24.
        if n_kv * 13 + n_tensors * 24 > size - r.pos:
            raise GGUFError(f"{n_kv} metadata entries and {n_tensors} tensors cannot fit in a file of {size} bytes")
        if n_tensors == 0:
            raise GGUFError("the file describes no tensors")
        alignment = 32
        for i in range(n_kv):
            key = r.string(f"metadata entry {i}'s key")
            vtype = r.u32(f"metadata entry {key!r}'s type")
            if key == b"general.alignment" and vtype == _UINT32:
                alignment = r.u32("general.alignment")
                if alignment == 0 or alignment & (alignment - 1):
                    raise GGUFError(f"general.alignment {alignment} is not a power of two")
            else:
                _skip_value(r, vtype, f"metadata entry {key.decode('utf-8', 'replace')!r}")
        extent = 0
        for i in range(n_tensors):
            name = r.string(f"tensor {i}'s name").decode("utf-8", "replace")
            rank = r.u32(f"tensor {name!r}'s rank")
            if not 1 <= rank <= 4:
                raise GGUFError(f"tensor {name!r} has rank {rank}")
            elements = 1
            for _ in range(rank):
                elements *= r.u64(f"tensor {name!r}'s dimensions")
            ggml_type = r.u32(f"tensor {name!r}'s type")
            offset = r.u64(f"tensor {name!r}'s offset")
            block_bytes, block_elems = GGML_TYPE_SIZES.get(ggml_type, (0, 1))
            extent = max(extent, offset + -(-elements // block_elems) * block_bytes)
        data_start = -(-r.pos // alignment) * alignment
        if data_start + extent > size:
            raise GGUFError(f"the tensor data needs {data_start + extent} bytes, the file has {size} "
                            f"(cut short?)")
    return {"version": version, "tensors": n_tensors, "metadata": n_kv, "data_bytes": extent}


def metadata(path):
    """The file's metadata entries that are scalars or strings, {key: value} (strings decoded as
    UTF-8); arrays are given as their element count. Raises GGUFError like check()."""
    check(path)
    out = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        r = _Reader(data)
        r.skip(4 + 4, "the header")
        r.u64("the tensor count")
        n_kv = r.u64("the metadata count")
        for _ in range(n_kv):
            key = r.string("a key").decode("utf-8", "replace")
            vtype = r.u32(f"{key!r}'s type")
            if vtype in _FIXED:
                out[key] = struct.unpack(_FORMAT[vtype], r.take(_FIXED[vtype], key))[0]
            elif vtype == _STRING:
                out[key] = bytes(r.string(key)).decode("utf-8", "replace")
            else:
                start = r.pos
                r.u32(key)
                out[key] = r.u64(key)
                r.pos = start
                _skip_value(r, vtype, key)
    return out


# --- writing ----------------------------------------------------------------------------------


def quantize_q8_0(arr):
    """ggml's Q8_0 of a float array whose rows are a multiple of 32 long: each block of 32 is an
    f16 scale d = max|x| / 127 and 32 int8 round(x / d) (34 bytes). Returns the blocks as uint8."""
    x = np.asarray(arr, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1, keepdims=True)
    d = amax / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    q = np.round(x * inv).astype(np.int8)   # numpy rounds half to even, ggml half away: rare ties
    out = np.empty((x.shape[0], 34), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8)
    out[:, 2:] = q.view(np.uint8)
    return out.reshape(-1)


def _pack_string(value):
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return struct.pack("<Q", len(raw)) + raw


def _pack_value(vtype, value):
    if vtype in _FORMAT:
        return struct.pack(_FORMAT[vtype], value)
    if vtype == STRING:
        return _pack_string(value)
    if vtype == ARRAY:
        etype, items = value
        items = list(items)
        head = struct.pack("<IQ", etype, len(items))
        if etype == STRING:
            return head + b"".join(_pack_string(v) for v in items)
        if etype in _FORMAT:
            return head + struct.pack("<" + _FORMAT[etype][1] * len(items), *items)
        raise ValueError(f"arrays of metadata type {etype} are not supported")
    raise ValueError(f"unknown metadata type {vtype}")


def write(path, meta, tensors, *, alignment=ALIGNMENT):
    """Writes a GGUF version 3 file at path, atomically (a temporary file renamed over it).

    meta: {key: (type, value)} in the order written, type one of UINT32, FLOAT32, BOOL, STRING,
    ... or ARRAY with value (element type, items). tensors: [(name, array)] of float32 or float16
    numpy arrays in their usual row-major layout; GGUF lists dimensions innermost first (ggml's
    ne[0] is the row length), so a (rows, cols) array is stored as dims (cols, rows) with the
    same bytes. Each tensor's data starts at a multiple of alignment."""
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"alignment {alignment} is not a power of two")
    meta = dict(meta)
    if alignment != ALIGNMENT:
        meta["general.alignment"] = (UINT32, alignment)
    infos, offset = [], 0
    for item in tensors:
        if len(item) == 4:  # (name, raw blocks as uint8, ggml type, logical shape): quantised
            name, arr, ggml_type, shape = item
            arr, shape = np.ascontiguousarray(arr, dtype=np.uint8), tuple(shape)
            block_bytes, block_elems = GGML_TYPE_SIZES[ggml_type]
            if shape[-1] % block_elems or arr.nbytes != int(np.prod(shape)) // block_elems * block_bytes:
                raise ValueError(f"tensor {name}: {arr.nbytes} bytes do not hold {shape} of type {ggml_type}")
        else:
            name, arr = item
            arr = np.asarray(arr)
            shape = arr.shape
            ggml_type = _GGML_OF_DTYPE.get(arr.dtype.newbyteorder("<"))
            if ggml_type is None:
                raise ValueError(f"tensor {name}: dtype {arr.dtype} is not float32 or float16")
            arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        if not 1 <= len(shape) <= 4:
            raise ValueError(f"tensor {name}: rank {len(shape)} (GGUF holds 1 to 4 dimensions)")
        infos.append((name, arr, shape, ggml_type, offset))
        offset += -(-arr.nbytes // alignment) * alignment
    head = [b"GGUF", struct.pack("<IQQ", 3, len(infos), len(meta))]
    for key, (vtype, value) in meta.items():
        head += [_pack_string(key), struct.pack("<I", vtype), _pack_value(vtype, value)]
    for name, _arr, shape, ggml_type, off in infos:
        head += [_pack_string(name), struct.pack("<I", len(shape))]
        head += [struct.pack("<Q", d) for d in reversed(shape)]
        head.append(struct.pack("<IQ", ggml_type, off))
    head = b"".join(head)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".gguf-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head + b"\0" * (-len(head) % alignment))
            for _name, arr, _shape, _type, _off in infos:
                f.write(memoryview(arr).cast("B"))
                f.write(b"\0" * (-arr.nbytes % alignment))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
