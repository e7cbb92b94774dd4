// Drives Debian's headless Chromium with playwright-core, for
// tests/chat_browser.rs. Same JSON-lines protocol as chat_client.mjs: one
// request per line on stdin, each answered by a line with its "id":
//
//   {"op":"open","page":"bob","url":"http://..."}          -> {"ok":true,"title":"..."}
//   {"op":"fill","page":"bob","selector":"#name","value":"bob"}
//   {"op":"click","page":"bob","selector":"#connect"}
//   {"op":"select","page":"bob","selector":"select","value":"1"}
//   {"op":"wait_text","page":"bob","selector":"#log","text":"Joined"}
//                                                           -> {"ok":true,"text":"<innerText>"}
//   {"op":"text","page":"bob","selector":"#status"}         -> {"ok":true,"text":"..."}
//   {"op":"lines","page":"bob"}     -> {"ok":true,"lines":[{"class":"msg notice","text":"..."}]}
//   {"op":"eval","page":"bob","js":"1 + 1"}                -> {"ok":true,"value":2}
//   {"op":"wait_true","page":"bob","js":"window.x === 1"}  (waits until truthy)
//   {"op":"screenshot","page":"bob","path":"/.../chat-page.png"}
//   {"op":"report","page":"bob"}    -> {"ok":true,"errors":[...],"requests":[...]}
//   {"op":"exit"}                   -> {"ok":true}, closes the browser, exits 0
//
// Environment: CHROMIUM (the executable), USER_DATA_DIR (a fresh temp dir
// the test made and removes).

import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const WAIT_MS = 15000;
const pages = new Map();
let context = null;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function fatal(err) {
  out({ fatal: String(err && err.stack ? err.stack : err) });
  try {
    if (context) await context.close();
  } finally {
    process.exit(1);
  }
}
process.on("uncaughtException", fatal);
process.on("unhandledRejection", fatal);

async function browser() {
  if (context) return context;
  context = await chromium.launchPersistentContext(process.env.USER_DATA_DIR, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    viewport: { width: 1000, height: 640 },
  });
  return context;
}

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p.page;
}

async function handle(req) {
  switch (req.op) {
    case "open": {
      const ctx = await browser();
      const p = await ctx.newPage();
      const entry = { page: p, errors: [], requests: [] };
      p.on("pageerror", (e) => entry.errors.push(`pageerror: ${e.message}`));
      p.on("console", (m) => {
        if (m.type() === "error") entry.errors.push(`console: ${m.text()}`);
      });
      p.on("request", (r) => entry.requests.push(r.url()));
      p.on("requestfailed", (r) =>
        entry.errors.push(`requestfailed: ${r.url()} ${r.failure() && r.failure().errorText}`));
      pages.set(req.page, entry);
      const res = await p.goto(req.url, { waitUntil: "load", timeout: WAIT_MS });
      return { ok: true, status: res ? res.status() : null, title: await p.title() };
    }
    case "fill":
      await page(req.page).fill(req.selector, req.value, { timeout: WAIT_MS });
      return { ok: true };
    case "click":
      await page(req.page).click(req.selector, { timeout: WAIT_MS });
      return { ok: true };
    case "select":
      await page(req.page).selectOption(req.selector, req.value, { timeout: WAIT_MS });
      return { ok: true };
    case "wait_text": {
      const p = page(req.page);
      try {
        await p.waitForFunction(
          ([sel, text]) => {
            const el = document.querySelector(sel);
            return !!el && el.innerText.includes(text);
          },
          [req.selector, req.text],
          { timeout: WAIT_MS, polling: 50 },
        );
      } catch (e) {
        const now = await p.evaluate((sel) => {
          const el = document.querySelector(sel);
          return el ? el.innerText : null;
        }, req.selector);
        return { ok: false, error: `"${req.text}" not in ${req.selector}: ${e.message}`, text: now };
      }
      const text = await p.evaluate((sel) => document.querySelector(sel).innerText, req.selector);
      return { ok: true, text };
    }
    case "text": {
      const text = await page(req.page).evaluate((sel) => {
        const el = document.querySelector(sel);
        return el ? el.innerText : null;
      }, req.selector);
      return { ok: true, text };
    }
    case "lines": {
      const lines = await page(req.page).evaluate(() =>
        [...document.querySelectorAll("#log > div")].map((d) => ({
          class: d.className,
          text: d.innerText,
        })),
      );
      return { ok: true, lines };
    }
    case "eval":
      // An expression evaluated in the page; its (JSON) value is returned.
      return { ok: true, value: await page(req.page).evaluate(req.js) };
    case "wait_true": {
      // Waits until the expression is truthy in the page.
      try {
        await page(req.page).waitForFunction(req.js, null, { timeout: WAIT_MS, polling: 50 });
      } catch (e) {
        return { ok: false, error: `${req.js} stayed false: ${e.message}` };
      }
      return { ok: true };
    }
    case "screenshot":
      await page(req.page).screenshot({ path: req.path, fullPage: true });
      return { ok: true };
    case "report": {
      const e = pages.get(req.page);
      if (!e) throw new Error(`no page ${req.page}`);
      return { ok: true, errors: e.errors, requests: e.requests };
    }
    case "exit":
      if (context) await context.close();
      context = null;
      return { ok: true, exit: true };
    default:
      return { ok: false, error: `unknown op ${req.op}` };
  }
}

// One request at a time, in order.
const rl = createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on("line", (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    const req = JSON.parse(line);
    let reply;
    try {
      reply = await handle(req);
    } catch (err) {
      reply = { ok: false, error: String(err && err.message ? err.message : err) };
    }
    out({ id: req.id, ...reply });
    if (reply.exit) process.exit(0);
  });
});
rl.on("close", () => {
  queue.then(async () => {
    if (context) await context.close();
    process.exit(0);
  });
});
