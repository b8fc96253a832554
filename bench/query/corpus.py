"""Texts for bench/query: a knowledge base of short operational documents, and questions about it.

Documents are two or three sentences about one topic, made from templates; questions are made
from other templates over the same vocabulary, so retrieval finds related memories, and no two
questions are the same text (the response cache must not answer the end-to-end runs).
"""
import random

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
    "support": dict(
        subjects=["the help desk", "the escalation team", "the chat bot", "the account manager",
                  "the status page", "the knowledge base", "tier two", "the customer"],
        objects=["an angry ticket", "the SLA clock", "a password reset", "the refund request",
                 "a bug report", "the outage notice", "the satisfaction survey",
                 "a feature request"],
        verbs=["escalate", "answer", "close", "triage", "merge", "follow up on", "tag", "route"],
        conditions=["within four hours", "outside business hours", "for premium customers",
                    "during an outage", "in German", "after a release"]),
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
    "Remember that {o} is owned by {s}; {v} it only {c}.",
]
QUESTIONS = [
    "How do I {v} {o} {c}?",
    "Who is allowed to {v} {o} {c}?",
    "Why would {s} {v} {o} {c}?",
    "When should we {v} {o}, and what does {s} need to know?",
    "What happens if {s} fails to {v} {o} {c}?",
    "Can {s} {v} {o} {c}, or is that a manual job?",
    "What is the procedure for {s} to {v} {o}?",
    "Is it safe to {v} {o} {c}?",
]


def _fill(rng, template, topic):
    t = TOPICS[topic]
    s = rng.choice(t["subjects"])
    return template.format(S=s[0].upper() + s[1:], s=s, v=rng.choice(t["verbs"]),
                           o=rng.choice(t["objects"]), c=rng.choice(t["conditions"]))


def documents(n, seed):
    """n distinct documents of two or three sentences of one topic: [(text, topic)]."""
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        topic = rng.choice(TOPIC_NAMES)
        sentences = rng.sample(STATEMENTS, rng.choice((2, 3)))
        text = " ".join(_fill(rng, s, topic) for s in sentences)
        if text not in seen:
            seen.add(text)
            out.append((text, topic))
    return out


def questions(n, seed):
    """n distinct questions: [str]."""
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        text = _fill(rng, rng.choice(QUESTIONS), rng.choice(TOPIC_NAMES))
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out
