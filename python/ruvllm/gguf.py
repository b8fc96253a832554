"""A GGUF file's structure checked without loading it: the header, every metadata entry and tensor
description must lie inside the file, and so must every tensor's data.

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

MAGIC = b"GGUF"
VERSIONS = (2, 3)

# Metadata value types: fixed sizes, and the two variable ones.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4

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
