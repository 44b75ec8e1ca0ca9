// The CPU and memory history is the dashboard server's, not the page's: a page that opens after
// samples were taken draws them at once (more than it could have gathered itself), then appends
// live ones. The overview counts pods by phase without downloading the Running ones, live. Env: DASHBOARD_URL, DASHBOARD_TOKEN, POD (a hollow pod in `default` using CPU), NODE,
// MIN (how many samples the server holds already).
import { execFileSync } from 'node:child_process';
import { run, login, shot, step, URL } from './lib.mjs';

function kubectl(...args) {
  return execFileSync(process.env.KUBECTL, ['--kubeconfig', process.env.KUBECONFIG, ...args], { encoding: 'utf8' });
}

const POD = process.env.POD;
const NODE = process.env.NODE;
const MIN = Number(process.env.MIN ?? 8);

/** Waits until the first chart under `where` holds at least `n` points; the ms it took. */
async function chartWith(page, where, n, timeout) {
  const t0 = Date.now();
  await page.waitForFunction(
    ([sel, n]) => Number(document.querySelector(`[data-testid=${sel}] [data-testid=chart]`)?.dataset.points ?? 0) >= n,
    [where, n],
    { timeout },
  );
  return Date.now() - t0;
}

await run('history', async ({ page }) => {
  await login(page);

  step(`open pod ${POD}'s page: its last ${MIN}+ samples are drawn at once`);
  await page.goto(URL + `#/r/core/v1/pods/default/${POD}`);
  const ms = await chartWith(page, 'pod-usage', MIN, 10000);
  // At 1 s per sample a page alone would need MIN seconds to gather them.
  if (ms > (MIN - 2) * 1000) throw new Error(`the pod's history took ${ms} ms to show ${MIN} samples`);
  const first = Number(await page.getByTestId('pod-usage').getByTestId('chart').first().getAttribute('data-points'));
  console.log(`pod history: ${first} samples drawn ${ms} ms after opening the page`);
  await shot(page, '40-pod-history');

  step('live samples are appended');
  await chartWith(page, 'pod-usage', first + 2, 20000);
  console.log(`pod history grew to ${await page.getByTestId('pod-usage').getByTestId('chart').first().getAttribute('data-points')} samples`);

  step(`open node ${NODE}'s page: its history too`);
  await page.goto(URL + `#/r/core/v1/nodes/_/${NODE}`);
  const nodeMs = await chartWith(page, 'node-usage', MIN, 10000);
  console.log(`node history: drawn ${nodeMs} ms after opening the page`);
  await shot(page, '41-node-history');

  step('the overview counts pods by phase (the total counted, only the pods not Running read) and follows them live');
  await page.goto(URL + '#/');
  const running = page.getByTestId('phases').locator('.phase-Running .n');
  await running.getByText('1', { exact: true }).waitFor({ timeout: 15000 });
  kubectl('run', 'second', '--image=nginx');
  await running.getByText('2', { exact: true }).waitFor({ timeout: 30000 });
  console.log('overview: Running 1, then 2 without a reload');
  kubectl('delete', 'pod', 'second', '--wait=false');
  await running.getByText('1', { exact: true }).waitFor({ timeout: 30000 });
  console.log('overview: Running back to 1 after the delete');
  const pending = page.getByTestId('phases').locator('.phase-Pending .n');
  kubectl('run', 'stuck', '--image=nginx', '--overrides={"spec":{"nodeSelector":{"kaji.io/nowhere":"x"}}}');
  await pending.getByText('1', { exact: true }).waitFor({ timeout: 30000 });
  await running.getByText('1', { exact: true }).waitFor({ timeout: 5000 });
  console.log('overview: a pod that cannot be scheduled counts as Pending, Running stays 1');
  await shot(page, '42-overview-phases');
});
