// Shared by the browser scripts: Debian's Chromium through playwright-core (it cannot download a
// browser here), a step logger, screenshots under $SCREENSHOTS, and a failure that says which
// step failed with the page's visible text.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const URL = process.env.DASHBOARD_URL; // e.g. https://127.0.0.1:6443/dashboard/
export const TOKEN = process.env.DASHBOARD_TOKEN;
const SHOTS = process.env.SCREENSHOTS ?? 'target/dashboard-screenshots';
if (!URL || !TOKEN) {
  console.error('DASHBOARD_URL and DASHBOARD_TOKEN must be set');
  process.exit(2);
}
mkdirSync(SHOTS, { recursive: true });

export function step(msg) {
  console.log(`STEP ${msg}`);
}

/**
 * In a network namespace of its own (FORWARD_SOCKET set by tests/dashboard.rs), the server's
 * port is served by forward.mjs, a separate process so that a script blocked in a kubectl call
 * does not hold up the browser's connections.
 */
async function forward() {
  if (!process.env.FORWARD_SOCKET) return;
  const child = spawn(process.execPath, [new globalThis.URL('./forward.mjs', import.meta.url).pathname], {
    env: { ...process.env, FORWARD_PORT: new globalThis.URL(URL).port },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`forward.mjs exited (${code}) before listening`)));
  });
}

export async function launch({ width = 1280, height = 800 } = {}) {
  await forward();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  const context = await browser.newContext({ viewport: { width, height }, ignoreHTTPSErrors: true });
  const page = await context.newPage();
  retryNavigation(page);
  page.on('pageerror', (e) => console.log(`PAGEERROR ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && console.log(`CONSOLE ${m.text()}`));
  return { browser, context, page };
}

/**
 * Chromium aborts loads in flight when the machine's interfaces change (ERR_NETWORK_CHANGED:
 * other tests making bridges, veths and network namespaces), and its error page then reloads
 * itself, which can in turn interrupt the next navigation ("interrupted by another navigation").
 * A person would press reload, so navigations are tried again after the page has settled, and
 * each retry is said in the output.
 */
const redact = (s) => s.replace(/#token=[^"\s]*/g, '#token=…');
const RETRYABLE = /ERR_NETWORK_CHANGED|interrupted by another navigation/;

/** Lets a navigation that Chromium started by itself (an error page's reload) finish. */
async function settle(page) {
  await page.waitForLoadState('load', { timeout: 10000 }).catch(() => {});
}

export function retryNavigation(page) {
  for (const verb of ['goto', 'reload']) {
    const original = page[verb].bind(page);
    page[verb] = async (...args) => {
      for (let i = 1; ; i++) {
        try {
          return await original(...args);
        } catch (e) {
          if (i === 5 || !RETRYABLE.test(String(e.message))) throw e;
          console.log(`RETRY ${verb}: ${redact(String(e.message).split('\n')[0])}`);
          await settle(page);
        }
      }
    };
  }
}

export async function shot(page, name) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  console.log(`SCREENSHOT ${path}`);
}

/** Runs the scenario; on failure prints the step, the page's text and a screenshot, exits 1. */
export async function run(name, f) {
  const t = await launch();
  try {
    await f(t);
    console.log(`PASS ${name}`);
    await t.browser.close();
    process.exit(0);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    try {
      await shot(t.page, `${name}-failure`);
      console.log('PAGE TEXT:\n' + (await t.page.innerText('body')).slice(0, 3000));
    } catch {}
    await t.browser.close();
    process.exit(1);
  }
}

/** Opens the dashboard logged in through the URL `kaji dashboard` prints (#token=...). */
export async function login(page, token = TOKEN) {
  await load(page, URL + '#token=' + encodeURIComponent(token));
}

/**
 * Loads the app. Chromium aborts requests in flight when the machine's interfaces change
 * (ERR_NETWORK_CHANGED: other tests making bridges), which can leave a first load without its
 * script; a second load is what a person would do, so it is allowed, and said.
 */
export async function load(page, url, ready = (p) => p.getByRole('link', { name: 'Overview' })) {
  for (let i = 1; ; i++) {
    try {
      await page.goto(url);
      await ready(page).waitFor({ timeout: 15000 });
      return;
    } catch (e) {
      if (i === 4) throw e;
      console.log(`RETRY loading ${redact(url)}: the app did not start (${redact(e.message.split('\n')[0])})`);
      // The error page's own reload may already be bringing the app up.
      await settle(page);
      if (await ready(page).isVisible().catch(() => false)) return;
      // A page whose script failed stays at "Loading…", and going to the same URL again would
      // only be a same-document jump to its #fragment: leave it first.
      await page.goto('about:blank').catch(() => {});
    }
  }
}

/** Waits until `locator` matches exactly `n` elements (lists fed by separate watches settle apart). */
export async function waitCount(locator, n, what, timeout = 30000) {
  const deadline = Date.now() + timeout;
  let c = -1;
  while (Date.now() < deadline) {
    c = await locator.count();
    if (c === n) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: ${c} shown, expected ${n} (waited ${timeout} ms)`);
}
