"""FastGRNN request router.

A single FastGRNN cell (Kusupati et al., 2018) reads a 128-d request feature vector and the
session's previous hidden state, and small linear heads read the new hidden state:

    pre = W x + U h_prev                  (W sparse via a hard-threshold mask, U = U1 @ U2)
    z   = sigmoid(pre + b_z)
    h~  = tanh(pre + b_h)
    h   = z * h_prev + (sigmoid(zeta) * (1 - z) + sigmoid(nu)) * h~

    model logits   = W_model h + b_model        -> softmax over the N enabled models
    context logits = W_ctx h + b_ctx            -> softmax over the context bins
    temperature    = 2 * sigmoid(w_temp . h + b_temp)    in [0, 2]
    top_p          = sigmoid(w_top_p . h + b_top_p)      in [0, 1]

Gate and candidate share W and U (the point of FastGRNN over a GRU: half the matrices), and
zeta/nu are scalars. W is held dense with a 0/1 support mask: at 48x128 a dense numpy matvec
is faster than any sparse format, so the sparsity buys model size (to_bytes stores only the
kept entries) and regularisation, not per-request speed.

Confidence is derived from the model head, not a separate head: it is the max model
probability rescaled so that a uniform distribution gives 0 and a one-hot gives 1,
``(p_max - 1/N) / (1 - 1/N)``. A separate confidence head would need its own target
(was the router right?) that the training data rarely carries, while the CE-trained model
head is already calibrated-ish; the rescaling keeps one threshold meaningful whatever N is
(a raw max prob is never below 0.5 with two models). Below the threshold the configured safe
default decision is returned with ``used_default=True``; the hidden state is still advanced.

The router sees one step per request; ``h_prev`` carries session state between requests.
Training (``ruvllm.training``) treats ``h_prev`` as an input, i.e. truncated BPTT of length 1.

This module does numerics only; router_format.py stores and reads routers (to_dict/to_bytes and
back are its entry points on the class). The SQL glue maps RuvllmError to plpy.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from ruvllm.errors import invalid

CONTEXT_BINS = (256, 512, 1024, 2048, 4096)
INPUT_DIM = 128
DEFAULT_HIDDEN = 48
DEFAULT_RANK = 8
DEFAULT_CONFIDENCE_THRESHOLD = 0.2

PARAM_NAMES = (
    "W", "U1", "U2", "b_z", "b_h", "zeta", "nu",
    "W_model", "b_model", "W_ctx", "b_ctx",
    "w_temp", "b_temp", "w_top_p", "b_top_p",
)
CELL_PARAMS = PARAM_NAMES[:7]
HEAD_PARAMS = PARAM_NAMES[7:]

_ALLOWED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _sigmoid(x):
    # tanh form: one ufunc, no overflow warnings for large |x|, and keeps the input dtype.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _py_sigmoid(a):
    if a >= 0.0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def _py_softmax(logits):
    m = max(logits)
    e = [math.exp(v - m) for v in logits]
    s = sum(e)
    return [v / s for v in e]


def _py_confidence(probs):
    n = len(probs)
    if n <= 1:
        return 1.0
    return (max(probs) - 1.0 / n) * (n / (n - 1.0))


def _logit(p):
    return float(np.log(p / (1.0 - p)))


@dataclass(frozen=True)
class DefaultDecision:
    """The safe decision used when the router is not confident enough."""

    model_index: int = 0
    context_size: int = 1024
    temperature: float = 0.7
    top_p: float = 0.9

    def to_dict(self):
        return {
            "model_index": int(self.model_index),
            "context_size": int(self.context_size),
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
        }


@dataclass
class Decision:
    model_index: int
    model_name: str
    probs: list
    context_size: int
    context_index: int
    context_probs: list
    temperature: float
    top_p: float
    confidence: float
    used_default: bool

    def to_dict(self):
        return {
            "model_index": self.model_index,
            "model_name": self.model_name,
            "probs": list(self.probs),
            "context_size": self.context_size,
            "context_index": self.context_index,
            "context_probs": list(self.context_probs),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "confidence": self.confidence,
            "used_default": self.used_default,
        }


@dataclass
class ForwardCache:
    """Everything backward() needs from a batched forward pass, plus the head outputs."""

    X: np.ndarray
    H_prev: np.ndarray
    S: np.ndarray          # H_prev @ U2.T, the rank-r bottleneck
    Z: np.ndarray
    Htilde: np.ndarray
    coef: np.ndarray       # sigmoid(zeta) * (1 - z) + sigmoid(nu)
    H: np.ndarray
    model_logits: np.ndarray
    probs: np.ndarray
    ctx_logits: np.ndarray
    ctx_probs: np.ndarray
    temperature: np.ndarray
    top_p: np.ndarray
    extra: dict = field(default_factory=dict)


def confidence_from_probs(probs):
    """Rescaled max probability: 0 for uniform, 1 for one-hot. Works on (N,) or (B, N)."""
    probs = np.asarray(probs)
    n = probs.shape[-1]
    if n <= 1:
        return np.ones(probs.shape[:-1], dtype=probs.dtype)
    return (probs.max(axis=-1) - 1.0 / n) * (n / (n - 1.0))


class FastGRNNRouter:
    """FastGRNN cell + routing heads. Parameters live in ``self.params`` (name -> ndarray)."""

    def __init__(
        self,
        n_models,
        *,
        input_dim=INPUT_DIM,
        hidden=DEFAULT_HIDDEN,
        rank=DEFAULT_RANK,
        model_names=None,
        context_bins=CONTEXT_BINS,
        default=None,
        confidence_threshold=DEFAULT_CONFIDENCE_THRESHOLD,
        seed=0,
        dtype=np.float32,
    ):
        n_models = _as_int(n_models, "n_models", 1, 4096)
        input_dim = _as_int(input_dim, "input_dim", 1, 65536)
        hidden = _as_int(hidden, "hidden", 1, 1024)
        rank = _as_int(rank, "rank", 1, hidden)
        dtype = np.dtype(dtype)
        if dtype not in _ALLOWED_DTYPES:
            raise invalid(f"router dtype must be float32 or float64, not {dtype}")
        if model_names is None:
            model_names = [f"model_{i}" for i in range(n_models)]
        model_names = [str(m) for m in model_names]
        if len(model_names) != n_models:
            raise invalid(
                f"model_names has {len(model_names)} entries but n_models is {n_models}")
        if len(set(model_names)) != n_models:
            raise invalid("model_names must be unique")
        bins = tuple(int(b) for b in context_bins)
        if not bins or any(b <= 0 for b in bins) or list(bins) != sorted(set(bins)):
            raise invalid("context_bins must be distinct positive integers in ascending order",
                          detail=f"got {list(context_bins)}")
        if default is None:
            default = DefaultDecision()
        elif isinstance(default, dict):
            default = DefaultDecision(**default)
        _check_default(default, n_models, bins)

        self.n_models = n_models
        self.input_dim = input_dim
        self.hidden = hidden
        self.rank = rank
        self.model_names = model_names
        self.context_bins = bins
        self.default = default
        self.confidence_threshold = _check_threshold(confidence_threshold)
        self.dtype = dtype
        self.seed = int(seed)
        self.params = self._init_params(np.random.default_rng(self.seed))
        self.mask = np.ones((hidden, input_dim), dtype=bool)
        self._maskf = np.ones((hidden, input_dim), dtype=dtype)

    # ------------------------------------------------------------------ parameters

    def _init_params(self, rng):
        H, D, r, N, C = self.hidden, self.input_dim, self.rank, self.n_models, len(self.context_bins)
        dt = self.dtype
        # U = U1 @ U2 has var(U_ij) = r * s^4; s = (r*H)^(-1/4) gives var 1/H, so U h_prev keeps
        # unit scale for a unit-scale state, split evenly between the two factors.
        s_u = (r * H) ** -0.25
        p = {
            "W": rng.standard_normal((H, D)) / np.sqrt(D),
            "U1": rng.standard_normal((H, r)) * s_u,
            "U2": rng.standard_normal((r, H)) * s_u,
            # As in the paper's reference code: the gate starts biased towards keeping h_prev.
            "b_z": np.ones(H),
            "b_h": np.zeros(H),
            "zeta": np.array([1.0]),
            "nu": np.array([-4.0]),
            # Small heads => near-uniform model probs => an untrained router has ~0 confidence
            # and falls back to the safe default instead of routing at random.
            "W_model": rng.standard_normal((N, H)) * 0.01,
            "b_model": np.zeros(N),
            "W_ctx": rng.standard_normal((C, H)) * 0.01,
            "b_ctx": np.zeros(C),
            "w_temp": rng.standard_normal(H) * 0.01,
            "b_temp": np.array([_logit(self.default.temperature / 2.0)
                                if 0.0 < self.default.temperature < 2.0 else 0.0]),
            "w_top_p": rng.standard_normal(H) * 0.01,
            "b_top_p": np.array([_logit(self.default.top_p)
                                 if 0.0 < self.default.top_p < 1.0 else 0.0]),
        }
        return {k: np.ascontiguousarray(v, dtype=dt) for k, v in p.items()}

    def param_shapes(self):
        H, D, r, N, C = self.hidden, self.input_dim, self.rank, self.n_models, len(self.context_bins)
        return {
            "W": (H, D), "U1": (H, r), "U2": (r, H), "b_z": (H,), "b_h": (H,),
            "zeta": (1,), "nu": (1,), "W_model": (N, H), "b_model": (N,),
            "W_ctx": (C, H), "b_ctx": (C,), "w_temp": (H,), "b_temp": (1,),
            "w_top_p": (H,), "b_top_p": (1,),
        }

    def param_count(self, effective=True):
        """Number of parameters; with ``effective`` only W's entries inside the mask count."""
        total = sum(int(v.size) for v in self.params.values())
        if effective:
            total -= int(self.mask.size - self.mask.sum())
        return total

    @property
    def density(self):
        """Fraction of W's entries inside the sparsity mask."""
        return float(self.mask.mean())

    def set_mask(self, mask):
        """Fix W's support; entries outside it are zeroed and stay zero under training.

        Invariant: W is exactly zero outside the mask. The forward passes rely on it rather
        than re-masking on every request; backward masks dW, and anything that writes W must
        call apply_mask() afterwards (ruvllm.training does).
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.hidden, self.input_dim):
            raise invalid(f"mask shape {mask.shape} does not match W {(self.hidden, self.input_dim)}")
        self.mask = mask.copy()
        self._maskf = self.mask.astype(self.dtype)
        self.params["W"] *= self._maskf

    def reset_mask(self):
        """Make W dense again (the zeroed entries restart at 0)."""
        self.set_mask(np.ones((self.hidden, self.input_dim), dtype=bool))

    def apply_mask(self):
        """Re-zero W outside the mask, e.g. after an optimiser step."""
        self.params["W"] *= self._maskf

    def copy(self):
        other = object.__new__(FastGRNNRouter)
        other.__dict__.update(self.__dict__)
        other.model_names = list(self.model_names)
        other.params = {k: v.copy() for k, v in self.params.items()}
        other.mask = self.mask.copy()
        other._maskf = self._maskf.copy()
        return other

    def astype(self, dtype):
        """A copy computing in ``dtype`` (float64 is for gradient checks)."""
        dtype = np.dtype(dtype)
        if dtype not in _ALLOWED_DTYPES:
            raise invalid(f"router dtype must be float32 or float64, not {dtype}")
        other = self.copy()
        other.dtype = dtype
        other.params = {k: v.astype(dtype) for k, v in self.params.items()}
        other._maskf = self.mask.astype(dtype)
        return other

    # ------------------------------------------------------------------ forward

    def _inputs(self, X, H_prev):
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise invalid(f"features must have shape (n, {self.input_dim}), got {X.shape}")
        if not np.isfinite(X).all():
            raise invalid("features contain NaN or infinity")
        if H_prev is None:
            H_prev = np.zeros((X.shape[0], self.hidden), dtype=self.dtype)
        else:
            H_prev = np.asarray(H_prev, dtype=self.dtype)
            if H_prev.ndim == 1 and X.shape[0] == 1:
                H_prev = H_prev[None, :]
            if H_prev.shape != (X.shape[0], self.hidden):
                raise invalid(
                    f"hidden state must have shape ({X.shape[0]}, {self.hidden}), got {H_prev.shape}",
                    hint="pass NULL to start a new session")
            if not np.isfinite(H_prev).all():
                raise invalid("hidden state contains NaN or infinity",
                              hint="pass NULL to start a new session")
        return X, H_prev

    def forward(self, X, H_prev=None):
        """Batched single step: X (B, D), H_prev (B, H) or None (zeros). Returns ForwardCache."""
        X, H_prev = self._inputs(X, H_prev)
        p = self.params
        S = H_prev @ p["U2"].T
        pre = X @ p["W"].T + S @ p["U1"].T
        Z = _sigmoid(pre + p["b_z"])
        Ht = np.tanh(pre + p["b_h"])
        coef = _sigmoid(p["zeta"]) * (1.0 - Z) + _sigmoid(p["nu"])
        H = Z * H_prev + coef * Ht
        model_logits = H @ p["W_model"].T + p["b_model"]
        ctx_logits = H @ p["W_ctx"].T + p["b_ctx"]
        temperature = 2.0 * _sigmoid(H @ p["w_temp"] + p["b_temp"])
        top_p = _sigmoid(H @ p["w_top_p"] + p["b_top_p"])
        return ForwardCache(
            X=X, H_prev=H_prev, S=S, Z=Z, Htilde=Ht, coef=coef, H=H,
            model_logits=model_logits, probs=_softmax(model_logits),
            ctx_logits=ctx_logits, ctx_probs=_softmax(ctx_logits),
            temperature=temperature, top_p=top_p,
        )

    def step(self, X, H_prev=None):
        """Only the new hidden state(s)."""
        return self.forward(X, H_prev).H

    # ------------------------------------------------------------------ backward

    def backward(self, cache, d_model_logits=None, d_ctx_logits=None, d_temperature=None,
                 d_top_p=None, d_h=None, per_sample_sq=False, input_grads=False):
        """Gradients of a scalar loss given its gradients w.r.t. the forward outputs.

        ``d_model_logits`` (B, N), ``d_ctx_logits`` (B, C), ``d_temperature`` (B,),
        ``d_top_p`` (B,), ``d_h`` (B, H) (any may be None = zero). Returns name -> gradient,
        summed over the batch. With ``per_sample_sq`` each entry is instead the sum over the
        batch of the squared per-sample gradient (for a diagonal empirical Fisher); every
        weight gradient here is an outer product a_i b_i^T per sample, so its square is
        (a_i^2)(b_i^2)^T and the sum needs no per-sample loop. With ``input_grads`` the dict
        also holds "X" and "H_prev" (plain per-sample gradients).
        """
        p = self.params
        H, X, Hp, S, Z, Ht = cache.H, cache.X, cache.H_prev, cache.S, cache.Z, cache.Htilde
        B = X.shape[0]
        dt = self.dtype

        def z(shape):
            return np.zeros(shape, dtype=dt)

        dlm = z((B, self.n_models)) if d_model_logits is None else np.asarray(d_model_logits, dt)
        dlc = z((B, len(self.context_bins))) if d_ctx_logits is None else np.asarray(d_ctx_logits, dt)
        # Chain through the output squashes: d(2 sig(a))/da = T (1 - T/2), d sig(a)/da = P (1 - P).
        da_t = z(B) if d_temperature is None else (
            np.asarray(d_temperature, dt) * cache.temperature * (1.0 - 0.5 * cache.temperature))
        da_p = z(B) if d_top_p is None else (
            np.asarray(d_top_p, dt) * cache.top_p * (1.0 - cache.top_p))

        dH = dlm @ p["W_model"] + dlc @ p["W_ctx"] + np.outer(da_t, p["w_temp"]) \
            + np.outer(da_p, p["w_top_p"])
        if d_h is not None:
            dH = dH + np.asarray(d_h, dt)

        sz, sn = _sigmoid(p["zeta"]), _sigmoid(p["nu"])
        dZ = dH * (Hp - sz * Ht)
        dHt = dH * cache.coef
        dpre_z = dZ * Z * (1.0 - Z)
        dpre_h = dHt * (1.0 - Ht * Ht)
        dpre = dpre_z + dpre_h
        dS = dpre @ p["U1"]
        # Per-sample scalar gradients of zeta and nu (B, 1).
        g_zeta = (dH * Ht * (1.0 - Z)).sum(axis=1, keepdims=True) * (sz * (1.0 - sz))
        g_nu = (dH * Ht).sum(axis=1, keepdims=True) * (sn * (1.0 - sn))

        if per_sample_sq:
            sq = np.square
            Xs, Ss, Hps, Hs = sq(X), sq(S), sq(Hp), sq(H)
            grads = {
                "W": (sq(dpre).T @ Xs) * self._maskf,
                "U1": sq(dpre).T @ Ss,
                "U2": sq(dS).T @ Hps,
                "b_z": sq(dpre_z).sum(axis=0),
                "b_h": sq(dpre_h).sum(axis=0),
                "zeta": sq(g_zeta).sum(axis=0),
                "nu": sq(g_nu).sum(axis=0),
                "W_model": sq(dlm).T @ Hs,
                "b_model": sq(dlm).sum(axis=0),
                "W_ctx": sq(dlc).T @ Hs,
                "b_ctx": sq(dlc).sum(axis=0),
                "w_temp": sq(da_t) @ Hs,
                "b_temp": np.array([sq(da_t).sum()], dtype=dt),
                "w_top_p": sq(da_p) @ Hs,
                "b_top_p": np.array([sq(da_p).sum()], dtype=dt),
            }
        else:
            grads = {
                "W": (dpre.T @ X) * self._maskf,
                "U1": dpre.T @ S,
                "U2": dS.T @ Hp,
                "b_z": dpre_z.sum(axis=0),
                "b_h": dpre_h.sum(axis=0),
                "zeta": g_zeta.sum(axis=0),
                "nu": g_nu.sum(axis=0),
                "W_model": dlm.T @ H,
                "b_model": dlm.sum(axis=0),
                "W_ctx": dlc.T @ H,
                "b_ctx": dlc.sum(axis=0),
                "w_temp": da_t @ H,
                "b_temp": np.array([da_t.sum()], dtype=dt),
                "w_top_p": da_p @ H,
                "b_top_p": np.array([da_p.sum()], dtype=dt),
            }
        if input_grads:
            grads["X"] = dpre @ p["W"]
            grads["H_prev"] = dH * Z + dS @ p["U2"]
        return grads

    # ------------------------------------------------------------------ decisions

    def decide(self, features, h_prev=None, confidence_threshold=None):
        """One request: features (D,), h_prev (H,) or None. Returns (Decision, h_new (H,)).

        Same numbers as decide_batch on a batch of one, but on a matrix-vector path with the
        tiny head softmaxes done in Python floats: per-call numpy overhead, not FLOPs,
        dominates at this size.
        """
        thr = self.confidence_threshold if confidence_threshold is None \
            else _check_threshold(confidence_threshold)
        x = np.asarray(features, dtype=self.dtype)
        if x.shape != (self.input_dim,):
            raise invalid(f"features must be a vector of length {self.input_dim}, got shape {x.shape}",
                          hint="use decide_batch for several requests")
        p = self.params
        pre = p["W"] @ x
        hp = None
        if h_prev is not None:
            hp = np.asarray(h_prev, dtype=self.dtype)
            if hp.shape != (self.hidden,):
                raise invalid(f"hidden state must be a vector of length {self.hidden}, got shape {hp.shape}",
                              hint="pass NULL to start a new session")
            pre += p["U1"] @ (p["U2"] @ hp)
        # One finiteness check instead of one per input: a NaN/inf anywhere in x or h_prev makes
        # every entry of pre NaN or inf (0 * inf is NaN, so masked weights do not hide it).
        if not math.isfinite(float(pre @ pre)):  # BLAS: no numpy warning on inf - inf
            self._inputs(x[None, :], None if hp is None else hp[None, :])  # names the culprit
            raise invalid("features or hidden state are too large")
        z = _sigmoid(pre + p["b_z"])
        ht = np.tanh(pre + p["b_h"])
        sz = _py_sigmoid(float(p["zeta"][0]))
        sn = _py_sigmoid(float(p["nu"][0]))
        h = (sz * (1.0 - z) + sn) * ht
        if hp is not None:
            h += z * hp
        probs = _py_softmax((p["W_model"] @ h + p["b_model"]).tolist())
        cprobs = _py_softmax((p["W_ctx"] @ h + p["b_ctx"]).tolist())
        conf = _py_confidence(probs)
        if conf < thr:
            d = self.default
            dec = Decision(
                model_index=d.model_index, model_name=self.model_names[d.model_index],
                probs=probs, context_size=d.context_size,
                context_index=self.context_bins.index(d.context_size), context_probs=cprobs,
                temperature=float(d.temperature), top_p=float(d.top_p), confidence=conf,
                used_default=True)
        else:
            mi = max(range(len(probs)), key=probs.__getitem__)
            ci = max(range(len(cprobs)), key=cprobs.__getitem__)
            temp = 2.0 * _py_sigmoid(float(p["w_temp"] @ h) + float(p["b_temp"][0]))
            top_p = _py_sigmoid(float(p["w_top_p"] @ h) + float(p["b_top_p"][0]))
            dec = Decision(
                model_index=mi, model_name=self.model_names[mi], probs=probs,
                context_size=self.context_bins[ci], context_index=ci, context_probs=cprobs,
                temperature=temp, top_p=top_p, confidence=conf, used_default=False)
        return dec, h

    def decide_batch(self, X, H_prev=None, confidence_threshold=None):
        """Several independent requests at once. Returns (list of Decision, H_new (B, H))."""
        thr = self.confidence_threshold if confidence_threshold is None \
            else _check_threshold(confidence_threshold)
        out = self.forward(X, H_prev)
        conf = confidence_from_probs(out.probs)
        m_idx = out.probs.argmax(axis=1)
        c_idx = out.ctx_probs.argmax(axis=1)
        d = self.default
        d_ctx = self.context_bins.index(d.context_size)
        decisions = []
        for i in range(out.H.shape[0]):
            probs = out.probs[i].tolist()
            cprobs = out.ctx_probs[i].tolist()
            c = float(conf[i])
            if c < thr:
                decisions.append(Decision(
                    model_index=d.model_index, model_name=self.model_names[d.model_index],
                    probs=probs, context_size=d.context_size, context_index=d_ctx,
                    context_probs=cprobs, temperature=float(d.temperature),
                    top_p=float(d.top_p), confidence=c, used_default=True))
            else:
                mi, ci = int(m_idx[i]), int(c_idx[i])
                decisions.append(Decision(
                    model_index=mi, model_name=self.model_names[mi], probs=probs,
                    context_size=self.context_bins[ci], context_index=ci, context_probs=cprobs,
                    temperature=float(out.temperature[i]), top_p=float(out.top_p[i]),
                    confidence=c, used_default=False))
        return decisions, out.H

    # ------------------------------------------------------------------ config and stored forms (router_format.py)

    def config(self):
        return {
            "input_dim": self.input_dim,
            "hidden": self.hidden,
            "rank": self.rank,
            "n_models": self.n_models,
            "model_names": list(self.model_names),
            "context_bins": list(self.context_bins),
            "default": self.default.to_dict(),
            "confidence_threshold": float(self.confidence_threshold),
            "seed": self.seed,
            "dtype": self.dtype.str.lstrip("<>="),
        }

    def to_dict(self):
        """JSON-ready dict (for a jsonb column): parameters as nested lists, mask packed."""
        return router_format.to_dict(self)

    @classmethod
    def from_dict(cls, d):
        return router_format.from_dict(d)

    def to_bytes(self):
        """Compact binary form (for a bytea column): only W's entries inside the mask are stored."""
        return router_format.to_bytes(self)

    @classmethod
    def from_bytes(cls, blob):
        return router_format.from_bytes(blob)

    def set_params(self, arrays, mask):
        """Parameters and mask replaced by these arrays (checked, copied into the router's dtype)."""
        shapes = self.param_shapes()
        for name in PARAM_NAMES:
            a = arrays[name]
            if a.shape != shapes[name]:
                raise invalid(f"router parameter {name} has shape {a.shape}, expected {shapes[name]}")
            if not np.isfinite(a).all():
                raise invalid(f"router parameter {name} contains NaN or infinity")
            self.params[name] = np.array(a, dtype=self.dtype)  # own, writable, native order
        self.set_mask(mask)


# ---------------------------------------------------------------------- helpers


def _as_int(value, name, lo, hi):
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise invalid(f"{name} must be an integer") from None
    if v != value or not lo <= v <= hi:
        raise invalid(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return v


def _check_threshold(t):
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise invalid("confidence_threshold must be a number") from None
    if not 0.0 <= t <= 1.0:
        raise invalid(f"confidence_threshold must be in [0, 1], got {t}")
    return t


def _check_default(d, n_models, bins):
    if not 0 <= int(d.model_index) < n_models:
        raise invalid(f"default model_index {d.model_index} is out of range for {n_models} models")
    if int(d.context_size) not in bins:
        raise invalid(f"default context_size {d.context_size} is not one of the bins {list(bins)}")
    if not 0.0 <= float(d.temperature) <= 2.0:
        raise invalid(f"default temperature must be in [0, 2], got {d.temperature}")
    if not 0.0 <= float(d.top_p) <= 1.0:
        raise invalid(f"default top_p must be in [0, 1], got {d.top_p}")


# Serialisation is router_format's; imported last, as it builds on the classes above.
from . import router_format  # noqa: E402
