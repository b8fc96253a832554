"""Training for the FastGRNN router (ruvllm.router).

Loss over a weighted batch (each term is a weighted mean over the samples that carry that
label; unlabelled entries are model/context -1 and temperature/top_p NaN):

    L = CE(model) + CE(context bin) + alpha * SmoothL1(temperature) + beta * SmoothL1(top_p)
        + lambda_ewc / 2 * sum_i F_i (theta_i - theta*_i)^2

Schedule (FastGRNN paper, section 3.2): train dense -> hard-threshold W to its top-k% entries
by magnitude -> retrain on that fixed support. Continual updates add the EWC term so that a
router retrained on new traffic does not forget what the Fisher says mattered before, and a
reservoir-sampled replay buffer keeps a uniform sample of past traffic to mix in.

Everything is deterministic given the seed: numpy Generators for shuffling, splitting and the
reservoir; no global RNG state is touched.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from ruvllm.errors import invalid
from ruvllm.router import confidence_from_probs

# ---------------------------------------------------------------------- data


@dataclass
class TrainingSet:
    """Column-oriented training data. Build with from_arrays()/from_samples(), which validate."""

    X: np.ndarray                   # (n, D) float32
    model: np.ndarray               # (n,) int64, -1 = no model label
    context: np.ndarray             # (n,) int64 bin index, -1 = no context label
    temperature: np.ndarray         # (n,) float32, NaN = no target
    top_p: np.ndarray               # (n,) float32, NaN = no target
    weights: np.ndarray             # (n,) float32, >= 0
    H_prev: np.ndarray = None       # (n, H) float32 or None (= fresh sessions)
    utilities: np.ndarray = None    # (n, N) float, per-model utility, for held-out evaluation

    def __len__(self):
        return int(self.X.shape[0])

    @classmethod
    def from_arrays(cls, X, model_labels=None, context_labels=None, temperature=None, top_p=None,
                    weights=None, H_prev=None, utilities=None):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] == 0:
            raise invalid(f"training features must be a non-empty (n, d) array, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise invalid("training features contain NaN or infinity")
        n = X.shape[0]

        def labels(a, what):
            if a is None:
                return np.full(n, -1, dtype=np.int64)
            a = np.asarray(a)
            if a.shape != (n,):
                raise invalid(f"{what} labels must have shape ({n},), got {a.shape}")
            if a.dtype.kind == "f":
                if not np.isfinite(a).all() or (a != np.round(a)).any():
                    raise invalid(f"{what} labels must be integers")
            elif a.dtype.kind not in "iub":
                raise invalid(f"{what} labels must be integers")
            a = a.astype(np.int64)
            if (a < -1).any():
                raise invalid(f"{what} labels must be >= 0 (or -1 for unlabelled)")
            return a

        def targets(a, what, hi):
            if a is None:
                return np.full(n, np.nan, dtype=np.float32)
            a = np.asarray(a, dtype=np.float32)
            if a.shape != (n,):
                raise invalid(f"{what} targets must have shape ({n},), got {a.shape}")
            ok = a[~np.isnan(a)]
            if ((ok < 0.0) | (ok > hi)).any():
                raise invalid(f"{what} targets must be in [0, {hi:g}] (NaN for none)")
            return a

        if weights is None:
            w = np.ones(n, dtype=np.float32)
        else:
            w = np.asarray(weights, dtype=np.float32)
            if w.shape != (n,):
                raise invalid(f"sample weights must have shape ({n},), got {w.shape}")
            if not np.isfinite(w).all() or (w < 0).any():
                raise invalid("sample weights must be finite and >= 0")
        if H_prev is not None:
            H_prev = np.asarray(H_prev, dtype=np.float32)
            if H_prev.ndim != 2 or H_prev.shape[0] != n or not np.isfinite(H_prev).all():
                raise invalid(f"H_prev must be a finite (n, hidden) array with n={n}")
        if utilities is not None:
            utilities = np.asarray(utilities, dtype=np.float64)
            if utilities.ndim != 2 or utilities.shape[0] != n:
                raise invalid(f"utilities must be an (n, n_models) array with n={n}")
        return cls(X=X, model=labels(model_labels, "model"), context=labels(context_labels, "context"),
                   temperature=targets(temperature, "temperature", 2.0),
                   top_p=targets(top_p, "top_p", 1.0), weights=w, H_prev=H_prev, utilities=utilities)

    @classmethod
    def from_samples(cls, samples, context_bins=None):
        """From dicts such as a ReplayBuffer holds.

        Keys: "features" (required), "model", "context" (bin index) or "context_size" (tokens,
        mapped with context_bin_index and ``context_bins``), "temperature", "top_p",
        "weight", "h_prev", "utilities". Missing keys mean unlabelled.
        """
        samples = list(samples)
        if not samples:
            raise invalid("no training samples")
        n = len(samples)

        def col(key, default):
            return [s.get(key, default) if s.get(key) is not None else default for s in samples]

        try:
            X = np.asarray([s["features"] for s in samples], dtype=np.float32)
        except KeyError:
            raise invalid("every training sample needs a 'features' vector") from None
        except ValueError:
            raise invalid("training sample feature vectors differ in length") from None
        ctx = col("context", -1)
        if any(s.get("context_size") is not None for s in samples):
            if context_bins is None:
                raise invalid("samples give context_size; pass context_bins to map it to a bin")
            ctx = [c if c != -1 or s.get("context_size") is None
                   else context_bin_index(s["context_size"], context_bins)
                   for c, s in zip(ctx, samples)]
        h = None
        if any(s.get("h_prev") is not None for s in samples):
            width = next(len(s["h_prev"]) for s in samples if s.get("h_prev") is not None)
            h = np.zeros((n, width), dtype=np.float32)
            for i, s in enumerate(samples):
                if s.get("h_prev") is not None:
                    h[i] = s["h_prev"]
        u = None
        if all(s.get("utilities") is not None for s in samples):
            u = np.asarray([s["utilities"] for s in samples], dtype=np.float64)
        return cls.from_arrays(
            X, col("model", -1), ctx, col("temperature", np.nan), col("top_p", np.nan),
            col("weight", 1.0), H_prev=h, utilities=u)

    def subset(self, idx):
        idx = np.asarray(idx)
        return TrainingSet(
            X=self.X[idx], model=self.model[idx], context=self.context[idx],
            temperature=self.temperature[idx], top_p=self.top_p[idx], weights=self.weights[idx],
            H_prev=None if self.H_prev is None else self.H_prev[idx],
            utilities=None if self.utilities is None else self.utilities[idx])

    def split(self, heldout_fraction, seed=0):
        """Seeded random split -> (train, heldout)."""
        if not 0.0 < heldout_fraction < 1.0:
            raise invalid(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
        n = len(self)
        n_held = int(round(n * heldout_fraction))
        if n_held < 1 or n_held >= n:
            raise invalid(f"heldout_fraction {heldout_fraction} leaves an empty split of {n} samples")
        perm = np.random.default_rng(seed).permutation(n)
        return self.subset(np.sort(perm[n_held:])), self.subset(np.sort(perm[:n_held]))

    def check_against(self, router):
        if self.X.shape[1] != router.input_dim:
            raise invalid(f"training features have {self.X.shape[1]} columns, router expects {router.input_dim}")
        if (self.model >= router.n_models).any():
            raise invalid(f"model labels must be < n_models ({router.n_models})")
        if (self.context >= len(router.context_bins)).any():
            raise invalid(f"context labels must be < the number of bins ({len(router.context_bins)})")
        if self.H_prev is not None and self.H_prev.shape[1] != router.hidden:
            raise invalid(f"H_prev has {self.H_prev.shape[1]} columns, router hidden size is {router.hidden}")
        if self.utilities is not None and self.utilities.shape[1] != router.n_models:
            raise invalid(f"utilities have {self.utilities.shape[1]} columns, router has {router.n_models} models")


def context_bin_index(tokens, context_bins):
    """Smallest bin that holds ``tokens``; the largest bin if none does."""
    for i, b in enumerate(context_bins):
        if tokens <= b:
            return i
    return len(context_bins) - 1


# ---------------------------------------------------------------------- utility labels


def utility(quality, latency=0.0, cost=0.0, lam=0.0, mu=0.0):
    """U = Q - lam * latency - mu * cost, elementwise (NaN quality stays NaN = not evaluated)."""
    q = np.asarray(quality, dtype=np.float64)
    return q - lam * np.asarray(latency, dtype=np.float64) - mu * np.asarray(cost, dtype=np.float64)


def utility_labels(quality, latency=0.0, cost=0.0, lam=0.0, mu=0.0):
    """Per-sample best model. quality/latency/cost broadcast to (n, N); NaN = not evaluated.

    Returns (labels (n,) int64, utilities (n, N) float64). Ties go to the lower model index,
    so list cheaper models first. A row with no evaluated model is an error.
    """
    u = np.atleast_2d(utility(quality, latency, cost, lam, mu))
    missing = np.isnan(u)
    if missing.all(axis=1).any():
        raise invalid("a sample has no evaluated model (all utilities are NaN)")
    labels = np.where(missing, -np.inf, u).argmax(axis=1)
    return labels.astype(np.int64), u


def best_model_label(outcomes, lam=0.0, mu=0.0):
    """Best model index from per-model (quality, latency, cost) outcomes; None = not evaluated."""
    rows = [(math.nan, 0.0, 0.0) if o is None else tuple(float(v) for v in o) for o in outcomes]
    if not rows or any(len(r) != 3 for r in rows):
        raise invalid("outcomes must be a non-empty list of (quality, latency, cost) triples")
    a = np.asarray(rows)
    labels, _ = utility_labels(a[None, :, 0], a[None, :, 1], a[None, :, 2], lam, mu)
    return int(labels[0])


# ---------------------------------------------------------------------- loss


def _log_softmax(logits):
    m = logits.max(axis=1, keepdims=True)
    shifted = logits - m
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _ce(logits, probs, labels, w):
    """Weighted-mean CE and its gradient w.r.t. the logits (zero rows for unlabelled)."""
    valid = labels >= 0
    wsum = float(w[valid].sum())
    grad = np.zeros_like(logits)
    if wsum <= 0.0:
        return 0.0, grad
    rows = np.nonzero(valid)[0]
    y = labels[rows]
    logp = _log_softmax(logits[rows])
    wn = (w[rows] / wsum)[:, None]
    loss = -float((wn[:, 0] * logp[np.arange(rows.size), y]).sum(dtype=np.float64))
    g = probs[rows].copy()
    g[np.arange(rows.size), y] -= 1.0
    grad[rows] = g * wn
    return loss, grad


def _smooth_l1(pred, target, w, delta):
    """Weighted-mean SmoothL1 (PyTorch's, with beta=delta) and its gradient w.r.t. pred."""
    valid = ~np.isnan(target)
    wsum = float(w[valid].sum())
    grad = np.zeros_like(pred)
    if wsum <= 0.0:
        return 0.0, grad
    r = pred[valid] - target[valid]
    a = np.abs(r)
    per = np.where(a < delta, 0.5 * r * r / delta, a - 0.5 * delta)
    wn = w[valid] / wsum
    grad[valid] = wn * np.clip(r / delta, -1.0, 1.0)
    return float((wn * per).sum(dtype=np.float64)), grad


class EWC:
    """Elastic weight consolidation: lam/2 * sum F (theta - theta*)^2 over every parameter."""

    def __init__(self, fisher, anchor, lam):
        lam = float(lam)
        if not math.isfinite(lam) or lam < 0.0:
            raise invalid(f"lambda_ewc must be finite and >= 0, got {lam}")
        missing = [k for k in fisher if k not in anchor]
        if missing:
            raise invalid(f"EWC anchor lacks parameters {missing}")
        self.fisher = {k: np.asarray(v, dtype=np.float32) for k, v in fisher.items()}
        self.anchor = {k: np.asarray(anchor[k], dtype=np.float32) for k in fisher}
        self.lam = lam

    @classmethod
    def from_router(cls, router, data, lam, **fisher_kwargs):
        """Anchor at the router's current parameters with the Fisher over ``data``."""
        f = fisher_information(router, data, **fisher_kwargs)
        return cls(f, {k: v.copy() for k, v in router.params.items()}, lam)

    def penalty(self, params):
        total = 0.0
        for k, f in self.fisher.items():
            d = params[k].astype(np.float64) - self.anchor[k]
            total += float((f * d * d).sum())
        return 0.5 * self.lam * total

    def grad(self, params):
        return {k: (self.lam * f * (params[k] - self.anchor[k])).astype(params[k].dtype)
                for k, f in self.fisher.items()}

    def to_dict(self):
        return {"lambda": self.lam,
                "fisher": {k: v.tolist() for k, v in self.fisher.items()},
                "anchor": {k: v.tolist() for k, v in self.anchor.items()}}

    @classmethod
    def from_dict(cls, d):
        try:
            return cls(d["fisher"], d["anchor"], d["lambda"])
        except (KeyError, TypeError):
            raise invalid("EWC state must have 'fisher', 'anchor' and 'lambda'") from None


def loss_and_grads(router, data, *, alpha=1.0, beta=1.0, huber_delta=1.0, ewc=None,
                   need_grads=True):
    """Training loss on ``data`` (a TrainingSet) -> (loss, grads or None, parts)."""
    # Python floats: a numpy float64 scalar here would silently promote float32 work to float64.
    alpha, beta, huber_delta = float(alpha), float(beta), float(huber_delta)
    out = router.forward(data.X, data.H_prev)
    dt = router.dtype
    w = data.weights.astype(dt)
    l_m, g_m = _ce(out.model_logits, out.probs, data.model, w)
    l_c, g_c = _ce(out.ctx_logits, out.ctx_probs, data.context, w)
    l_t, g_t = _smooth_l1(out.temperature, data.temperature.astype(dt), w, huber_delta)
    l_p, g_p = _smooth_l1(out.top_p, data.top_p.astype(dt), w, huber_delta)
    l_e = ewc.penalty(router.params) if ewc is not None else 0.0
    parts = {"model_ce": l_m, "context_ce": l_c, "temperature": l_t, "top_p": l_p, "ewc": l_e}
    loss = l_m + l_c + alpha * l_t + beta * l_p + l_e
    if not need_grads:
        return loss, None, parts
    grads = router.backward(out, g_m, g_c, alpha * g_t, beta * g_p)
    if ewc is not None:
        for k, g in ewc.grad(router.params).items():
            grads[k] += g
        grads["W"] *= router._maskf
    return loss, grads, parts


def fisher_information(router, data, *, max_samples=None, seed=0, batch_size=2048):
    """Diagonal empirical Fisher: weighted mean over samples of the squared per-sample gradient
    of the labels' negative log-likelihood.

    The likelihood is the model's: categorical for the model and context heads, unit-variance
    Gaussian for temperature and top_p (so their heads get a Fisher too, which EWC needs to
    protect them). Unlabelled heads contribute nothing for that sample. ``max_samples`` takes a
    seeded random subset.
    """
    data.check_against(router)
    n = len(data)
    if max_samples is not None and max_samples < n:
        data = data.subset(np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False)))
        n = max_samples
    wtot = float(data.weights.sum(dtype=np.float64))
    if wtot <= 0.0:
        raise invalid("sample weights sum to zero")
    acc = {k: np.zeros(v.shape, dtype=np.float64) for k, v in router.params.items()}
    for s in range(0, n, batch_size):
        b = data.subset(np.arange(s, min(n, s + batch_size)))
        out = router.forward(b.X, b.H_prev)
        # Squared per-sample gradients summed with weights w_i / W: scale each sample's
        # output-gradients by sqrt(w_i / W) before squaring.
        sw = np.sqrt(b.weights / wtot).astype(router.dtype)

        def onehot_grad(probs, labels):
            g = probs.copy()
            rows = np.nonzero(labels >= 0)[0]
            g[rows, labels[rows]] -= 1.0
            g[labels < 0] = 0.0
            return g * sw[:, None]

        d_t = np.nan_to_num(out.temperature - b.temperature, nan=0.0) * sw
        d_p = np.nan_to_num(out.top_p - b.top_p, nan=0.0) * sw
        g = router.backward(out, onehot_grad(out.probs, b.model), onehot_grad(out.ctx_probs, b.context),
                            d_t, d_p, per_sample_sq=True)
        for k in acc:
            acc[k] += g[k]
    return {k: v.astype(np.float32) for k, v in acc.items()}


# ---------------------------------------------------------------------- optimiser


class Adam:
    """Adam (Kingma & Ba) over a dict of arrays, updated in place.

    ``weight_decay`` is decoupled (AdamW) and applies to matrices only. No randomness: given
    the same gradients it takes the same steps.
    """

    def __init__(self, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        if not lr > 0 or not 0 <= beta1 < 1 or not 0 <= beta2 < 1 or not eps > 0 or weight_decay < 0:
            raise invalid("Adam needs lr > 0, 0 <= beta1, beta2 < 1, eps > 0, weight_decay >= 0")
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(beta1), float(beta2), float(eps)
        self.weight_decay = float(weight_decay)
        self.t = 0
        self.m = {}
        self.v = {}

    def step(self, params, grads):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # Bias corrections folded into the step size; Python floats keep float32 arrays float32.
        step = self.lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        eps = self.eps * math.sqrt(1.0 - b2 ** self.t)
        for k, g in grads.items():
            if k not in params:
                continue
            p = params[k]
            if k not in self.m:
                self.m[k] = np.zeros_like(p)
                self.v[k] = np.zeros_like(p)
            m, v = self.m[k], self.v[k]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            if self.weight_decay and p.ndim == 2:
                p *= 1.0 - self.lr * self.weight_decay
            p -= step * m / (np.sqrt(v) + eps)

    def state_dict(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay, "t": self.t,
                "m": {k: v.tolist() for k, v in self.m.items()},
                "v": {k: v.tolist() for k, v in self.v.items()}}

    @classmethod
    def from_state_dict(cls, d, dtype=np.float32):
        opt = cls(d["lr"], d["beta1"], d["beta2"], d["eps"], d["weight_decay"])
        opt.t = int(d["t"])
        opt.m = {k: np.asarray(v, dtype=dtype) for k, v in d["m"].items()}
        opt.v = {k: np.asarray(v, dtype=dtype) for k, v in d["v"].items()}
        return opt


def _clip(grads, max_norm):
    if not max_norm:
        return 1.0
    sq = sum(float(np.dot(g.ravel(), g.ravel())) for g in grads.values())
    norm = math.sqrt(sq)
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


# ---------------------------------------------------------------------- sparsity


def sparsify(router, keep_fraction):
    """Hard-threshold W: keep exactly round(keep_fraction * W.size) largest-|W| entries of the
    current support (ties -> lower flat index) and zero the rest. Only shrinks the support;
    call router.reset_mask() first to re-grow it. Returns the number of entries kept.
    """
    keep_fraction = float(keep_fraction)
    if not 0.0 < keep_fraction <= 1.0:
        raise invalid(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    W = router.params["W"]
    k = max(1, int(round(keep_fraction * W.size)))
    support = int(router.mask.sum())
    if k >= support:
        return support
    score = np.where(router.mask, np.abs(W), -1.0).ravel()
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(W.size, dtype=bool)
    mask[order[:k]] = True
    router.set_mask(mask.reshape(W.shape))
    return k


# ---------------------------------------------------------------------- replay


class ReplayBuffer:
    """Reservoir sample (Vitter's Algorithm R) of everything ever added.

    After n adds each one is held with probability capacity/n. Samples are stored as given;
    keep them JSON-ready (e.g. dicts of lists) if the state is to go into jsonb.
    """

    def __init__(self, capacity, seed=0):
        capacity = int(capacity)
        if capacity < 1:
            raise invalid(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.n_seen = 0
        self.items = []
        self._rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.items)

    def add(self, sample):
        """Offer one sample; returns True if it was stored."""
        self.n_seen += 1
        if len(self.items) < self.capacity:
            self.items.append(sample)
            return True
        j = int(self._rng.integers(0, self.n_seen))
        if j < self.capacity:
            self.items[j] = sample
            return True
        return False

    def extend(self, samples):
        for s in samples:
            self.add(s)

    def sample(self, n):
        """Up to n distinct stored samples, uniformly without replacement."""
        n = int(n)
        if n < 0:
            raise invalid(f"sample size must be >= 0, got {n}")
        n = min(n, len(self.items))
        idx = self._rng.choice(len(self.items), size=n, replace=False) if n else []
        return [self.items[i] for i in idx]

    def to_state(self):
        st = self._rng.bit_generator.state
        # 128-bit PCG state as strings: jsonb numerics come back through PL/Python as Decimal.
        return {"capacity": self.capacity, "n_seen": self.n_seen, "items": list(self.items),
                "rng": {"bit_generator": st["bit_generator"],
                        "state": {k: str(v) for k, v in st["state"].items()},
                        "has_uint32": int(st["has_uint32"]), "uinteger": str(st["uinteger"])}}

    @classmethod
    def from_state(cls, state):
        try:
            buf = cls(state["capacity"])
            buf.n_seen = int(state["n_seen"])
            buf.items = list(state["items"])
            r = state["rng"]
            if r["bit_generator"] != "PCG64":
                raise ValueError(r["bit_generator"])
            buf._rng.bit_generator.state = {
                "bit_generator": "PCG64",
                "state": {k: int(v) for k, v in r["state"].items()},
                "has_uint32": int(r["has_uint32"]), "uinteger": int(r["uinteger"])}
        except (KeyError, TypeError, ValueError) as e:
            raise invalid("replay buffer state is malformed", detail=repr(e)) from None
        if len(buf.items) > buf.capacity or buf.n_seen < len(buf.items):
            raise invalid("replay buffer state is inconsistent (items exceed capacity or n_seen)")
        return buf


# ---------------------------------------------------------------------- training loop


def _evaluate(router, data, confidence_threshold):
    out = router.forward(data.X, data.H_prev)
    m = {}
    lab = data.model >= 0
    pred = out.probs.argmax(axis=1)
    if lab.any():
        m["accuracy"] = float((pred[lab] == data.model[lab]).mean())
    if data.utilities is not None:
        thr = router.confidence_threshold if confidence_threshold is None else confidence_threshold
        fallback = confidence_from_probs(out.probs) < thr
        chosen = np.where(fallback, router.default.model_index, pred)
        u = np.nan_to_num(data.utilities, nan=-np.inf)
        rows = np.arange(len(data))
        m["utility"] = float(np.mean(u[rows, chosen]))
        m["utility_no_fallback"] = float(np.mean(u[rows, pred]))
        m["oracle_utility"] = float(np.mean(u.max(axis=1)))
        m["default_utility"] = float(np.mean(u[:, router.default.model_index]))
        m["per_model_utility"] = [float(x) for x in np.mean(u, axis=0)]
        m["fallback_rate"] = float(fallback.mean())
    return m


def train(router, samples, *, heldout=None, heldout_fraction=0.0, epochs=10, sparse_epochs=None,
          keep_fraction=0.5, batch_size=256, lr=3e-3, alpha=1.0, beta=1.0, huber_delta=1.0,
          ewc=None, weight_decay=0.0, clip_norm=5.0, seed=0, confidence_threshold=None):
    """Train ``router`` in place and return metrics.

    ``samples``: a TrainingSet or an iterable of sample dicts (see TrainingSet.from_samples).
    ``heldout``: a TrainingSet/samples for evaluation, or take ``heldout_fraction`` of samples.
    Schedule: ``epochs`` on the current support; then, if ``keep_fraction`` is below the
    current density, hard-threshold W to it, and ``sparse_epochs`` (default epochs // 2) on
    the fixed support with a fresh Adam (old moments would move pruned weights). Pass
    keep_fraction=None (or 1.0) for a continual update that keeps the existing support.

    Defaults (10 + 5 epochs, lr 3e-3, batch 256) train 10K samples in ~1-2 s here; on a
    synthetic 10K routing task longer/faster schedules overfit the held-out split. Every
    epoch is a full pass over a seeded permutation; there is no early stopping.
    """
    t0 = time.perf_counter()
    data = samples if isinstance(samples, TrainingSet) else \
        TrainingSet.from_samples(samples, router.context_bins)
    if heldout is not None and not isinstance(heldout, TrainingSet):
        heldout = TrainingSet.from_samples(heldout, router.context_bins)
    if heldout is None and heldout_fraction:
        data, heldout = data.split(heldout_fraction, seed=seed)
    data.check_against(router)
    if heldout is not None:
        heldout.check_against(router)
    epochs = int(epochs)
    batch_size = int(batch_size)
    if epochs < 0 or batch_size < 1:
        raise invalid("epochs must be >= 0 and batch_size >= 1")
    sparse_epochs = epochs // 2 if sparse_epochs is None else int(sparse_epochs)
    kw = dict(alpha=alpha, beta=beta, huber_delta=huber_delta, ewc=ewc)
    rng = np.random.default_rng(seed)
    n = len(data)

    metrics = {"n_train": n, "n_heldout": 0 if heldout is None else len(heldout)}
    metrics["loss_before"], _, _ = loss_and_grads(router, data, need_grads=False, **kw)
    if heldout is not None:
        metrics["heldout_loss_before"], _, _ = loss_and_grads(router, heldout, need_grads=False, **kw)
        metrics["heldout_before"] = _evaluate(router, heldout, confidence_threshold)

    def run(n_epochs):
        opt = Adam(lr=lr, weight_decay=weight_decay)
        steps = 0
        for _ in range(n_epochs):
            perm = rng.permutation(n)
            for s in range(0, n, batch_size):
                batch = data.subset(perm[s:s + batch_size])
                _, grads, _ = loss_and_grads(router, batch, **kw)
                _clip(grads, clip_norm)
                opt.step(router.params, grads)
                router.apply_mask()
                steps += 1
        return steps

    steps = run(epochs)
    kept = None
    if keep_fraction is not None and keep_fraction < router.density:
        kept = sparsify(router, keep_fraction)
        steps += run(sparse_epochs)

    loss, _, parts = loss_and_grads(router, data, need_grads=False, **kw)
    metrics.update(loss_after=loss, parts_after=parts, steps=steps, w_kept=kept,
                   density=router.density, param_count=router.param_count())
    if heldout is not None:
        metrics["heldout_loss_after"], _, metrics["heldout_parts_after"] = loss_and_grads(
            router, heldout, need_grads=False, **kw)
        metrics["heldout"] = _evaluate(router, heldout, confidence_threshold)
    metrics["seconds"] = time.perf_counter() - t0
    return metrics


def train_arrays(router, X, model_labels, context_labels=None, temperature=None, top_p=None,
                 weights=None, *, H_prev=None, utilities=None, **train_kwargs):
    """train() from plain arrays: X (n, D) float32, labels (n,) ints, targets (n,) floats."""
    data = TrainingSet.from_arrays(X, model_labels, context_labels, temperature, top_p, weights,
                                   H_prev=H_prev, utilities=utilities)
    return train(router, data, **train_kwargs)


__all__ = [
    "TrainingSet", "context_bin_index", "utility", "utility_labels", "best_model_label",
    "loss_and_grads", "EWC", "fisher_information", "Adam", "sparsify", "ReplayBuffer",
    "train", "train_arrays",
]
