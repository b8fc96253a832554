"""The vocabulary the benches' synthetic knowledge bases are written in (bench/memory and
bench/query each pick topics and write their own sentence templates over them)."""

# One topic per area a team's knowledge base covers; sentences mix these words into templates, so
# texts of one topic share vocabulary (and so embed near each other) without being duplicates.
VOCABULARY = {
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


# Sentence templates of knowledge-base statements over the vocabulary.
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


def fill(rng, template, words):
    """template with {S}/{s} (a subject, capitalised or not), {v}, {o}, {c} drawn from words."""
    s = rng.choice(words["subjects"])
    return template.format(S=s[0].upper() + s[1:], s=s, v=rng.choice(words["verbs"]),
                           o=rng.choice(words["objects"]), c=rng.choice(words["conditions"]))
