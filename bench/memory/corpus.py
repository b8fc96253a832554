"""Texts and vectors for bench/memory.

Embedding 100K texts in the backend costs ~11 ms each (18 min), so the large corpus is built from
a few thousand real all-MiniLM-L6-v2 embeddings of synthetic knowledge-base sentences: each corpus
vector is one base embedding plus small weights of two others and a little isotropic noise,
renormalised. That keeps the cluster structure and low intrinsic dimension of real embeddings,
which is what HNSW's recall and speed depend on; uniform random vectors have neither.
"""
import random

import numpy as np

# One topic per area a team's knowledge base covers; sentences mix these words into templates, so
# texts of one topic share vocabulary (and so embed near each other) without being duplicates.
TOPICS = {
    "postgres": dict(
        subjects=["the primary", "the standby", "the connection pooler", "the WAL archiver",
                  "autovacuum", "the planner", "the checkpointer", "logical replication"],
        objects=["the witness log", "the WAL segments", "a bloated index", "the statistics",
                 "the replication slot", "shared buffers", "a long transaction", "the pg_hba rules"],
        verbs=["rotate", "vacuum", "reindex", "archive", "tune", "monitor", "restore", "drop"],
        conditions=["after a failover", "during peak load", "when disk usage passes 80%",
                    "before a major upgrade", "while a backup runs", "at night"]),
    "kubernetes": dict(
        subjects=["the scheduler", "the ingress controller", "a stateful set", "the node pool",
                  "the cluster autoscaler", "kubelet", "the service mesh", "the operator"],
        objects=["a pod that keeps crashing", "the resource limits", "the persistent volume",
                 "a stuck deployment", "the config map", "the readiness probe", "the image tag",
                 "a cordoned node"],
        verbs=["restart", "scale", "drain", "roll back", "patch", "inspect", "evict", "redeploy"],
        conditions=["after an image push", "when memory runs out", "during a rollout",
                    "after a node reboot", "when the probe times out", "on a Friday release"]),
    "security": dict(
        subjects=["the auditor", "the on-call engineer", "the SSO provider", "the secrets vault",
                  "the firewall", "the intrusion detector", "the CA", "the access review"],
        objects=["an expired certificate", "the API keys", "a leaked password",
                 "the audit trail", "the MFA policy", "a suspicious login", "the TLS ciphers",
                 "service account tokens"],
        verbs=["revoke", "renew", "rotate", "investigate", "enforce", "report", "encrypt", "block"],
        conditions=["after an incident", "every ninety days", "when an employee leaves",
                    "before the compliance audit", "on a breach alert", "for new vendors"]),
    "billing": dict(
        subjects=["the invoicing job", "the payment gateway", "finance", "the tax engine",
                  "the subscription service", "the refund queue", "the ledger", "the dunning flow"],
        objects=["a failed card payment", "the monthly invoice", "a duplicate charge",
                 "the VAT rate", "a prorated upgrade", "the credit note", "an overdue account",
                 "the currency conversion"],
        verbs=["refund", "reissue", "reconcile", "correct", "cancel", "retry", "approve", "export"],
        conditions=["at month end", "when a customer disputes", "after a plan change",
                    "for enterprise accounts", "in a new region", "before the audit"]),
    "networking": dict(
        subjects=["the load balancer", "the DNS resolver", "the VPN gateway", "the CDN",
                  "the BGP session", "the proxy", "the edge router", "the NAT gateway"],
        objects=["packet loss", "a stale DNS record", "the MTU setting", "the TLS handshake",
                 "a routing loop", "the health checks", "latency spikes", "the firewall rules"],
        verbs=["debug", "flush", "trace", "reroute", "reconfigure", "measure", "mitigate", "cache"],
        conditions=["between regions", "after a provider outage", "under a DDoS attack",
                    "for mobile clients", "during the migration", "when IPv6 is enabled"]),
    "ml": dict(
        subjects=["the training pipeline", "the feature store", "the model registry",
                  "the embedding service", "the evaluation job", "the labelling team",
                  "the inference server", "the data scientist"],
        objects=["a drifting model", "the validation set", "the learning rate",
                 "a noisy label", "the GPU memory", "the checkpoint", "the tokenizer",
                 "the recall metric"],
        verbs=["retrain", "evaluate", "quantize", "distil", "calibrate", "deploy", "fine-tune",
               "benchmark"],
        conditions=["after new data arrives", "when accuracy drops", "on a smaller GPU",
                    "before a release", "for a new language", "with a tight latency budget"]),
    "frontend": dict(
        subjects=["the design system", "the web app", "the bundler", "the router",
                  "the accessibility audit", "the mobile layout", "the state store",
                  "the service worker"],
        objects=["a slow first paint", "the CSS grid", "a memory leak in the browser",
                 "the dark mode colours", "the form validation", "a broken link",
                 "the bundle size", "keyboard navigation"],
        verbs=["optimise", "refactor", "test", "lazy-load", "fix", "audit", "polish", "migrate"],
        conditions=["on older phones", "after the framework upgrade", "for screen readers",
                    "on slow networks", "in Safari", "before the launch"]),
    "hr": dict(
        subjects=["the hiring manager", "the recruiter", "payroll", "the new hire",
                  "the benefits team", "the onboarding buddy", "the people partner",
                  "the leadership team"],
        objects=["the parental leave policy", "a job offer", "the performance review",
                 "the expense report", "the holiday calendar", "a relocation package",
                 "the training budget", "the laptop request"],
        verbs=["approve", "schedule", "update", "submit", "negotiate", "explain", "book", "plan"],
        conditions=["in the first week", "at year end", "for remote staff", "after a promotion",
                    "in another country", "before the deadline"]),
    "cooking": dict(
        subjects=["the head chef", "the pastry section", "the night shift", "the sous-vide bath",
                  "the walk-in fridge", "the bread oven", "the prep cook", "the dishwasher"],
        objects=["the sourdough starter", "a broken sauce", "the stock", "the knife edge",
                 "an allergy order", "the mise en place", "the caramel", "the fish delivery"],
        verbs=["prepare", "season", "rescue", "store", "sharpen", "label", "reduce", "ferment"],
        conditions=["on a busy Saturday", "when the fridge fails", "for a vegan guest",
                    "after service", "in hot weather", "for a banquet"]),
    "support": dict(
        subjects=["the help desk", "the escalation team", "the chat bot", "the account manager",
                  "the status page", "the knowledge base", "tier two", "the customer"],
        objects=["an angry ticket", "the SLA clock", "a password reset", "the refund request",
                 "a bug report", "the outage notice", "the satisfaction survey",
                 "a feature request"],
        verbs=["escalate", "answer", "close", "triage", "merge", "follow up on", "tag", "route"],
        conditions=["within four hours", "outside business hours", "for premium customers",
                    "during an outage", "in German", "after a release"]),
    "storage": dict(
        subjects=["the object store", "the backup system", "the RAID array", "the NFS server",
                  "the snapshot scheduler", "the disk monitor", "the cold archive",
                  "the replication job"],
        objects=["a full volume", "the retention policy", "a corrupted snapshot",
                 "the IOPS quota", "an orphaned bucket", "the lifecycle rules",
                 "a degraded disk", "the restore test"],
        verbs=["expand", "verify", "prune", "replicate", "compress", "migrate", "mount", "clean up"],
        conditions=["every Sunday", "when a disk fails", "before deleting data",
                    "across two sites", "after a ransomware scare", "under a legal hold"]),
    "observability": dict(
        subjects=["the alert manager", "the tracing backend", "the log pipeline",
                  "the metrics store", "the dashboard", "the pager rotation", "the SLO report",
                  "the profiler"],
        objects=["a noisy alert", "the error budget", "high-cardinality labels",
                 "a missing trace", "the log retention", "the p99 latency", "a flapping check",
                 "the sampling rate"],
        verbs=["silence", "tune", "correlate", "aggregate", "sample", "graph", "alert on",
               "downsample"],
        conditions=["during an incident", "after a deploy", "for every service",
                    "when costs grow", "at 3 a.m.", "across regions"]),
}
TOPIC_NAMES = sorted(TOPICS)

STATEMENTS = [
    "{S} needs to {v} {o} {c}.",
    "To {v} {o}, ask {s} first, especially {c}.",
    "We {v} {o} {c} because {s} depends on it.",
    "{S} will {v} {o} automatically {c}.",
    "Never {v} {o} {c} without telling {s}.",
    "The runbook says {s} should {v} {o} {c}.",
    "If {o} looks wrong {c}, {s} can {v} it.",
    "Last quarter {s} had to {v} {o} {c}, which took two days.",
]
QUESTIONS = [
    "How do I {v} {o}?",
    "Who can {v} {o} {c}?",
    "Why does {s} {v} {o}?",
    "When should we {v} {o}?",
    "What happens if {s} fails to {v} {o}?",
    "Can {s} {v} {o} {c}?",
]


def _fill(rng, template, topic):
    t = TOPICS[topic]
    s = rng.choice(t["subjects"])
    text = template.format(S=s[0].upper() + s[1:], s=s, v=rng.choice(t["verbs"]),
                           o=rng.choice(t["objects"]), c=rng.choice(t["conditions"]))
    return text


def documents(n, seed):
    """n distinct short documents (two sentences of one topic): [(text, topic index)]."""
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        ti = rng.randrange(len(TOPIC_NAMES))
        topic = TOPIC_NAMES[ti]
        a, b = rng.sample(STATEMENTS, 2)
        text = _fill(rng, a, topic) + " " + _fill(rng, b, topic)
        if text not in seen:
            seen.add(text)
            out.append((text, ti))
    return out


def questions(n, seed, exclude=()):
    """n distinct short questions, none in exclude: [(text, topic index)]."""
    rng = random.Random(seed)
    seen, out = set(exclude), []
    while len(out) < n:
        ti = rng.randrange(len(TOPIC_NAMES))
        text = _fill(rng, rng.choice(QUESTIONS), TOPIC_NAMES[ti])
        if text not in seen:
            seen.add(text)
            out.append((text, ti))
    return out


# How far a corpus vector strays from its base: a second base of the same topic at weight up to
# MIX_TOPIC, one of any topic up to MIX_ANY, and isotropic noise of norm NOISE (before
# renormalising). Chosen so two variants of one base sit at cosine ~0.88, like texts on one
# subject, and almost never reach ruvllm.dedup_similarity (0.95): ingestion would have merged
# such pairs, so a stored memory holds few of them.
MIX_TOPIC = 0.6
MIX_ANY = 0.3
NOISE = 0.3


def real_like(bases, topics, n, seed):
    """n unit vectors made from the real embeddings `bases` (nb x 384, unit rows) with topic ids
    `topics`; returns (vectors n x 384 float32, base index of each)."""
    rng = np.random.default_rng(seed)
    nb, dim = bases.shape
    order = np.argsort(topics, kind="stable")
    counts = np.bincount(topics)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    base = rng.integers(0, nb, n)
    t = topics[base]
    same = order[starts[t] + (rng.random(n) * counts[t]).astype(int)]
    other = rng.integers(0, nb, n)
    v = (bases[base]
         + rng.uniform(0, MIX_TOPIC, (n, 1)) * bases[same]
         + rng.uniform(0, MIX_ANY, (n, 1)) * bases[other]
         + rng.standard_normal((n, dim)) * (NOISE / np.sqrt(dim)))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32), base


def uniform_random(n, dim, seed):
    """n vectors uniform on the unit sphere (normalised Gaussians)."""
    v = np.random.default_rng(seed).standard_normal((n, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def same_topic_edges(vectors, topics, lo, hi, links=5, block=2048):
    """Edges like ingestion's SameTopic: each node in [lo, hi) to its `links` most similar earlier
    nodes of the same topic. Returns (src, dst, weight) arrays of node positions."""
    src, dst, weight = [], [], []
    for t in np.unique(topics[:hi]):
        members = np.flatnonzero(topics[:hi] == t)
        new = members[members >= lo]
        for start in range(0, len(new), block):
            rows = new[start:start + block]
            sims = vectors[rows] @ vectors[members].T
            # Only earlier nodes: ingestion links a new node to what is already stored.
            sims[members[None, :] >= rows[:, None]] = -np.inf
            k = min(links, len(members))
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            w = np.take_along_axis(sims, top, axis=1)
            ok = np.isfinite(w)
            src.append(np.repeat(rows, k).reshape(-1, k)[ok])
            dst.append(members[top][ok])
            weight.append(w[ok])
    if not src:
        return np.empty(0, int), np.empty(0, int), np.empty(0, np.float32)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(weight).astype(np.float32)
