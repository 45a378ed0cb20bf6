#!/usr/bin/env python3
"""Where a comityd profile's CPU goes, in coarse buckets.

    cargo run --release -p comity-bench -- --only throughput --runs 1 --duration 5 --perf /tmp/perf
    python3 bench/tools/perf_buckets.py /tmp/perf/*.data

Each sample is assigned to the first bucket whose pattern matches any
frame of its whole stack (so the order of BUCKETS matters). The table in
docs/performance.md ("Where the time goes") was made with this script.
"""
import collections
import re
import subprocess
import sys

BUCKETS = [
    ("sled log writes (write_to_log, sync_file_range, thread pool)",
     r"sled::threadpool|write_to_log|sled::flusher"),
    ("audit append", r"comity_node::audit::AuditLog::(note|record)"),
    ("checkpoint sign/offer/witness",
     r"AuditLog::(checkpoint|offer|witness|accept_cosignature)|delivery::inbound::witness|offer_checkpoint"),
    ("PeerKeys::new (certificate verify + trial encapsulation)", r"PeerKeys::new"),
    ("HPKE (X25519, ChaCha20-Poly1305)", r"^hpke::|x25519|chacha"),
    ("Ed25519 sign/verify", r"ed25519_dalek"),
    ("store reads/writes (outbox, inbox)", r"comity_node::store::Store::"),
    ("sled, other", r"^sled::"),
    ("QUIC (quinn, rustls)", r"^quinn|^rustls|ring::"),
    ("admin API (hyper, axum, serde_json)", r"^hyper|^axum|serde_json"),
    ("codec (bincode)", r"bincode|comity_protocol::codec"),
    ("tokio runtime", r"^tokio::"),
    ("malloc/free", r"malloc|_int_free|cfree|realloc"),
]


def stacks(path):
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,tid,ip,sym", "--no-inline"],
        capture_output=True, text=True, check=True).stdout
    cur = []
    for line in out.split("\n"):
        if not line.strip():
            if cur:
                yield cur
            cur = []
            continue
        if line[0] not in " \t":
            cur = []
            continue
        parts = line.strip().split(None, 1)
        cur.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1] if len(parts) > 1 else "?"))
    if cur:
        yield cur


def main():
    rx = [(name, re.compile(p)) for name, p in BUCKETS]
    for path in sys.argv[1:]:
        counts = collections.Counter()
        n = 0
        for s in stacks(path):
            n += 1
            for name, r in rx:
                if any(r.search(f) for f in s):
                    counts[name] += 1
                    break
            else:
                counts["other"] += 1
        print(f"{path}: {n} samples")
        for name in [b[0] for b in BUCKETS] + ["other"]:
            if counts[name]:
                print(f"  {100 * counts[name] / max(n, 1):5.1f} %  {name}")


if __name__ == "__main__":
    main()
