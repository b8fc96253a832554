#!/usr/bin/env python3
"""bench/router: the FastGRNN router on real routing labels (RouteLLM's MMLU responses).

    make bench-router                            # all 14,042 questions, ~3-5 min once embedded
    RUVLLM_BENCH_SCALE=small make bench-router   # 30 questions per subject: a ~3 min smoke run,
                                                 # seconds once the full run's cache exists

The data set (../shared/datasets/routellm-mmlu: per question, did Mixtral-8x7B (weak) and
GPT-4-1106 (strong) answer correctly) is read in place; `make bench-router` binds it read-only
into the root. The prompts are embedded with ruvllm's own numpy all-MiniLM-L6-v2 once and cached
in /var/tmp/ruvllm-bench (keyed by a hash of the prompts; ~10-30 min on 2 cores, depending on
what else runs).

Protocol (every choice is made on the validation split; the test split is only reported):
  * splits: test 20%, validation 15%, train 65%, stratified by subject x (weak right, strong
    right); identical prompts stay on one side; the 5 prompts of contaminated_prompts.jsonl
    are never in validation or test.
  * router input: the 384-d embedding projected to the router's 128 inputs by a PCA fitted on
    the train split, scaled to order one but not whitened (the product's features.build needs
    search rows and system statistics that a data set of questions does not have; a second
    router reads features.build anyway, with no search rows and a default system state).
  * labels: "oracle" = strong only where weak is wrong and strong right, else weak; "utility" =
    argmax of U = correct - mu * cost (weak 1, strong STRONG_COST; mu = ruvllm.utility_mu's
    default 0.01) weighted by the utility margin, as the background loop labels oracle rows.
  * the label kind, lr and epochs (router), the label kind and L2 (logistic regression) are
    chosen on validation APGR; the cost operating point is the threshold whose validation
    accuracy is within 2 points of always-strong at the lowest cost.
  * forgetting: train on STEM subjects, then 10,000 Adam updates on the other subjects, plain
    or with EWC (its lambda chosen on validation) and/or replay; decision accuracy on the STEM
    test questions before and after.
"""
import datetime
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for results.py, common.py
import results  # noqa: E402
from common import cli, log, machine, print_report  # noqa: E402

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "python"), str(HERE)]

import data  # noqa: E402
import metrics as M  # noqa: E402
from ruvllm import router as R  # noqa: E402
from ruvllm import training as T  # noqa: E402

SECTION = "## bench/router"
SEED = 0
TEST_FRACTION, VAL_FRACTION = 0.20, 0.15
STRONG_COST = 20          # a strong call costs 20 weak ones (the README's weak=1, strong=N)
MU = 0.01                 # ruvllm.utility_mu's default
MAX_DROP = 0.02           # the cost target: within 2 accuracy points of always-strong
ROUTER_GRID = [(lr, ep) for lr in (1e-3, 3e-3) for ep in (2, 5, 10)]   # (lr, dense epochs)
FEATURES_EPOCHS = (2, 5, 10, 20)
PATTERN_CLUSTERS = 64
LR_L2 = (1e-4, 1e-3, 1e-2)
BOOTSTRAP = 1000
# MMLU's STEM subjects (Hendrycks et al.'s categories); the forgetting experiment's first group.
STEM = {
    "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
    "college_computer_science", "college_mathematics", "college_physics", "computer_security",
    "conceptual_physics", "electrical_engineering", "elementary_mathematics",
    "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_mathematics", "high_school_physics", "high_school_statistics",
    "machine_learning",
}
SCALES = {
    "small": dict(per_subject=30, updates=1_000, bootstrap=200),
    "default": dict(per_subject=None, updates=10_000, bootstrap=BOOTSTRAP),
}
# Forgetting: phase-B mini-batches, EWC strength, replay buffer.
BATCH = 64
FORGET_LR = 3e-3
EWC_LAMBDAS = (1.0, 10.0, 100.0, 1000.0)   # 1 is what learning.background_loop uses
REPLAY_CAPACITY = 2000


def new_router(seed=SEED):
    return R.FastGRNNRouter(2, input_dim=R.INPUT_DIM, model_names=["weak", "strong"], seed=seed)


class Bench:
    def __init__(self, scale, data_dir, cache_dir):
        self.scale, self.cfg = scale, SCALES[scale]
        self.data_dir, self.cache_dir = Path(data_dir), Path(cache_dir)
        self.notes = []

    # -- data ----------------------------------------------------------------------------------

    def load(self):
        d = data.load(self.data_dir)
        self.n_all = len(d)
        keep = np.arange(len(d))
        if self.cfg["per_subject"]:
            rng = np.random.default_rng(SEED)
            keep = np.sort(np.concatenate([
                rng.permutation(np.nonzero(d.subject == s)[0])[:self.cfg["per_subject"]]
                for s in range(len(d.subjects))]))
        self.d = d
        self.idx = keep
        self.prompts = [d.prompts[i] for i in keep]
        self.subject = d.subject[keep]
        self.weak = d.weak[keep]
        self.strong = d.strong[keep]
        self.contaminated = d.contaminated[keep]
        self.y = M.oracle_labels(self.weak, self.strong)
        quality = np.stack([self.weak, self.strong], axis=1).astype(np.float64)
        self.u_labels, U = T.utility_labels(quality, cost=np.array([1.0, STRONG_COST]), mu=MU)
        srt = np.sort(U, axis=1)
        self.u_weights = (srt[:, -1] - srt[:, -2]).astype(np.float32)
        log(f"{len(keep)} of {self.n_all} questions, {len(d.subjects)} subjects; weak right "
            f"{self.weak.mean():.1%}, strong right {self.strong.mean():.1%}, strong-only "
            f"{self.y.mean():.1%}, contaminated {int(self.contaminated.sum())}")

    def embed(self):
        t0 = time.perf_counter()
        full = data.cache_file(self.d.prompts, self.cache_dir)
        if len(self.prompts) < len(self.d.prompts) and full.is_file():
            # A small run reuses the full run's cache rather than embed its subset again.
            log(f"embeddings: the full data set's cache {full}")
            E, tokens, trunc, self.embed_cold_s = data.embeddings(self.d.prompts, self.cache_dir,
                                                                  log=log)
            self.E, self.tokens, trunc = E[self.idx], tokens[self.idx], trunc[self.idx]
        else:
            self.E, self.tokens, trunc, self.embed_cold_s = data.embeddings(
                self.prompts, self.cache_dir, log=log)
        self.embed_s = time.perf_counter() - t0
        self.truncated = int(np.asarray(trunc).sum())

    def split(self):
        groups = data.prompt_groups(self.prompts)
        strata = self.subject * 4 + self.weak * 2 + self.strong
        self.test = data.stratified_split(strata, groups, TEST_FRACTION, SEED, forbid=self.contaminated)
        self.val = data.stratified_split(strata, groups, VAL_FRACTION, SEED + 1,
                                         forbid=self.contaminated | self.test)
        self.train = ~self.test & ~self.val
        # Duplicated prompts are one group, so they never straddle splits.
        for a, b in ((self.train, self.test), (self.train, self.val), (self.val, self.test)):
            assert not set(groups[a].tolist()) & set(groups[b].tolist())
        self.pca = M.PCA(R.INPUT_DIM, whiten=False).fit(self.E[self.train])
        self.X = self.pca.transform(self.E)
        log(f"split: train {self.train.sum()}, val {self.val.sum()}, test {self.test.sum()}; "
            f"PCA 384 -> {R.INPUT_DIM} keeps {self.pca.explained:.1%} of the variance")

    def labels(self, kind):
        if kind == "oracle":
            return self.y, None
        return self.u_labels, self.u_weights

    def apgr(self, score, mask):
        return M.apgr(score[mask], self.weak[mask], self.strong[mask])

    # -- routers ---------------------------------------------------------------------------------

    def fit_router(self, kind, lr, epochs, mask, seed=SEED, X=None):
        X = self.X if X is None else X
        lab, w = self.labels(kind)
        r = new_router(seed)
        m = T.train_arrays(r, X[mask], lab[mask], weights=None if w is None else w[mask],
                           epochs=epochs, lr=lr, seed=seed)
        return r, m

    def product_features(self):
        """ruvllm's own router input, features.build, as far as a question alone allows: the
        query slice, the embedding slice with the train split's top-8 principal directions and
        a k-means pattern bank of its embeddings as centroids; no search rows (k = 0) and a
        default SystemState (so the search and system slices are constant)."""
        from ruvllm import features as F, patterns as P

        comps = M.PCA(F.N_COMPONENTS, whiten=False).fit(self.E[self.train]).components
        cent = P.kmeans(self.E[self.train], PATTERN_CLUSTERS, seed=SEED).centroids
        st = F.SystemState(n_models=2)
        return np.stack([F.build(p, int(t), v, [], 0, st, components=comps.astype(np.float32),
                                 centroids=cent)
                         for p, t, v in zip(self.prompts, self.tokens, self.E)])

    def routers(self):
        t0 = time.perf_counter()
        sel = []
        for kind in ("oracle", "utility"):
            for lr, ep in ROUTER_GRID:
                r, m = self.fit_router(kind, lr, ep, self.train)
                p = r.forward(self.X).probs[:, 1]
                sel.append((self.apgr(p, self.val), (kind, lr, ep), r))
                log(f"router {kind:7s} lr {lr:g} {ep:2d}+{ep // 2} epochs: val APGR "
                    f"{sel[-1][0]:.3f} ({m['seconds']:.1f} s, {m['steps']} steps)")
        best = max(sel, key=lambda t: t[0])
        self.router_sel = [(a, c) for a, c, _ in sel]
        _, (self.r_kind, self.r_lr, self.r_epochs), self.router = best
        self.p_router = self.router.forward(self.X).probs[:, 1].astype(np.float64)

        t1 = time.perf_counter()
        self.Xf = self.product_features()
        fsel = []
        for kind in ("oracle", "utility"):
            for ep in FEATURES_EPOCHS:
                r, _ = self.fit_router(kind, 3e-3, ep, self.train, X=self.Xf)
                p = r.forward(self.Xf).probs[:, 1].astype(np.float64)
                fsel.append((self.apgr(p, self.val), (kind, ep), p))
        _, (self.f_kind, self.f_epochs), self.p_feat = max(fsel, key=lambda t: t[0])
        self.feat_sel = [(a, c) for a, c, _ in fsel]
        log(f"router on features.build: val APGR {max(a for a, _, _ in fsel):.3f} "
            f"({time.perf_counter() - t1:.0f} s)")

        lsel = []
        for kind in ("oracle", "utility"):
            lab, w = self.labels(kind)
            for l2 in LR_L2:
                b, c = M.logistic_regression(self.E[self.train], lab[self.train], l2,
                                             weights=None if w is None else w[self.train])
                s = self.E @ b + c
                lsel.append((self.apgr(s, self.val), kind, l2, s))
                log(f"logistic {kind:7s} l2 {l2:g}: val APGR {lsel[-1][0]:.3f}")
        _, self.l_kind, self.l_l2, self.s_lr = max(lsel, key=lambda t: t[0])
        self.lr_sel = [(a, k, l) for a, k, l, _ in lsel]
        self.t_select = time.perf_counter() - t0

        # The router's stability across training seeds (same selected config).
        # The background loop's schedule (learning.background_loop: 30 epochs, lr 1e-2, batch 64)
        # on the same labels, for comparison.
        lab, w = self.labels(self.r_kind)
        r = new_router()
        T.train_arrays(r, self.X[self.train], lab[self.train],
                       weights=None if w is None else w[self.train], epochs=30, lr=1e-2,
                       batch_size=64, seed=SEED)
        p = r.forward(self.X).probs[:, 1]
        self.loop_schedule = (self.apgr(p, self.train), self.apgr(p, self.val))
        self.seed_apgr = []
        for seed in range(1, 5):
            r, _ = self.fit_router(self.r_kind, self.r_lr, self.r_epochs, self.train, seed=seed)
            self.seed_apgr.append(self.apgr(r.forward(self.X).probs[:, 1], self.test))

    # -- evaluation ------------------------------------------------------------------------------

    def op(self, to_strong, mask):
        return M.operating_point(to_strong[mask], self.weak[mask], self.strong[mask], STRONG_COST)

    def val_threshold(self, score):
        share, _ = M.cheapest_share_within(score[self.val], self.weak[self.val],
                                           self.strong[self.val], MAX_DROP)
        return M.threshold_for_share(score[self.val], share), share

    def bootstrap(self, score, mask, n):
        rng = np.random.default_rng(SEED)
        rows = np.nonzero(mask)[0]
        out = []
        for _ in range(n):
            b = rng.choice(rows, rows.size, replace=True)
            out.append(M.apgr(score[b], self.weak[b], self.strong[b]))
        return np.percentile(out, [2.5, 97.5])

    def evaluate(self):
        te = self.test
        self.aw = aw = float(self.weak[te].mean())
        self.as_ = as_ = float(self.strong[te].mean())
        q1 = float(self.y[te].mean())
        # The router as ruvllm runs it: decide_batch, argmax with the confidence fallback to the
        # default decision (model 0 = weak) under ruvllm.confidence_threshold's default 0.2.
        dec, _ = self.router.decide_batch(self.X[te])
        deployed = np.zeros(len(self.X), dtype=bool)
        deployed[te] = [x.model_index == 1 for x in dec]
        self.fallback = float(np.mean([x.used_default for x in dec]))
        # The cost operating point as a policy: the threshold moved into the strong bias, so
        # that plain argmax (confidence_threshold 0) routes P(strong) >= t to strong.
        t, self.r_val_share = self.val_threshold(self.p_router)
        shifted = self.router.copy()
        lt = float(np.log(t / (1.0 - t))) if 0.0 < t < 1.0 else (-50.0 if t <= 0 else 50.0)
        shifted.params["b_model"][1] -= np.float32(lt)
        dec, _ = shifted.decide_batch(self.X[te], confidence_threshold=0.0)
        at_t = np.zeros(len(self.X), dtype=bool)
        at_t[te] = [x.model_index == 1 for x in dec]
        self.threshold_agree = float(np.mean(at_t[te] == (self.p_router[te] >= t)))
        self.router_t = t
        blob = shifted.to_bytes()
        back = R.FastGRNNRouter.from_bytes(blob)
        self.policy_bytes = len(blob)
        self.roundtrip_same = bool(np.array_equal(
            back.forward(self.X[te]).probs.argmax(1), shifted.forward(self.X[te]).probs.argmax(1)))

        lr_t, self.l_val_share = self.val_threshold(self.s_lr)
        f_t, self.f_val_share = self.val_threshold(self.p_feat)
        # Reference: the train split's per-subject mean of (strong right - weak right). It reads
        # the subject label, which no router here sees: how far topic alone goes.
        prior = np.zeros(len(self.d.subjects))
        for s in range(prior.size):
            rows = self.train & (self.subject == s)
            if rows.any():
                prior[s] = float(np.mean(self.strong[rows].astype(float) - self.weak[rows]))
        s_prior = prior[self.subject]
        p_t, _ = self.val_threshold(s_prior)

        self.a_router = self.apgr(self.p_router, te)
        self.a_lr = self.apgr(self.s_lr, te)
        n_b = self.cfg["bootstrap"]
        self.ci = {"router": self.bootstrap(self.p_router, te, n_b),
                   "lr": self.bootstrap(self.s_lr, te, n_b),
                   "feat": self.bootstrap(self.p_feat, te, n_b)}
        op = lambda d: self.op(d, te)
        share = op(at_t)["strong_share"]
        n = len(te)
        rows = [
            ("always weak", op(np.zeros(n, bool)), None, None),
            ("always strong", op(np.ones(n, bool)), None, None),
            (f"random, strong with probability {share:.2f}", {
                "decision_accuracy": share * q1 + (1 - share) * (1 - q1), "strong_share": share,
                "accuracy": aw + share * (as_ - aw), "cost": M.relative_cost(share, STRONG_COST)},
             0.5, None),
            ("logistic regression (384-d embedding), P(strong) ≥ 0.5", op(self.s_lr >= 0.0),
             self.a_lr, self.ci["lr"]),
            ("logistic regression (384-d embedding), val-chosen threshold", op(self.s_lr >= lr_t),
             self.a_lr, self.ci["lr"]),
            ("FastGRNN on ruvllm's own features (features.build), val-chosen threshold",
             op(self.p_feat >= f_t), self.apgr(self.p_feat, te), self.ci["feat"]),
            ("**FastGRNN (PCA-128 embedding), as deployed**: argmax, confidence < 0.2 → weak",
             op(deployed), self.a_router, self.ci["router"]),
            (f"**FastGRNN (PCA-128 embedding), val-chosen threshold** P(strong) ≥ {t:.3f}",
             op(at_t), self.a_router, self.ci["router"]),
            ("reference: per-subject prior (reads the subject label), val-chosen threshold",
             op(s_prior >= p_t), self.apgr(s_prior, te), None),
            ("reference: oracle", op(self.y.astype(bool)), self.apgr(self.y.astype(float), te), None),
        ]
        self.rows = rows
        self.op_router = op(at_t)
        # The cheapest point of the router's test curve within 2 points of always-strong: a
        # reading of the curve, not a tuned result.
        self.test_curve_share, _ = M.cheapest_share_within(
            self.p_router[te], self.weak[te], self.strong[te], MAX_DROP)
        self.lr_curve_share, _ = M.cheapest_share_within(
            self.s_lr[te], self.weak[te], self.strong[te], MAX_DROP)

    # -- forgetting ------------------------------------------------------------------------------

    def forgetting(self):
        t0 = time.perf_counter()
        stem = np.array([self.d.subjects[s] in STEM for s in self.subject])
        A_tr, B_tr = self.train & stem, self.train & ~stem
        lab, w = self.labels(self.r_kind)
        w = np.ones(len(lab), np.float32) if w is None else w
        data_all = T.TrainingSet.from_arrays(self.X, lab, weights=w)
        rows_A, rows_B = np.nonzero(A_tr)[0], np.nonzero(B_tr)[0]

        def measure(r):
            p = r.forward(self.X).probs[:, 1].astype(np.float64)
            dec = p >= 0.5
            m = {}
            for split, mask in (("", self.test), ("val_", self.val)):
                for g, gm in (("A", stem), ("B", ~stem)):
                    rows = mask & gm
                    m[f"{split}{g}_acc"] = float((dec[rows] == self.y[rows].astype(bool)).mean())
                    m[f"{split}{g}_apgr"] = self.apgr(p, rows)
            return m

        base = new_router()
        T.train(base, data_all.subset(rows_A), epochs=self.r_epochs, lr=self.r_lr, seed=SEED)
        before = measure(base)
        # What a router trained on both groups at once reaches on them (the no-forgetting bar).
        joint = new_router()
        T.train(joint, data_all.subset(np.nonzero(self.train)[0]), epochs=self.r_epochs,
                lr=self.r_lr, seed=SEED)
        self.joint = measure(joint)
        fisher = T.fisher_information(base, data_all.subset(rows_A))
        anchor = {k: v.copy() for k, v in base.params.items()}

        def phase_b(lam, use_replay):
            """Phase B: 10K (default scale) Adam updates on group B, from the router trained on A."""
            r = base.copy()
            rng = np.random.default_rng(SEED)
            buf = T.ReplayBuffer(REPLAY_CAPACITY, seed=SEED)
            if use_replay:
                for i in rng.permutation(rows_A):   # the first group's traffic went through it
                    buf.add(int(i))
            opt = T.Adam(lr=FORGET_LR)
            ewc = T.EWC(fisher, anchor, lam) if lam else None
            perm, pos, offered = rng.permutation(rows_B), 0, set()
            half = BATCH // 2 if use_replay else BATCH
            for _ in range(self.cfg["updates"]):
                if pos + half > perm.size:
                    perm, pos = rng.permutation(rows_B), 0
                idx = perm[pos:pos + half]
                pos += half
                if use_replay:
                    old = np.asarray(buf.sample(BATCH - half), dtype=np.int64)
                    for i in idx:                 # new traffic is offered to the buffer too
                        if int(i) not in offered:
                            offered.add(int(i))
                            buf.add(int(i))
                    idx = np.concatenate([idx, old])
                _, g, _ = T.loss_and_grads(r, data_all.subset(idx), ewc=ewc)
                opt.step(r.params, g)
                r.apply_mask()
            m = measure(r)
            if use_replay:
                m["buffer_A"] = float(np.mean([stem[i] for i in buf.items]))
            return m

        # EWC's strength, chosen on validation: the best mean of the two groups' val APGR.
        sweep = {lam: phase_b(lam, True) for lam in EWC_LAMBDAS}
        for lam, m in sweep.items():
            log(f"forgetting, EWC + replay, lambda {lam:g}: val APGR A {m['val_A_apgr']:.3f}, "
                f"B {m['val_B_apgr']:.3f}")
        lam = max(sweep, key=lambda k: sweep[k]["val_A_apgr"] + sweep[k]["val_B_apgr"])
        variants = {"plain": phase_b(0.0, False), "EWC": phase_b(lam, False),
                    "replay": phase_b(0.0, True), "EWC + replay": sweep[lam]}
        for name, m in variants.items():
            log(f"forgetting, {name}: A decision accuracy {before['A_acc']:.3f} -> {m['A_acc']:.3f}, "
                f"A APGR {before['A_apgr']:.3f} -> {m['A_apgr']:.3f}, B APGR {m['B_apgr']:.3f}")
        self.forget = {"before": before, "variants": variants, "lambda": lam, "sweep": sweep,
                       "n_A": int(A_tr.sum()), "n_B": int(B_tr.sum()),
                       "n_A_test": int((self.test & stem).sum()),
                       "n_B_test": int((self.test & ~stem).sum()),
                       "seconds": time.perf_counter() - t0}

    # -- the whole run ---------------------------------------------------------------------------

    def run(self):
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.load_start = os.getloadavg()
        t0 = time.perf_counter()
        self.load()
        self.embed()
        self.split()
        self.routers()
        self.evaluate()
        log(f"test APGR: router {self.a_router:.3f}, logistic regression {self.a_lr:.3f}")
        self.forgetting()
        self.total_s = time.perf_counter() - t0
        self.load_end = os.getloadavg()

    # -- the report ------------------------------------------------------------------------------

    def report(self):
        f = lambda v: f"{v:.1%}"
        te = self.test
        L = [SECTION, ""]
        scale_env = "" if self.scale == "default" else f"RUVLLM_BENCH_SCALE={self.scale} "
        cpu, cores, mem, system = machine()
        L.append(f"`{scale_env}make bench-router`, {self.started:%Y-%m-%d %H:%M UTC}; {cpu}, {cores} cores, "
                 f"{mem:.0f} GiB RAM, {system}; "
                 f"Python {platform.python_version()}, numpy {np.__version__}. Load average "
                 f"{self.load_start[0]:.1f} at the start, {self.load_end[0]:.1f} at the end (other "
                 f"jobs share the machine); the run took {self.total_s / 60:.1f} min, of which "
                 f"{self.embed_s / 60:.1f} min embedding the prompts"
                 + (f" (from the cache{'' if self.embed_cold_s is None else f', which took {self.embed_cold_s / 60:.0f} min to make'})"
                    if self.embed_s < 60 else "") + ".")
        L.append("")
        L.append(f"Data: RouteLLM's MMLU responses (`../shared/datasets/routellm-mmlu`, read in "
                 f"place), {len(self.prompts)} of {self.n_all} questions, 57 subjects; weak = "
                 f"Mixtral-8x7B-Instruct, strong = GPT-4-1106. Test split: {te.sum()} questions "
                 f"(weak right {f(self.aw)}, strong right {f(self.as_)}, only strong right "
                 f"{f(self.y[te].mean())}); validation {self.val.sum()}, train {self.train.sum()}. "
                 f"Router input: the all-MiniLM-L6-v2 embedding (ruvllm's numpy embedder; "
                 f"{self.truncated} prompts cut at 256 tokens) → PCA to {R.INPUT_DIM} fitted on "
                 f"train (keeps {self.pca.explained:.0%} of the variance). Cost: weak 1, strong "
                 f"{STRONG_COST}. APGR in brackets: 95% bootstrap interval over test questions.")
        L.append("")
        L.append("| router, on the test split | decision accuracy vs oracle | strong calls | "
                 "accuracy | cost vs always-strong | APGR |")
        L.append("| --- | --- | --- | --- | --- | --- |")
        for name, o, ap, ci in self.rows:
            a = "—" if ap is None else f"{ap:.3f}"
            if ci is not None:
                a += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
            L.append(f"| {name} | {f(o['decision_accuracy'])} | {f(o['strong_share'])} | "
                     f"{f(o['accuracy'])} | {f(o['cost'])} | {a} |")
        L.append("")
        o = self.op_router
        cost_ok = o["cost"] <= 0.5 and o["accuracy"] >= self.as_ - MAX_DROP
        ci = self.ci["router"]
        L.append("| target | result | met |")
        L.append("| --- | --- | --- |")
        L.append(f"| APGR ≥ 0.6 | FastGRNN {self.a_router:.3f} (95% CI {ci[0]:.3f}–{ci[1]:.3f}; "
                 f"retrained with seeds 1–4: {', '.join(f'{a:.3f}' for a in self.seed_apgr)}); "
                 f"logistic regression {self.a_lr:.3f} | "
                 f"{'yes' if self.a_router >= 0.6 else 'no'} |")
        L.append(f"| cost ≥ 50% below always-strong, accuracy within 2 points of it | val-chosen "
                 f"point: cost {f(o['cost'])} at accuracy {f(o['accuracy'])} (always-strong "
                 f"{f(self.as_)}). The cheapest point within 2 points on the test curves themselves "
                 f"(read off, not tuned): FastGRNN "
                 f"{f(M.relative_cost(self.test_curve_share, STRONG_COST))}, logistic regression "
                 f"{f(M.relative_cost(self.lr_curve_share, STRONG_COST))} | "
                 f"{'yes' if cost_ok else 'no'} |")
        fg = self.forget
        er, b = fg["variants"]["EWC + replay"], fg["before"]
        drop = b["A_acc"] - er["A_acc"]
        L.append(f"| forgetting < 5% with EWC + replay | decision accuracy on the first group "
                 f"{f(b['A_acc'])} → {f(er['A_acc'])}: {drop * 100:.1f} points "
                 f"({drop / b['A_acc']:.1%} relative); without either: "
                 f"{(b['A_acc'] - fg['variants']['plain']['A_acc']) * 100:.1f} points | "
                 f"{'yes' if drop < 0.05 else 'no'} |")
        L.append("")
        L.append(f"**Forgetting.** Group A = the {len(STEM)} STEM subjects ({fg['n_A']} train / "
                 f"{fg['n_A_test']} test questions), group B = the other {57 - len(STEM)} "
                 f"({fg['n_B']} / {fg['n_B_test']}). The router (selected configuration above) is "
                 f"trained on A, then takes {self.cfg['updates']:,} Adam updates (lr {FORGET_LR:g}, "
                 f"batches of {BATCH}, ~{self.cfg['updates'] * BATCH / max(fg['n_B'], 1):.0f} passes "
                 f"over B, half as many with replay) on B alone. EWC: `training.EWC` anchored after A with the Fisher over A's "
                 f"training questions, λ = {fg['lambda']:g} (chosen on validation from "
                 f"{', '.join(f'{x:g}' for x in EWC_LAMBDAS)}, 1 being `learning.background_loop`'s, "
                 f"by the mean of A's and B's val APGR with replay: "
                 + ", ".join(f"{k:g} → {v['val_A_apgr']:.3f} / {v['val_B_apgr']:.3f}"
                             for k, v in fg["sweep"].items())
                 + f"). Replay: a {REPLAY_CAPACITY}-sample `training.ReplayBuffer` reservoir that saw "
                 f"A's traffic and is offered each B question as it arrives (so A is "
                 f"{er.get('buffer_A', 0):.0%} of it at the end); half of every batch comes from it. "
                 f"Decision = P(strong) ≥ 0.5, compared with the oracle label.")
        L.append("")
        L.append(f"| after {self.cfg['updates']:,} updates on B | A decision accuracy | A drop | A APGR | "
                 "B decision accuracy | B APGR |")
        L.append("| --- | --- | --- | --- | --- | --- |")
        L.append(f"| before (trained on A only) | {f(b['A_acc'])} | | {b['A_apgr']:.3f} | "
                 f"{f(b['B_acc'])} | {b['B_apgr']:.3f} |")
        for name, m in fg["variants"].items():
            L.append(f"| {name} | {f(m['A_acc'])} | {(b['A_acc'] - m['A_acc']) * 100:.1f} pts | "
                     f"{m['A_apgr']:.3f} | {f(m['B_acc'])} | {m['B_apgr']:.3f} |")
        j = self.joint
        L.append(f"| reference: trained on A and B together | {f(j['A_acc'])} | | "
                 f"{j['A_apgr']:.3f} | {f(j['B_acc'])} | {j['B_apgr']:.3f} |")
        L.append("")
        L.append("How the numbers are made:")
        L.append("")
        L.append("- **APGR** (average performance gap recovered, RouteLLM): sort the test questions "
                 "by the router's score (P(strong)), send the top share c to the strong model and "
                 "the rest to the weak one; acc(c) is the accuracy reached and PGR(c) = (acc(c) − "
                 "acc_weak) / (acc_strong − acc_weak), with always-weak and always-strong on the "
                 "same questions; APGR = ∫₀¹ PGR(c) dc. The curve is taken at every share, tied "
                 "scores at their expected value (so a constant score, i.e. a random router, gives "
                 "exactly 0.5), and integrated exactly by the trapezoid rule "
                 "(`bench/router/metrics.py`, unit-tested; RouteLLM samples ~10 thresholds instead). "
                 "It can exceed 1 when a router beats always-strong, as the oracle does.")
        L.append("- **Decision accuracy**: share of questions whose routed model is the oracle "
                 "label (strong only where only strong is right; weak where weak is right, or both "
                 f"are wrong). **Cost**: (weak calls + {STRONG_COST} × strong calls) / "
                 f"({STRONG_COST} × calls); a larger price ratio lowers a routed cost by at most "
                 f"weak share / {STRONG_COST} (≤ {100 / STRONG_COST:.0f} points).")
        L.append("- **Splits**: test 20%, validation 15%, train 65%, stratified by subject × "
                 "(weak right, strong right), identical prompts kept on one side, the "
                 f"{int(self.contaminated.sum())} prompt(s) of `contaminated_prompts.jsonl` kept out "
                 "of validation and test. PCA is not whitened: one common scale brings the inputs "
                 "to order one and the leading (topic) directions keep their larger spread "
                 "(whitening scored lower on validation).")
        L.append("- **Labels**: *oracle* (above, unweighted) or *utility*: U = correct − μ·cost with "
                 f"μ = {MU:g} (`ruvllm.utility_mu`'s default) and `training.utility_labels`, weighted "
                 "by the utility margin as `learning.labels_from_utilities` weights oracle rows. "
                 "The argmax is the oracle label on every question; the weights make the questions "
                 "where only one model is right count ~4-6× those where both agree.")
        sel = ", ".join(f"{k} {lr:g}/{ep}: {a:.3f}" for a, (k, lr, ep) in self.router_sel)
        fsel = ", ".join(f"{k} {ep}: {a:.3f}" for a, (k, ep) in self.feat_sel)
        lsel = ", ".join(f"{k} {l:g}: {a:.3f}" for a, k, l in self.lr_sel)
        L.append(f"- **Chosen on validation only** (val APGR). FastGRNN (`router.FastGRNNRouter`, "
                 f"hidden 48, rank 8, `training.train_arrays`: dense epochs, then W cut to 50% and "
                 f"half as many epochs again, batch 256), labels lr/dense epochs: {sel}; chosen "
                 f"{self.r_kind}, lr {self.r_lr:g}, {self.r_epochs} epochs. Longer training "
                 f"overfits: `learning.background_loop`'s schedule (30 epochs, lr 1e-2, batch 64) "
                 f"reaches train APGR {self.loop_schedule[0]:.3f} but val APGR "
                 f"{self.loop_schedule[1]:.3f}. On `features.build` (query slice, embedding "
                 f"slice with the train split's top-8 principal directions and a "
                 f"{PATTERN_CLUSTERS}-centroid `patterns.kmeans` bank; no search rows, default "
                 f"system state), labels epochs: {fsel}. Logistic regression on the 384-d "
                 f"embeddings (Newton, labels L2): {lsel}. The operating point: the lowest val "
                 f"strong share whose val accuracy is within 2 points of always-strong (FastGRNN "
                 f"{f(self.r_val_share)}, logistic {f(self.l_val_share)}, features.build "
                 f"{f(self.f_val_share)}), applied on test as a threshold on the score.")
        L.append(f"- **The policy as ruvllm runs it**: the deployed row is `decide_batch` with the "
                 f"default confidence threshold ({self.fallback:.0%} of test questions fell back "
                 f"to the default decision, weak); the threshold row moves log-odds(t) into "
                 f"`b_model` and calls `decide_batch` with threshold 0 ({self.threshold_agree:.1%} "
                 f"agree with P(strong) ≥ t). That policy is {self.policy_bytes} bytes "
                 f"(`to_bytes`, W {self.router.density:.0%} dense) and decides the same after "
                 f"`from_bytes`: {'yes' if self.roundtrip_same else 'NO'}.")
        for n in self.notes:
            L.append(f"- {n}")
        return "\n".join(L).rstrip() + "\n"


def record(report_path, results_path):
    """Replace (or add) this benchmark's section of bench/RESULTS.md; other sections are kept."""
    results.record_section(SECTION, report_path, results_path)


def main():
    def options(ap):
        ap.add_argument("--data", default=str(data.DATA_DIR), help="the routellm-mmlu folder")
        ap.add_argument("--cache", default=str(data.CACHE_DIR), help="where embeddings are cached")
    args, scale = cli("router", __doc__, record, SCALES, options)
    bench = Bench(scale, args.data, args.cache)
    bench.run()
    print_report(bench.report(), args.out)


if __name__ == "__main__":
    main()
