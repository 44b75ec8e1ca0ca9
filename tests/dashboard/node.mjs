// Scenarios that need real containers: a pod's logs (followed, searched) and `echo hi` in the
// exec terminal (xterm.js over the API server's WebSocket exec). Env: DASHBOARD_URL,
// DASHBOARD_TOKEN, POD (a Running pod in `default` whose container `main` prints "tick N").
import { run, login, shot, step, URL } from './lib.mjs';

const POD = process.env.POD;

await run('node', async ({ page }) => {
  await login(page);

  step(`read the logs of pod ${POD}, followed as they come, and search them`);
  await page.goto(URL + `#/r/core/v1/pods/default/${POD}/logs`);
  const log = page.getByTestId('log');
  await log.getByText('hello from kaji').waitFor({ timeout: 20000 });
  const count = async () => (await log.innerText()).split('\n').filter((l) => l.startsWith('tick')).length;
  const first = await count();
  await page.waitForFunction(
    ([n]) => document.querySelector('[data-testid=log]').innerText.split('\n').filter((l) => l.startsWith('tick')).length > n + 2,
    [first],
    { timeout: 20000 },
  );
  console.log(`logs followed: ${first} tick lines, then ${await count()} without a reload`);
  await shot(page, '20-pod-logs');
  await page.getByTestId('log-search').fill('hello');
  await page.waitForFunction(() => document.querySelector('[data-testid=log]').innerText.trim() === 'hello from kaji');
  await shot(page, '21-pod-logs-search');

  step('run `echo hi` in the exec terminal');
  await page.getByRole('tab', { name: 'Exec' }).click();
  await page.getByTestId('exec-state').getByText('connected', { exact: true }).waitFor({ timeout: 20000 });
  await page.locator('.xterm').click();
  // The shell's prompt first, then the command typed key by key as a person would.
  await page.waitForFunction(() => /[#$]\s*$/m.test(document.querySelector('.xterm-rows')?.innerText ?? ''), null, { timeout: 15000 });
  await page.keyboard.type('echo hi\n', { delay: 20 });
  await page.waitForFunction(() => (document.querySelector('.xterm-rows')?.innerText ?? '').split('\n').some((l) => l.trim() === 'hi'), null, { timeout: 15000 });
  const screen = await page.locator('.xterm-rows').innerText();
  console.log('terminal:\n' + screen.split('\n').filter((l) => l.trim()).join('\n'));
  await shot(page, '22-exec-echo-hi');
  await page.keyboard.type('exit\n');
  await page.getByTestId('exec-state').getByText('closed').waitFor({ timeout: 15000 });

  step('usage charts from the metrics API: the node on the overview, the pod on its page');
  await page.goto(URL + '#/');
  const card = page.locator('.card', { hasText: 'kaji-test-node' });
  await card.getByTestId('chart').first().locator('polyline, circle').first().waitFor({ timeout: 60000 });
  console.log('node usage: ' + (await card.getByTestId('chart').allInnerTexts()).join(' · '));
  await shot(page, '23-overview-usage');
  await page.goto(URL + `#/r/core/v1/pods/default/${POD}`);
  await page.getByTestId('pod-usage').getByTestId('chart').first().waitFor({ timeout: 60000 });
  console.log('pod usage: ' + (await page.getByTestId('pod-usage').innerText()).replace(/\s+/g, ' '));
  await shot(page, '24-pod-usage');
});
