"""FastGRNNRouter's two stored forms: a JSON-ready dict (for a jsonb column) and a compact blob
(for a bytea column: ruvllm.policies.router).

Both carry the format name and version, the router's config and its parameters; a router read
back decides as the one written. Whatever is read is checked before it is used: a wrong format
or version, a missing or misshapen parameter, NaN or infinity, a corrupt or truncated blob are a
RuvllmError with SQLSTATE 22023.
"""

import base64
import json
import struct
import zlib

import numpy as np

from .errors import INVALID_PARAMETER_VALUE, RuvllmError, invalid
from .router import PARAM_NAMES, DefaultDecision, FastGRNNRouter

FORMAT_NAME = "ruvllm.fastgrnn_router"
FORMAT_VERSION = 1
_MAGIC = b"RVLR"
_HEADER = struct.Struct("<4sHI")  # magic, format version, header-json length


def to_dict(router):
    """JSON-ready dict (for a jsonb column): parameters as nested lists, mask packed."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": router.config(),
        "params": {k: router.params[k].tolist() for k in PARAM_NAMES},
        "mask": base64.b64encode(np.packbits(router.mask, axis=None).tobytes()).decode("ascii"),
    }


def from_dict(d):
    if isinstance(d, (str, bytes)):
        try:
            d = json.loads(d)
        except ValueError as e:
            raise invalid("router policy is not valid JSON", detail=str(e)) from None
    if not isinstance(d, dict):
        raise invalid("router policy must be a JSON object")
    _check_format(d.get("format"), d.get("version"))
    router = _from_config(d.get("config"))
    raw = d.get("params")
    if not isinstance(raw, dict):
        raise invalid("router policy has no params object")
    arrays = {}
    for name in PARAM_NAMES:
        if name not in raw:
            raise invalid(f"router policy is missing parameter {name}")
        try:
            arrays[name] = np.asarray(raw[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise invalid(f"router parameter {name} is not numeric") from None
    mask = _unpack_mask(d.get("mask"), router.hidden, router.input_dim)
    router.set_params(arrays, mask)
    return router


def to_bytes(router):
    """Compact binary form (for a bytea column).

    Layout: magic, version, header length, header JSON (config + array table), packed
    mask bits, then each parameter as raw little-endian values in PARAM_NAMES order,
    except that W holds only its entries inside the mask (row-major), then CRC32.
    """
    order = list(PARAM_NAMES)
    le = router.dtype.newbyteorder("<")
    header = {
        "format": FORMAT_NAME,
        "config": router.config(),
        "arrays": [[k, list(router.params[k].shape)] for k in order],
    }
    hjson = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    body = [np.packbits(router.mask, axis=None).tobytes()]
    for k in order:
        a = router.params[k][router.mask] if k == "W" else router.params[k]
        body.append(np.ascontiguousarray(a, dtype=le).tobytes())
    blob = _HEADER.pack(_MAGIC, FORMAT_VERSION, len(hjson)) + hjson + b"".join(body)
    return blob + struct.pack("<I", zlib.crc32(blob) & 0xFFFFFFFF)


def from_bytes(blob):
    blob = bytes(blob)
    if len(blob) < _HEADER.size + 4 or blob[:4] != _MAGIC:
        raise invalid("router policy bytes are not a ruvllm FastGRNN router",
                      hint="the policy must come from FastGRNNRouter.to_bytes()")
    magic, version, hlen = _HEADER.unpack_from(blob, 0)
    _check_format(FORMAT_NAME, version)
    (crc,) = struct.unpack_from("<I", blob, len(blob) - 4)
    if zlib.crc32(blob[:-4]) & 0xFFFFFFFF != crc:
        raise invalid("router policy bytes are corrupt (checksum mismatch)")
    try:
        header = json.loads(blob[_HEADER.size:_HEADER.size + hlen].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise invalid("router policy header is unreadable") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise invalid("router policy header has the wrong format name")
    router = _from_config(header.get("config"))
    le = router.dtype.newbyteorder("<")
    expected = router.param_shapes()
    spec = header.get("arrays")
    if (not isinstance(spec, list)
            or not all(isinstance(s, list) and len(s) == 2 and isinstance(s[1], list) for s in spec)
            or [s[0] for s in spec] != list(PARAM_NAMES)):
        raise invalid("router policy array table does not match this format version")
    offset = _HEADER.size + hlen
    end = len(blob) - 4
    n_w = router.hidden * router.input_dim
    mbytes = (n_w + 7) // 8
    if offset + mbytes > end:
        raise invalid("router policy bytes are truncated")
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8, count=mbytes, offset=offset))
    mask = bits[:n_w].reshape(router.hidden, router.input_dim).astype(bool)
    offset += mbytes
    arrays = {}
    for name, shape in spec:
        shape = tuple(shape)
        if shape != expected[name]:
            raise invalid(f"router parameter {name} has shape {shape}, expected {expected[name]}")
        count = int(mask.sum()) if name == "W" else int(np.prod(shape, dtype=np.int64))
        if offset + count * le.itemsize > end:
            raise invalid("router policy bytes are truncated")
        values = np.frombuffer(blob, dtype=le, count=count, offset=offset)
        if name == "W":
            W = np.zeros(shape, dtype=le)
            W[mask] = values
            arrays[name] = W
        else:
            arrays[name] = values.reshape(shape)
        offset += count * le.itemsize
    if offset != end:
        raise invalid("router policy bytes have the wrong length")
    router.set_params(arrays, mask)
    return router


# ---------------------------------------------------------------------- helpers


def _from_config(cfg):
    if not isinstance(cfg, dict):
        raise invalid("router policy has no config object")
    try:
        return FastGRNNRouter(
            cfg["n_models"],
            input_dim=cfg["input_dim"],
            hidden=cfg["hidden"],
            rank=cfg["rank"],
            model_names=cfg["model_names"],
            context_bins=cfg["context_bins"],
            default=DefaultDecision(**cfg["default"]),
            confidence_threshold=cfg["confidence_threshold"],
            seed=cfg.get("seed", 0),
            dtype=np.dtype(cfg.get("dtype", "f4")),
        )
    except RuvllmError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise invalid("router policy config is incomplete or malformed", detail=repr(e)) from None


def _check_format(name, version):
    if name != FORMAT_NAME:
        raise RuvllmError(INVALID_PARAMETER_VALUE,
                          f"router policy has format {name!r}, expected {FORMAT_NAME!r}")
    if version != FORMAT_VERSION:
        raise RuvllmError(INVALID_PARAMETER_VALUE,
                          f"router policy format version {version!r} is not supported "
                          f"(this build reads version {FORMAT_VERSION})",
                          hint="retrain the router or load it with a matching ruvllm version")


def _unpack_mask(packed, hidden, input_dim):
    if not isinstance(packed, str):
        raise invalid("router policy mask is missing")
    try:
        raw = base64.b64decode(packed.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise invalid("router policy mask is not valid base64") from None
    n = hidden * input_dim
    if len(raw) != (n + 7) // 8:
        raise invalid("router policy mask has the wrong size")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:n].reshape(hidden, input_dim).astype(bool)
