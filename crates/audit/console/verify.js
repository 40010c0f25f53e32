// Verification in the browser, with no Vigil code on the server side trusted: RFC 8785
// canonical JSON, SHA-256 and Ed25519 from WebCrypto, RFC 9162 inclusion proofs, C2SP signed
// notes. Written from DESIGN.md's record format and the RFCs.

const enc = new TextEncoder();

// The members of a record that its leaf hash covers (DESIGN.md: the hashed form). Whatever
// else a view adds (payload, salts, withheld, sealed, the two hashes) is not part of it.
export const HASHED = ["tenant_id", "seq", "event_id", "occurred_at", "received_at", "actor",
  "action", "resource", "outcome", "severity", "source", "trace_id", "schema_version",
  "payload_commitments"];

// RFC 8785 for JSON values: object members sorted by UTF-16 code units (what Array.sort
// compares by default), strings and numbers as ECMAScript serializes them (which is what the
// RFC specifies), no whitespace.
export function jcs(v) {
  if (v === null || typeof v !== "object") {
    if (typeof v === "number" && !Number.isFinite(v)) throw new Error("not a JSON number");
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
  return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
}

export function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(s) {
  if (typeof s !== "string" || !/^([0-9a-f]{2})*$/.test(s)) throw new Error("not hex");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}

export function unb64(s) {
  const bin = atob(s);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

export async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// SHA-256(0x00 ‖ JCS(hashed form)).
export async function leafHash(record) {
  const hashed = {};
  for (const k of HASHED) if (k in record) hashed[k] = record[k];
  return sha256(Uint8Array.of(0), enc.encode(jcs(hashed)));
}

// Each visible payload member against its commitment; a committed member without its value
// must be named as withheld or sealed. Returns the first problem, or null.
export async function payloadProblem(record) {
  const commitments = record.payload_commitments || {};
  for (const [k, v] of Object.entries(record.payload || {})) {
    const salt = record.payload_salts && record.payload_salts[k];
    if (!salt || !commitments[k]) return `payload member ${k} has no commitment`;
    const c = await sha256(unhex(salt), enc.encode(jcs(v)));
    if (hex(c) !== commitments[k]) return `payload member ${k} does not match its commitment`;
  }
  for (const k of Object.keys(commitments)) {
    const shown = record.payload && k in record.payload;
    const said = (record.withheld && k in record.withheld) || (record.sealed && k in record.sealed);
    if (!shown && !said) return `payload member ${k} was removed`;
  }
  return null;
}

// SHA-256(previous chain hash ‖ leaf hash).
export async function chainLink(prev, leaf) {
  return sha256(prev, leaf);
}

function node(l, r) {
  return sha256(Uint8Array.of(1), l, r);
}

// RFC 9162 §2.1.3.2.
export async function verifyInclusion(leaf, index, size, proof, root) {
  if (index >= size) return false;
  let fn = index, sn = size - 1, r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await node(p, r);
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await node(r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(r, root);
}

// ---- proofs from tiles (C2SP tlog-tiles) ---------------------------------------------------
// A page's inclusion proofs are computed here from the few tiles they name (each fetched
// once, immutable, cacheable), not asked for one by one. Nothing fetched is trusted: every
// proof is then checked against the signed root like one the server would have sent.

const TILE = 256;

// The tile's path: tile/<L>/<N>[.p/<W>], N in three-digit groups, all but the last x-prefixed.
export function tilePath(level, index, width) {
  const groups = [String(index % 1000).padStart(3, "0")];
  for (let n = Math.floor(index / 1000); n > 0; n = Math.floor(n / 1000)) {
    groups.unshift("x" + String(n % 1000).padStart(3, "0"));
  }
  return `tile/${level}/${groups.join("/")}` + (width < TILE ? `.p/${width}` : "");
}

// The largest power of two strictly below n (n ≥ 2); exact in doubles up to 2^53.
function split(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

const isPow2 = (n) => 2 ** Math.round(Math.log2(n)) === n;

// The ranges whose subtree hashes are PATH(m, D[begin:end]) (RFC 9162 §2.1.3.1), bottom-up.
function pathRanges(m, begin, end, out = []) {
  const n = end - begin;
  if (n === 1) return out;
  const k = split(n);
  if (m < k) {
    pathRanges(m, begin, begin + k, out);
    out.push([begin + k, end]);
  } else {
    pathRanges(m - k, begin + k, end, out);
    out.push([begin, begin + k]);
  }
  return out;
}

// proofFor(record) for verifyPage: its inclusion proof in the tree of `size`, computed from
// tiles that fetchTile(path) → Uint8Array brings.
export function tileProofs(size, fetchTile) {
  const tiles = new Map(); // path → Promise<Uint8Array>
  const nodes = new Map(); // "level/index" → Promise<Uint8Array>
  function tile(level, index) {
    const stored = Math.floor(size / TILE ** level); // hashes at tree level 8·level
    const width = Math.min(TILE, stored - index * TILE);
    const path = tilePath(level, index, width);
    if (!tiles.has(path)) {
      tiles.set(path, fetchTile(path).then((b) => {
        if (b.length !== 32 * width) throw new Error(`${path} holds ${b.length} bytes`);
        return b;
      }));
    }
    return tiles.get(path);
  }
  // A complete subtree: read at tree levels 8, 16…, hashed up from them in between.
  function node(level, index) {
    const key = `${level}/${index}`;
    if (!nodes.has(key)) {
      nodes.set(key, level % 8 === 0
        ? tile(level / 8, Math.floor(index / TILE)).then((t) => {
            const at = 32 * (index % TILE);
            return t.slice(at, at + 32);
          })
        : Promise.all([node(level - 1, 2 * index), node(level - 1, 2 * index + 1)])
          .then(([l, r]) => sha256(Uint8Array.of(1), l, r)));
    }
    return nodes.get(key);
  }
  async function subtree(begin, end) {
    const n = end - begin;
    if (isPow2(n) && begin % n === 0) return node(Math.round(Math.log2(n)), begin / n);
    const k = split(n);
    const [l, r] = await Promise.all([subtree(begin, begin + k), subtree(begin + k, end)]);
    return sha256(Uint8Array.of(1), l, r);
  }
  return async (record) => {
    const proof = await Promise.all(pathRanges(record.seq - 1, 0, size).map(([b, e]) => subtree(b, e)));
    return { tree_size: size, proof: proof.map(hex) };
  };
}

// A verifier key as `vigil keys list` and GET /v1/keys give it: name+keyid+base64(0x01 ‖ key).
export async function parseVerifierKey(vkey) {
  // The key's base64 may hold '+' itself: the name ends at the first, the id at the second.
  const m = /^([^+\s]+)\+([0-9a-fA-F]{8})\+(\S+)$/.exec(vkey.trim());
  if (!m) throw new Error("a verifier key is name+id+key");
  const [, name, id, b64] = m;
  const blob = unb64(b64);
  if (blob.length !== 33 || blob[0] !== 1) throw new Error("not an Ed25519 verifier key");
  const pub = blob.slice(1);
  const keyId = (await sha256(enc.encode(name + "\n"), Uint8Array.of(1), pub)).slice(0, 4);
  if (hex(keyId) !== id.toLowerCase()) throw new Error("the key id does not match the key");
  const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
  return { name, keyId, key };
}

// Opens a C2SP signed note with one of `keys` (parsed verifier keys): the checkpoint it
// states, or null when no trusted key signed it.
export async function openCheckpoint(note, keys) {
  const split = note.lastIndexOf("\n\n");
  if (split < 0) return null;
  const text = note.slice(0, split + 1);
  for (const line of note.slice(split + 2).split("\n")) {
    for (const k of keys) {
      const prefix = "\u2014 " + k.name + " ";
      if (!line.startsWith(prefix)) continue;
      let blob;
      try { blob = unb64(line.slice(prefix.length)); } catch { continue; }
      if (blob.length !== 68 || !equal(blob.slice(0, 4), k.keyId)) continue;
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, k.key, blob.slice(4), enc.encode(text));
      if (!ok) continue;
      const lines = text.split("\n");
      const root = lines.slice(3).find((l) => l.startsWith("root "));
      return {
        origin: lines[0],
        size: Number(lines[1]),
        chainHash: unb64(lines[2]),
        root: root ? unb64(root.slice(5)) : null,
        signer: k.name,
      };
    }
  }
  return null;
}

// Verdicts for a page of records (newest first, as the API returns them): per record its
// own checks (content vs leaf hash, payload vs commitments, inclusion in the signed tree)
// and its link in the chain carried up from the oldest record on the page.
//   proofFor(record) → the inclusion proof JSON, or null when the record is beyond the
//   checkpoint; checkpoint → an opened checkpoint, or null (no trusted signature).
export async function verifyPage(records, checkpoint, proofFor) {
  const ordered = [...records].sort((a, b) => a.seq - b.seq);
  const out = new Map();
  let carried = null, carriedSeq = null, brokenAt = null;
  const proofs = await Promise.all(ordered.map((r) =>
    checkpoint && checkpoint.root && r.seq <= checkpoint.size ? proofFor(r).catch((e) => ({ error: e.message })) : null));
  for (let i = 0; i < ordered.length; i++) {
    const r = ordered[i];
    const v = { seq: r.seq, problems: [], link: "", proof: "" };
    const leaf = await leafHash(r);
    if (hex(leaf) !== r.leaf_hash) v.problems.push("its content does not match its leaf hash");
    const p = await payloadProblem(r);
    if (p) v.problems.push(p);
    // The chain: carried from the oldest record on the page (seq 1 starts from zeros).
    let prev = null;
    if (r.seq === 1) prev = new Uint8Array(32);
    else if (carried && carriedSeq === r.seq - 1) prev = carried;
    if (prev === null) {
      v.link = "start";
      carried = unhex(r.chain_hash);
    } else {
      carried = await chainLink(prev, leaf);
      if (brokenAt !== null) v.link = "after-break";
      else if (hex(carried) === r.chain_hash) v.link = "linked";
      else { v.link = "broken"; brokenAt = r.seq; }
    }
    carriedSeq = r.seq;
    // The tree: the record's own leaf (recomputed) up to the signed root.
    if (!checkpoint || !checkpoint.root) v.proof = "unsigned";
    else if (r.seq > checkpoint.size) v.proof = "pending";
    else {
      const pr = proofs[i];
      if (!pr || pr.error) v.proof = "unavailable";
      else {
        const path = pr.proof.map(unhex);
        const ok = pr.tree_size === checkpoint.size &&
          await verifyInclusion(leaf, r.seq - 1, checkpoint.size, path, checkpoint.root);
        v.proof = ok ? "included" : "not-included";
      }
    }
    if (v.proof === "not-included") v.problems.push("it is not the record the signed tree holds");
    if (v.proof === "unavailable") v.problems.push("no inclusion proof could be had for it");
    if (v.link === "broken") v.problems.push("its chain hash does not follow from the record before it");
    v.verdict = v.problems.length ? "tampered"
      : v.proof === "included" ? "verified"
      : v.proof === "pending" ? "pending"
      : "unsigned";
    out.set(r.seq, v);
  }
  return out;
}
