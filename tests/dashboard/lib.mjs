// Shared by the browser scripts: Debian's Chromium through playwright-core (it cannot download a
// browser here), a step logger, screenshots under $SCREENSHOTS, and a failure that says which
// step failed with the page's visible text.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

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

export async function launch({ width = 1280, height = 800 } = {}) {
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
 * other tests making bridges and network namespaces); a person would press reload, so
 * navigations are tried again, and the retry is said in the output.
 */
export function retryNavigation(page) {
  for (const verb of ['goto', 'reload']) {
    const original = page[verb].bind(page);
    page[verb] = async (...args) => {
      for (let i = 1; ; i++) {
        try {
          return await original(...args);
        } catch (e) {
          if (i === 3 || !String(e.message).includes('ERR_NETWORK_CHANGED')) throw e;
          console.log(`RETRY ${verb}: ERR_NETWORK_CHANGED`);
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
      if (i === 3) throw e;
      console.log(`RETRY loading ${url.replace(/#token=.*/, '#token=…')}: the app did not start (${e.message.split('\n')[0]})`);
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
