// The web console in a real browser: Debian's Chromium driven by playwright-core (which the
// test command installs; browsers cannot be downloaded here). One scenario per run:
//   node console.mjs SCENARIO
// with VIGIL_URL (the audit service), VIGIL_KEY (the checkpoint verifier key to pin),
// VIGIL_PLAYWRIGHT (playwright-core's directory), VIGIL_CHROMIUM, VIGIL_SHOTS (screenshots on
// failure) and the scenario's own variables. Prints a JSON line of figures; exit 1 on failure.

import { createRequire } from "node:module";
import assert from "node:assert/strict";

const need = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`${k} is not set`); process.exit(2); }
  return v;
};
const base = need("VIGIL_URL");
const require = createRequire(need("VIGIL_PLAYWRIGHT") + "/");
const { chromium } = require("playwright-core");
const scenario = process.argv[2];
const env = process.env;

const browser = await chromium.launch({ executablePath: need("VIGIL_CHROMIUM"), args: ["--no-sandbox"] });
const context = await browser.newContext();
const page = await context.newPage();
const foreign = [];
const consoleErrors = [];
page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) foreign.push(r.url()); });
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
page.on("pageerror", (e) => consoleErrors.push(String(e)));

const rows = () => page.locator("#events tbody tr");
async function verdictOf(seq) { return page.locator(`#events tbody tr[data-seq="${seq}"] td.verdict`).innerText(); }
async function linkOf(seq) { return page.locator(`#events tbody tr[data-seq="${seq}"] td.link`).innerText(); }

async function open() {
  const resp = await page.goto(base + "/console");
  const csp = resp.headers()["content-security-policy"] || "";
  assert.match(csp, /script-src 'self'/, "a CSP allowing this origin's scripts only");
  assert.doesNotMatch(csp, /unsafe-inline/, "no inline script allowed");
  await page.waitForSelector("body[data-ready=true]");
}

async function pinKey() {
  await page.click("#keys-open");
  await page.fill("#keys-text", need("VIGIL_KEY"));
  await page.click("#keys-save");
  await page.waitForSelector("#keys", { state: "hidden" });
}

// Signs in with the keyboard only: the fields in tab order, Enter to submit.
async function signIn(tenant, user, password) {
  await page.focus("#login-form input[name=tenant_id]");
  await page.keyboard.type(tenant);
  await page.keyboard.press("Tab");
  await page.keyboard.type(user);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#trail:not([hidden])");
}

async function devIdentity(tenant, roles) {
  await page.fill("#dev-form input[name=tenant]", tenant);
  await page.fill("#dev-form input[name=roles]", roles);
  await page.click("#dev-form button");
  await page.waitForSelector("#trail:not([hidden])");
}

async function settled() {
  await page.waitForSelector("body[data-verified-ms]", { timeout: 20000 });
  const err = await page.locator("#trail-error").innerText();
  assert.equal(err, "", "no error on the page");
}

// Records newer than the checkpoint read "pending" until the console sees a newer one.
async function noPending() {
  await page.waitForFunction(() => [...document.querySelectorAll("#events tbody td.verdict")]
    .every((e) => !/^(checking|chain checked)/.test(e.textContent)), null, { timeout: 15000 }).catch(() => {});
}

async function allVerified(n) {
  await noPending();
  assert.equal(await rows().count(), n, `${n} rows`);
  const verdicts = await page.locator("#events tbody td.verdict").allInnerTexts();
  assert.deepEqual([...new Set(verdicts)], ["verified"], `every record verified: ${verdicts.join(" | ")}`);
}

const figures = {};
const scenarios = {
  // Sign in through the auth service, pin the key, see a verified page; filter; page older
  // and back; open an event with the keyboard and see its verdict.
  async trail() {
    await open();
    await pinKey();
    await signIn(need("VIGIL_TENANT"), need("VIGIL_USER"), need("VIGIL_PASSWORD"));
    await settled();
    figures.first_page_ms = Number(await page.getAttribute("body", "data-verified-ms"));
    await allVerified(100);
    assert.match(await page.locator("#checkpoint").innerText(), /signature verified in this browser/);
    const newest = Number(await rows().first().getAttribute("data-seq"));
    // Filter: the API's filters.
    await page.fill("#filters input[name=action]", "payment.*");
    await page.selectOption("#filters select[name=limit]", "50");
    await page.click("#filters button[type=submit]");
    await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 50 && document.body.dataset.verifiedMs);
    await settled();
    const actions = await page.locator("#events tbody tr td:nth-child(4)").allInnerTexts();
    assert.deepEqual([...new Set(actions)], ["payment.void"]);
    await allVerified(50);
    // Older: the next page by cursor, strictly older, then back to the newest.
    const firstSeqs = (await rows().evaluateAll((rs) => rs.map((r) => Number(r.dataset.seq))));
    await page.click("#older");
    await page.waitForFunction((top) => Number(document.querySelector("#events tbody tr")?.dataset.seq) < top, Math.min(...firstSeqs));
    await settled();
    const olderSeqs = await rows().evaluateAll((rs) => rs.map((r) => Number(r.dataset.seq)));
    assert.ok(Math.max(...olderSeqs) < Math.min(...firstSeqs), "the older page is older");
    await allVerified(olderSeqs.length);
    await page.click("#newest");
    await page.waitForFunction((s) => Number(document.querySelector("#events tbody tr")?.dataset.seq) === s, Math.max(...firstSeqs));
    await settled();
    await noPending();
    // Keyboard: focus the first row, move down, open with Enter, close with Escape.
    await rows().first().focus();
    await page.keyboard.press("ArrowDown");
    const focused = await page.evaluate(() => document.activeElement?.dataset.seq);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#detail[open]");
    assert.equal(await page.locator("#detail-title").innerText(), `Event ${focused}`);
    assert.equal(await page.locator("#detail-verdict").innerText(), "verified");
    assert.match(await page.locator("#detail-body").innerText(), /in the signed tree \(proof verified here\)/);
    // The trace id links to the tracing backend (not followed: no request leaves the origin).
    const trace = page.locator("#detail-body a[href^='http://traces.example/trace/']");
    assert.equal(await trace.count(), 1, "a trace link");
    assert.match(await trace.getAttribute("href"), /^http:\/\/traces\.example\/trace\/[0-9a-f]{32}$/);
    await page.keyboard.press("Escape");
    await page.waitForSelector("#detail", { state: "hidden" });
    figures.newest = newest;
  },

  // After a row was changed by SQL: exactly that record is marked, and the chain breaks after
  // it.
  async tampered() {
    const seq = Number(need("VIGIL_TAMPERED_SEQ"));
    await open();
    await pinKey();
    await devIdentity(need("VIGIL_TENANT"), "admin");
    await settled();
    await noPending();
    const all = await rows().evaluateAll((rs) => rs.map((r) => Number(r.dataset.seq)));
    for (const s of all) {
      const v = await verdictOf(s);
      const link = await linkOf(s);
      if (s === seq) {
        assert.match(v, /^TAMPERED: its content does not match its leaf hash/, `seq ${s}: ${v}`);
        assert.equal(link, "BROKEN", `the chain breaks at ${s}`);
      } else {
        assert.equal(v, "verified", `seq ${s}: ${v}`);
        if (s > seq) assert.equal(link, "after break", `seq ${s}`);
        else assert.ok(link === "linked" || link === "page start", `seq ${s}: ${link}`);
      }
    }
    assert.match(await page.locator("#summary").innerText(), /1 tampered/);
  },

  // A support user: sensitive members are shown as withheld, and the record still verifies.
  async support() {
    await open();
    await pinKey();
    await signIn(need("VIGIL_TENANT"), need("VIGIL_USER"), need("VIGIL_PASSWORD"));
    await settled();
    await allVerified(Number(need("VIGIL_ROWS")));
    // An event carrying the member (not the policy change or the tail's event).
    await page.locator("#events tbody tr", { has: page.locator("td:nth-child(5)", { hasText: /^payment:p-\d+$/ }) }).first().focus();
    await page.keyboard.press("Enter");
    await page.waitForSelector("#detail[open]");
    const member = need("VIGIL_WITHHELD");
    assert.equal(await page.locator(`#detail-payload dd[data-member="${member}"]`).innerText(), "withheld (sensitive)");
    assert.equal(await page.locator("#detail-verdict").innerText(), "verified");
  },

  // The live tail shows an event posted while it runs.
  async tail() {
    await open();
    await devIdentity(need("VIGIL_TENANT"), "admin");
    await page.click("#tail-toggle");
    await page.waitForFunction(() => document.querySelector("#tail-status").textContent.startsWith("live"));
    const id = "tail-" + Date.now();
    const r = await fetch(base + "/v1/events", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Tenant-ID": need("VIGIL_TENANT"), "X-Roles": "admin" },
      body: JSON.stringify([{ occurred_at: new Date().toISOString(), actor: { type: "user", id: "u-tail" },
        action: "payment.void", resource: { type: "payment", id }, outcome: "success", source: { service: "payments" } }]),
    });
    assert.equal(r.status, 200);
    await page.waitForSelector(`#tail-list li:has-text("${id}")`, { timeout: 10000 });
    await page.waitForFunction(() => /heartbeat/.test(document.querySelector("#tail-status").textContent), null, { timeout: 10000 });
  },

  // Time to the first verified page of 100, from navigation (the benchmark).
  async bench() {
    await open();
    await pinKey();
    await devIdentity(need("VIGIL_TENANT"), "admin");
    await settled();
    const runs = [];
    for (let i = 0; i < Number(env.VIGIL_RUNS || 10); i++) {
      const t0 = Date.now();
      await page.reload();
      await page.waitForSelector("body[data-verified-ms]", { timeout: 20000 });
      runs.push(Date.now() - t0);
      await allVerified(100);
    }
    runs.sort((a, b) => a - b);
    figures.runs_ms = runs;
    figures.median_ms = runs[Math.floor(runs.length / 2)];
  },
};

try {
  if (!scenarios[scenario]) throw new Error(`no scenario ${scenario}`);
  await scenarios[scenario]();
  assert.deepEqual(foreign, [], "no request leaves the service's origin");
  assert.deepEqual(consoleErrors.filter((e) => !/Failed to load resource/.test(e)), [], "no script errors");
  console.log(JSON.stringify({ scenario, ok: true, ...figures }));
  await browser.close();
} catch (e) {
  const shots = env.VIGIL_SHOTS || ".";
  const path = `${shots}/console-${scenario}.png`;
  await page.screenshot({ path, fullPage: true }).catch(() => {});
  console.log(JSON.stringify({ scenario, ok: false, error: String(e.stack || e), screenshot: path, consoleErrors }));
  await browser.close();
  process.exit(1);
}
