#!/usr/bin/env python3
"""Verify a Vigil tenant's records with no Vigil code: RFC 8785 from the `rfc8785` package,
SHA-256 from hashlib, Ed25519 from `cryptography`.

usage: independent_verify.py BASE_URL TENANT [full]
(full: the view with sensitive fields, include_redacted=true; the default is the redacted view)
Checks every visible payload field against its commitment (a field without its value must be
named as withheld by the view, or covered by a signed purge manifest; one withheld as erased
must be covered by a signed erasure receipt), recomputes leaf_hash and
chain_hash from seq 1, compares the head, and checks the latest checkpoint's signed note.
Where the checkpoint signs a Merkle root (RFC 9162), the root is recomputed from the leaf
hashes by the RFC's definition of MTH, and inclusion proofs (every record of a small tree, a
sample of a large one) and consistency proofs from /v1/proofs are checked by the RFC's
verification algorithms (§2.1.3.2, §2.1.4.2), written here from the RFC's text.
"""
import base64
import hashlib
import json
import random
import sys
import urllib.request

try:
    import rfc8785
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError as e:  # the test script installs both; say so loudly rather than skip
    print(f"missing Python dependency: {e}; run scripts/test.sh (it installs rfc8785 and cryptography)")
    sys.exit(3)


HASHED = ("tenant_id", "seq", "event_id", "occurred_at", "received_at", "actor", "action",
          "resource", "outcome", "severity", "source", "trace_id", "schema_version",
          "payload_commitments")


def get(base, tenant, path):
    req = urllib.request.Request(base + path, headers={"X-Tenant-ID": tenant, "X-Roles": "admin"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def signed_text(note, keys):
    """The text of a C2SP signed note, if one of `keys` signed it; else None."""
    text, sigs = note[: note.rindex("\n\n") + 1], note[note.rindex("\n\n") + 2 :]
    for key in keys:
        pub = base64.b64decode(key["public_key"])
        key_id = hashlib.sha256(key["name"].encode() + b"\n" + b"\x01" + pub).digest()[:4]
        for line in sigs.splitlines():
            prefix = "\u2014 " + key["name"] + " "
            if not line.startswith(prefix):
                continue
            blob = base64.b64decode(line[len(prefix) :])
            if blob[:4] != key_id:
                continue
            try:
                Ed25519PublicKey.from_public_bytes(pub).verify(blob[4:], text.encode())
            except Exception:
                continue
            return text
    return None


# RFC 9162 §2.1.1: MTH({}) = SHA-256(), MTH({d0}) = SHA-256(0x00 || d0), and for n > 1 with k
# the largest power of two smaller than n, MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
# Vigil's leaf_hash is already SHA-256(0x00 || JCS(hashed form)): the leaves are those hashes.
def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf_index, tree_size, leaf, path, root):
    """RFC 9162 §2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, consistency_path):
    """RFC 9162 §2.1.4.2, step by step."""
    if first > second:
        return False
    if first == second:
        return not consistency_path and first_hash == second_hash
    if first == 0:
        return not consistency_path
    if not consistency_path:
        return False
    path = list(consistency_path)
    if first & (first - 1) == 0:  # an exact power of two
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def check_proofs(base, tenant, records, size, root):
    """The signed root against MTH of the leaves, then proofs from the server against it."""
    leaves = [bytes.fromhex(r["leaf_hash"]) for r in records[:size]]
    assert mth(leaves) == root, f"the signed Merkle root at {size} is not MTH of the leaf hashes"
    rng = random.Random(size)
    indices = range(size) if size <= 300 else sorted(rng.sample(range(size), 300))
    for i in indices:
        r = records[i]
        p = get(base, tenant, f"/v1/proofs/inclusion?event_id={r['event_id']}&tree_size={size}")
        path = [bytes.fromhex(h) for h in p["proof"]]
        assert p["leaf_index"] == i and p["tree_size"] == size, f"seq {i + 1}: proof for another leaf"
        assert verify_inclusion(i, size, leaves[i], path, root), \
            f"seq {i + 1}: the inclusion proof does not lead to the signed root"
    sizes = sorted({1, 2, 3, size // 3, size // 2, size - 1, size} | {rng.randint(1, size) for _ in range(20)})
    for m in (m for m in sizes if 1 <= m <= size):
        c = get(base, tenant, f"/v1/proofs/consistency?from={m}&to={size}")
        path = [bytes.fromhex(h) for h in c["proof"]]
        assert bytes.fromhex(c["from_root"]) == mth(leaves[:m]), f"the root at {m} is not MTH of its leaves"
        assert verify_consistency(m, size, mth(leaves[:m]), root, path), \
            f"the consistency proof {m} -> {size} does not hold"
    print(f"Merkle root at {size} verified; {len(indices)} inclusion and {len(sizes)} consistency proofs verified")


def purges(records, keys, tenant):
    """(from, to, boundary, purged_at, reason) of every purge manifest signed by a key."""
    out = []
    for r in records:
        note = r["payload"].get("manifest") if r["action"] == "audit.retention.purged" else None
        text = signed_text(note, keys) if isinstance(note, str) else None
        if text is None:
            continue
        lines = text.rstrip("\n").split("\n")
        if len(lines) != 7 or lines[0] != "vigil.dev/purge/v1" or lines[1] != tenant:
            continue
        frm, to = (int(x) for x in lines[2].split(" "))
        out.append((frm, to, lines[3], lines[5], lines[6]))
    return out


def erasures(records, keys, tenant):
    """(subject_ref, seqs, erased_at) of every erasure receipt signed by a key; a receipt
    record whose note does not open is tampering (unless a purge took its value)."""
    out = []
    for r in records:
        if r["action"] != "audit.subject.erased" or "receipt" not in r["payload"]:
            continue
        text = signed_text(r["payload"]["receipt"], keys)
        lines = text.rstrip("\n").split("\n") if text else []
        assert len(lines) == 5 and lines[0] == "vigil.dev/erasure/v1" and lines[1] == tenant, \
            f"seq {r['seq']}: erasure receipt invalid or signed by an untrusted key"
        count, _, ranges = lines[3].partition(" ")
        seqs = set()
        for part in filter(None, ranges.split(",")):
            a, _, b = part.partition("-")
            seqs.update(range(int(a), int(b or a) + 1))
        assert len(seqs) == int(count), f"seq {r['seq']}: erasure receipt miscounts its records"
        out.append((lines[2], seqs, lines[4]))
    return out


def main(base, tenant, full=False):
    records, cursor = [], None
    view = "&include_redacted=true" if full else ""
    while True:
        page = get(base, tenant, "/v1/events?limit=1000" + view + (f"&cursor={cursor}" if cursor else ""))
        records.extend(page["events"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    records.sort(key=lambda r: r["seq"])
    keys = get(base, tenant, "/v1/keys")["keys"]
    purged = purges(records, keys, tenant)
    erased = erasures(records, keys, tenant)
    prev = bytes(32)
    withheld = 0
    chain_at = {}
    for expected, r in enumerate(records, start=1):
        assert r["seq"] == expected, f"seq {expected} missing"
        for field, value in r["payload"].items():
            salt = bytes.fromhex(r["payload_salts"][field])
            c = hashlib.sha256(salt + rfc8785.dumps(value)).hexdigest()
            assert c == r["payload_commitments"][field], f"seq {r['seq']}: payload field {field} does not match its commitment"
        # A committed field without its value is accepted only where the record says why.
        covered = any(frm <= r["seq"] <= to for frm, to, *_ in purged)
        for field in r["payload_commitments"]:
            if field not in r["payload"] and not covered:
                why = r.get("withheld", {}).get(field)
                assert why is not None, f"seq {r['seq']}: payload field {field} removed"
                # Erased is a claim only a signed receipt can back.
                assert why != "erased" or any(r["seq"] in seqs for _, seqs, _ in erased), \
                    f"seq {r['seq']}: payload field {field} withheld as erased, but no erasure receipt covers it"
                withheld += 1
        # The hashed form, as DESIGN.md lists it (a view's extra members are not part of it).
        hashed = {k: r[k] for k in HASHED if k in r}
        leaf = hashlib.sha256(b"\x00" + rfc8785.dumps(hashed)).digest()
        assert leaf.hex() == r["leaf_hash"], f"seq {r['seq']}: leaf hash differs"
        prev = hashlib.sha256(prev + leaf).digest()
        assert prev.hex() == r["chain_hash"], f"seq {r['seq']}: chain hash differs"
        chain_at[r["seq"]] = prev
    head = get(base, tenant, "/v1/chain/head")
    # A full-view read is itself recorded, so the chain may have grown past what was read.
    if full and head["seq"] > len(records):
        pass
    else:
        assert head["seq"] == len(records) and head["chain_hash"] == prev.hex(), "head differs"
    for frm, to, boundary, purged_at, reason in purged:
        assert chain_at.get(to, b"").hex() == boundary, f"the purge manifest of seq {frm}..{to} does not match the chain"
        print(f"seq {frm}..{to} purged by policy on {purged_at[:10]} ({reason}), manifest valid")
    for subject_ref, seqs, erased_at in erased:
        print(f"subject {subject_ref[:16]} erased on {erased_at[:10]} ({len(seqs)} records), receipt valid")
    print(f"{len(records)} records verified ({withheld} fields withheld by the view), head {prev.hex()}")

    cp = get(base, tenant, "/v1/checkpoints/latest")
    text = signed_text(cp["note"], keys)
    assert text is not None, "no valid signature on the checkpoint"
    origin, size, chain_b64 = text.split("\n")[:3]
    assert origin == f"vigil-audit/{tenant}", origin
    size = int(size)
    assert base64.b64decode(chain_b64) == chain_at[size], "checkpoint hash differs from the chain"
    print(f"checkpoint at {size} verified")
    roots = [line[len("root ") :] for line in text.split("\n")[3:] if line.startswith("root ")]
    if roots:
        check_proofs(base, tenant, records, size, base64.b64decode(roots[0]))
    else:
        print("the checkpoint signs no Merkle root (made before trees were kept)")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["full"]):
        print(__doc__)
        sys.exit(2)
    try:
        main(sys.argv[1], sys.argv[2], sys.argv[3:] == ["full"])
    except AssertionError as e:
        print(f"NOT VERIFIED: {e}")
        sys.exit(1)
