// The Vigil console: sign in, search a tenant's trail, open an event, tail new ones, and see
// each shown record verified here, in the browser (verify.js), against checkpoint keys the
// user pinned. Talks to this origin only; no inline script (the CSP forbids it).

import { openCheckpoint, parseVerifierKey, verifyPage, tileProofs, hex, leafHash } from "./verify.js";

const $ = (sel) => document.querySelector(sel);
const KEYS = "vigil.trustedKeys";
const SESSION = "vigil.session";

let config = { login: false, trace_url: null };
let session = null; // {kind: "token", token, tenant, user} | {kind: "dev", tenant, roles}
let filters = {};
let cursors = []; // cursors of the pages shown so far (for "Newest")
let nextCursor = null;
let records = new Map(); // seq → record on this page
let verdicts = new Map();
let started = performance.now();

function headers() {
  if (!session) return {};
  if (session.kind === "token") return { Authorization: "Bearer " + session.token };
  return { "X-Tenant-ID": session.tenant, "X-Roles": session.roles, "X-User-ID": "console" };
}

class ApiError extends Error {
  constructor(status, body) {
    // The shared error shape: {code, message, trace_id}.
    super(body && body.code ? `${body.code}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, init = {}) {
  const r = await fetch(path, { ...init, headers: { ...headers(), ...(init.headers || {}) } });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// A tile of the tenant's Merkle tree, as bytes (immutable: the browser may cache it).
async function tileBytes(path) {
  const r = await fetch("/v1/tiles/" + path, { headers: headers() });
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  return new Uint8Array(await r.arrayBuffer());
}

function text(el, s) { el.textContent = s == null ? "" : String(s); return el; }
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("data-")) el.setAttribute(k, v);
    else el[k] = v;
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// ---- trusted keys -------------------------------------------------------------------------

async function trustedKeys() {
  const lines = (localStorage.getItem(KEYS) || "").split("\n").map((l) => l.trim()).filter(Boolean);
  const keys = [];
  for (const l of lines) {
    try { keys.push(await parseVerifierKey(l)); } catch { /* shown when saved */ }
  }
  return keys;
}

function setupKeys() {
  const dlg = $("#keys");
  $("#keys-open").addEventListener("click", () => {
    $("#keys-text").value = localStorage.getItem(KEYS) || "";
    text($("#keys-error"), "");
    dlg.showModal();
  });
  $("#keys-close").addEventListener("click", () => dlg.close());
  $("#keys-save").addEventListener("click", async () => {
    const value = $("#keys-text").value.trim();
    for (const l of value.split("\n").map((x) => x.trim()).filter(Boolean)) {
      try { await parseVerifierKey(l); } catch (e) { text($("#keys-error"), `${l.slice(0, 40)}…: ${e.message}`); return; }
    }
    localStorage.setItem(KEYS, value);
    dlg.close();
    if (session) load(cursors[cursors.length - 1] || null);
  });
}

// ---- sign-in ------------------------------------------------------------------------------

function showSignedIn() {
  $("#login").hidden = !!session;
  $("#trail").hidden = !session;
  $("#logout").hidden = !session;
  text($("#who"), session ? (session.kind === "token"
    ? `${session.user} in ${session.tenant}` : `${session.tenant} (development identity: ${session.roles})`) : "");
}

function setupLogin() {
  $("#login-form").hidden = !config.login;
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    text($("#login-error"), "");
    try {
      const body = { tenant_id: f.get("tenant_id"), username: f.get("username"), password: f.get("password") };
      const r = await fetch("/console/login", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      const answer = await r.json().catch(() => null);
      if (!r.ok) throw new ApiError(r.status, answer);
      session = { kind: "token", token: answer.access_token, tenant: body.tenant_id, user: body.username };
      sessionStorage.setItem(SESSION, JSON.stringify(session));
      ev.target.reset();
      enter();
    } catch (e) {
      text($("#login-error"), e.message);
    }
  });
  $("#dev-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    session = { kind: "dev", tenant: f.get("tenant").trim(), roles: f.get("roles").trim() };
    sessionStorage.setItem(SESSION, JSON.stringify(session));
    enter();
  });
  $("#logout").addEventListener("click", () => {
    stopTail();
    session = null;
    sessionStorage.removeItem(SESSION);
    $("#events tbody").replaceChildren();
    showSignedIn();
  });
}

function enter() {
  showSignedIn();
  cursors = [];
  load(null);
}

// ---- the trail ----------------------------------------------------------------------------

function query(cursor) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  if (cursor) q.set("cursor", cursor);
  return q.toString();
}

function verdictLabel(v) {
  if (!v) return ["checking", "checking…"];
  switch (v.verdict) {
    case "verified": return ["verified", "verified"];
    case "tampered": return ["tampered", "TAMPERED: " + v.problems.join("; ")];
    case "pending": return ["pending", "chain checked; not in a checkpoint yet"];
    default: return ["unsigned", "not verified: no trusted key signed the checkpoint"];
  }
}

function linkLabel(v) {
  if (!v) return "";
  return { start: "page start", linked: "linked", broken: "BROKEN", "after-break": "after break" }[v.link] || "";
}

function row(r) {
  const v = verdicts.get(r.seq);
  const [cls, label] = verdictLabel(v);
  const tr = h("tr", { tabIndex: 0, "data-seq": String(r.seq), class: v && v.verdict === "tampered" ? "tampered" : "" },
    h("td", {}, r.seq),
    h("td", {}, r.occurred_at),
    h("td", {}, `${r.actor.type}:${r.actor.id}`),
    h("td", {}, r.action),
    h("td", {}, `${r.resource.type}:${r.resource.id}`),
    h("td", {}, r.outcome),
    h("td", { class: "link link-" + (v ? v.link : "") }, linkLabel(v)),
    h("td", { class: "verdict verdict-" + cls }, label));
  tr.addEventListener("click", () => openDetail(r.seq));
  tr.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); openDetail(r.seq); }
    if (ev.key === "ArrowDown" || ev.key === "j") { ev.preventDefault(); tr.nextElementSibling?.focus(); }
    if (ev.key === "ArrowUp" || ev.key === "k") { ev.preventDefault(); tr.previousElementSibling?.focus(); }
  });
  return tr;
}

function render() {
  const rows = [...records.values()].sort((a, b) => b.seq - a.seq).map(row);
  $("#events tbody").replaceChildren(...rows);
}

async function latestCheckpoint() {
  const keys = await trustedKeys();
  let cp;
  try { cp = await api("/v1/checkpoints/latest"); } catch (e) {
    if (e.status === 404) { text($("#checkpoint"), "No checkpoint yet in this tenant."); return null; }
    throw e;
  }
  const opened = keys.length ? await openCheckpoint(cp.note, keys) : null;
  const el = $("#checkpoint");
  if (!keys.length) text(el, `Latest checkpoint: ${cp.size} records — no trusted keys pinned, so it is not checked.`);
  else if (!opened) text(el, `Latest checkpoint: ${cp.size} records — NOT signed by a trusted key.`);
  else if (opened.origin !== `vigil-audit/${session.tenant}`) { text(el, `The checkpoint is for ${opened.origin}, not this tenant.`); return null; }
  else text(el, `Latest checkpoint: ${opened.size} records, signed by ${opened.signer} on ${cp.time} — signature verified in this browser.`);
  el.dataset.state = opened ? "verified" : "unverified";
  return opened;
}

async function load(cursor) {
  text($("#trail-error"), "");
  started = performance.now();
  delete document.body.dataset.verifiedMs;
  try {
    const [page, checkpoint] = await Promise.all([
      api("/v1/events?" + query(cursor)),
      latestCheckpoint(),
    ]);
    records = new Map(page.events.map((r) => [r.seq, r]));
    verdicts = new Map();
    nextCursor = page.next_cursor || null;
    $("#older").disabled = !nextCursor;
    text($("#summary"), `${page.events.length} records${cursor ? " (older page)" : ""}`);
    render();
    await verify(page.events, checkpoint);
    document.body.dataset.verifiedMs = String(Math.round(performance.now() - started));
    scheduleRecheck(page.events, checkpoint);
  } catch (e) {
    text($("#trail-error"), e.message);
    if (e.status === 401) { session = null; sessionStorage.removeItem(SESSION); showSignedIn(); }
  }
}

async function verify(events, checkpoint) {
  verdicts = await verifyPage(events, checkpoint, checkpoint?.root && tileProofs(checkpoint.size, tileBytes));
  render();
  const counts = {};
  for (const v of verdicts.values()) counts[v.verdict] = (counts[v.verdict] || 0) + 1;
  text($("#summary"), `${events.length} records: ` +
    Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", "));
}

// Records newer than the latest checkpoint are "pending": look for a newer checkpoint now and
// then, and verify the page again once one covers them.
let recheck = null;
function scheduleRecheck(events, checkpoint) {
  clearTimeout(recheck);
  if (![...verdicts.values()].some((v) => v.verdict === "pending")) return;
  recheck = setTimeout(async () => {
    if (!session || records.size === 0 || !events.every((r) => records.has(r.seq))) return;
    try {
      const next = await latestCheckpoint();
      if (next && (!checkpoint || next.size > checkpoint.size)) await verify(events, next);
      scheduleRecheck(events, next || checkpoint);
    } catch (e) {
      text($("#trail-error"), e.message);
    }
  }, 1000);
}

function setupTrail() {
  $("#filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    filters = Object.fromEntries([...new FormData(ev.target)].map(([k, v]) => [k, String(v).trim()]));
    cursors = [];
    load(null);
  });
  filters = { limit: "100" };
  $("#older").addEventListener("click", () => {
    if (!nextCursor) return;
    cursors.push(nextCursor);
    load(nextCursor);
  });
  $("#newest").addEventListener("click", () => { cursors = []; load(null); });
}

// ---- event detail -------------------------------------------------------------------------

function traceLink(traceId) {
  if (!traceId) return "—";
  if (!config.trace_url) return traceId;
  const a = h("a", { href: config.trace_url.replace("{trace_id}", encodeURIComponent(traceId)), target: "_blank", rel: "noopener noreferrer" }, traceId);
  return a;
}

async function openDetail(seq) {
  const r = records.get(seq);
  if (!r) return;
  const v = verdicts.get(seq);
  const [cls, label] = verdictLabel(v);
  const dl = h("dl");
  const add = (k, val) => dl.append(h("dt", {}, k), val instanceof Node ? h("dd", {}, val) : h("dd", {}, val ?? "—"));
  add("Verdict", h("span", { class: "verdict verdict-" + cls, id: "detail-verdict" }, label));
  add("Seq", r.seq);
  add("Event id", r.event_id);
  add("Tenant", r.tenant_id);
  add("Occurred", r.occurred_at);
  add("Received", r.received_at);
  add("Actor", `${r.actor.type}:${r.actor.id}`);
  add("Action", r.action);
  add("Resource", `${r.resource.type}:${r.resource.id}`);
  add("Outcome", r.outcome);
  add("Severity", r.severity);
  add("Source", r.source.service);
  add("Trace", traceLink(r.trace_id));
  add("Leaf hash", hex(await leafHash(r)) === r.leaf_hash ? r.leaf_hash + " (recomputed here)" : r.leaf_hash + " (DIFFERS from the content)");
  add("Chain hash", r.chain_hash);
  add("Chain link", linkLabel(v));
  add("Inclusion", v ? { included: "in the signed tree (proof verified here)", pending: "not in a checkpoint yet", "not-included": "NOT in the signed tree", unavailable: "no proof", unsigned: "no trusted checkpoint" }[v.proof] : "checking…");
  const payload = h("dl", { id: "detail-payload" });
  const names = new Set([...Object.keys(r.payload || {}), ...Object.keys(r.payload_commitments || {})]);
  for (const k of [...names].sort()) {
    let val;
    if (r.payload && k in r.payload) val = h("pre", {}, JSON.stringify(r.payload[k], null, 2));
    else if (r.withheld && k in r.withheld) val = h("span", { class: "withheld" }, `withheld (${r.withheld[k]})`);
    else if (r.sealed && k in r.sealed) val = h("span", { class: "withheld" }, "sealed");
    else val = h("span", { class: "withheld" }, "removed");
    payload.append(h("dt", {}, k), h("dd", { "data-member": k }, val));
  }
  const body = $("#detail-body");
  body.replaceChildren(dl, h("h3", {}, "Payload"), payload);
  text($("#detail-title"), `Event ${r.seq}`);
  $("#detail").showModal();
  $("#detail-close").focus();
}

// ---- live tail ----------------------------------------------------------------------------

let tail = null; // AbortController while running

function stopTail() {
  if (tail) tail.abort();
  tail = null;
  text($("#tail-toggle"), "Start");
  text($("#tail-status"), "stopped");
}

async function runTail() {
  const ctl = new AbortController();
  tail = ctl;
  text($("#tail-toggle"), "Stop");
  let last = null;
  while (tail === ctl) {
    try {
      const q = last === null ? "" : `?after=${last}`;
      const r = await fetch("/v1/events/tail" + q, { headers: headers(), signal: ctl.signal });
      if (!r.ok) { const b = await r.json().catch(() => null); throw new ApiError(r.status, b); }
      text($("#tail-status"), "live");
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let at;
        while ((at = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, at); buf = buf.slice(at + 2);
          let event = "message", data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) { text($("#tail-status"), "live (heartbeat " + new Date().toLocaleTimeString() + ")"); continue; }
            const [k, ...rest] = line.split(":");
            const v = rest.join(":").replace(/^ /, "");
            if (k === "event") event = v; else if (k === "data") data += v; else if (k === "id") id = v;
          }
          if (event === "record") {
            const rec = JSON.parse(data);
            last = Number(id);
            $("#tail-list").prepend(h("li", { "data-seq": String(rec.seq) },
              `${rec.seq} ${rec.occurred_at} ${rec.actor.id} ${rec.action} ${rec.resource.type}:${rec.resource.id} ${rec.outcome}`));
          } else if (event === "idle") {
            text($("#tail-status"), "reconnecting (idle)");
          }
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
      text($("#tail-status"), "error: " + e.message + "; retrying");
      await new Promise((res) => setTimeout(res, 2000));
    }
  }
}

function setupTail() {
  $("#tail-toggle").addEventListener("click", () => (tail ? stopTail() : runTail()));
}

// ---- start --------------------------------------------------------------------------------

async function start() {
  config = await fetch("/console/config.json").then((r) => r.json()).catch(() => config);
  setupKeys();
  setupLogin();
  setupTrail();
  setupTail();
  $("#detail-close").addEventListener("click", () => $("#detail").close());
  try { session = JSON.parse(sessionStorage.getItem(SESSION)); } catch { session = null; }
  showSignedIn();
  if (session) enter();
  document.body.dataset.ready = "true";
}

start();
