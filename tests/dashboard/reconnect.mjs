// A watch dropped by the server: the page says so with its status dot, reconnects by itself when
// the server is back, and shows changes made after that without a reload. The caller restarts
// the server when this script prints STOP-SERVER, starts it again on START-SERVER. Env: DASHBOARD_URL, DASHBOARD_TOKEN, KUBECTL,
// KUBECONFIG.
import { execFileSync } from 'node:child_process';
import { run, login, shot, step, URL } from './lib.mjs';

const kubectl = (...args) => execFileSync(process.env.KUBECTL, ['--kubeconfig', process.env.KUBECONFIG, ...args], { encoding: 'utf8' });

await run('reconnect', async ({ page }) => {
  await login(page);
  await page.goto(URL + '#/r/core/v1/configmaps');
  kubectl('create', 'configmap', 'before-restart');
  await page.locator('tr[data-name="before-restart"]').waitFor({ timeout: 15000 });
  await page.evaluate(() => ((window).__noReload = true));

  step('the server goes away: the status dot says reconnecting');
  console.log('STOP-SERVER');
  await page.getByTestId('live').getByText('reconnecting…').waitFor({ timeout: 30000 });
  await shot(page, '40-watch-reconnecting');
  console.log('START-SERVER');

  step('the server is back: live again, and a ConfigMap made now appears without a reload');
  await page.getByTestId('live').getByText('live', { exact: true }).waitFor({ timeout: 90000 });
  kubectl('create', 'configmap', 'after-restart');
  await page.locator('tr[data-name="after-restart"]').waitFor({ timeout: 20000 });
  if (!(await page.evaluate(() => (window).__noReload))) throw new Error('the page reloaded');
  await shot(page, '41-watch-live-again');
});
