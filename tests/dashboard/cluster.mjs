// Scenarios on hollow nodes (no real containers needed): log in, live lists, a rolling update in
// the relations picture, edit with server-side apply, bad input, RBAC's 403, phone and dark mode.
// Env: DASHBOARD_URL, DASHBOARD_TOKEN (system:masters), VIEW_TOKEN (a user bound to `view`),
// KUBECTL and KUBECONFIG (the test drives the cluster with stock kubectl meanwhile).
import { execFileSync } from 'node:child_process';
import { run, load, login, retryNavigation, shot, step, waitCount, URL, TOKEN } from './lib.mjs';

const VIEW_TOKEN = process.env.VIEW_TOKEN;
function kubectl(...args) {
  return execFileSync(process.env.KUBECTL, ['--kubeconfig', process.env.KUBECONFIG, ...args], { encoding: 'utf8' });
}
function kubectlApply(yaml) {
  return execFileSync(process.env.KUBECTL, ['--kubeconfig', process.env.KUBECONFIG, 'apply', '-f', '-'], { encoding: 'utf8', input: yaml });
}
const deployment = (image) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  minReadySeconds: 4
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: ${image}
`;

await run('cluster', async ({ page, browser }) => {
  step('the login form rejects a bad token with the server message, then accepts a good one');
  await load(page, URL, (p) => p.getByLabel('Bearer token'));
  await page.getByLabel('Bearer token').fill('not-a-token');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByTestId('login-message').waitFor();
  const bad = await page.getByTestId('login-message').innerText();
  if (!/Unauthorized|rejected/i.test(bad)) throw new Error(`login message for a bad token: ${bad}`);
  await shot(page, '01-login-rejected');
  await page.getByLabel('Bearer token').fill(TOKEN);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByTestId('overview').waitFor();
  await page.locator('.card', { hasText: 'hollow-node-0' }).getByText('Ready', { exact: true }).waitFor();
  await shot(page, '02-overview');

  step('a Deployment created by kubectl appears in the list without a reload');
  await page.getByRole('link', { name: 'Deployment', exact: true }).click();
  await page.getByTestId('list').waitFor();
  await page.getByTestId('live').getByText('live').waitFor();
  await page.evaluate(() => ((window).__noReload = true));
  kubectlApply(deployment('nginx:1.15'));
  await page.locator('tr[data-name="web"]').waitFor({ timeout: 15000 });
  await page.locator('tr[data-name="web"]', { hasText: '2/2' }).waitFor({ timeout: 30000 });
  if (!(await page.evaluate(() => (window).__noReload))) throw new Error('the page reloaded');
  await shot(page, '03-deployments-live');

  step('the relations picture follows a rolling update: old and new ReplicaSets, then only the new');
  await page.locator('tr[data-name="web"] a').click();
  const rel = page.getByTestId('relations');
  await rel.locator('[data-kind="ReplicaSet"][data-status^="new · 2/2"]').waitFor({ timeout: 30000 });
  await waitCount(rel.locator('[data-kind="Pod"]'), 2, 'pods drawn before the rollout');
  await shot(page, '04-relations-before');
  kubectl('set', 'image', 'deployment/web', 'nginx=nginx:1.16');
  await rel.locator('[data-kind="ReplicaSet"][data-status^="old"]').waitFor({ timeout: 20000 });
  await rel.locator('[data-kind="ReplicaSet"][data-status^="new"]').waitFor();
  const during = await rel.locator('[data-kind="ReplicaSet"]').count();
  if (during !== 2) throw new Error(`during the rollout ${during} ReplicaSets are drawn, expected 2`);
  await shot(page, '05-relations-rolling');
  await rel.locator('[data-kind="ReplicaSet"][data-status^="old"]').waitFor({ state: 'detached', timeout: 60000 });
  await rel.locator('[data-kind="Deployment"][data-status="2 updated, 2/2 ready"]').waitFor({ timeout: 30000 });
  await rel.locator('[data-kind="ReplicaSet"][data-status^="new · 2/2"]').waitFor();
  await shot(page, '06-relations-after');
  console.log('rolling update followed: 2 ReplicaSets drawn during it, 1 after');

  step('edit replicas in YAML: a dry-run diff, apply, and the pods change');
  await page.getByRole('tab', { name: 'Edit' }).click();
  const editor = page.getByTestId('editor');
  await editor.waitFor();
  const text = await editor.inputValue();
  if (!/\n {2}replicas: 2\n/.test(text)) throw new Error('the editor shows no "replicas: 2"');
  await editor.fill(text.replace(/\n {2}replicas: 2\n/, '\n  replicas: 3\n'));
  await page.getByTestId('review').click();
  await page.getByTestId('diff').getByText('+   replicas: 3').waitFor();
  await page.getByTestId('diff').getByText('-   replicas: 2').waitFor();
  await shot(page, '07-edit-diff');
  if (kubectl('get', 'deployment', 'web', '-o', 'jsonpath={.spec.replicas}') !== '2') throw new Error('the dry run changed the Deployment');
  await page.getByTestId('apply').click();
  await page.getByTestId('applied').waitFor();
  await page.getByRole('tab', { name: 'Summary' }).click();
  await page.getByTestId('relations').locator('[data-kind="ReplicaSet"][data-status^="new · 3/3"]').waitFor({ timeout: 30000 });
  await waitCount(page.getByTestId('relations').locator('[data-kind="Pod"]'), 3, 'pods drawn after editing replicas to 3');
  const managers = kubectl('get', 'deployment', 'web', '--show-managed-fields', '-o', 'jsonpath={.metadata.managedFields[*].manager}');
  if (!managers.includes('kaji-dashboard')) throw new Error(`no kaji-dashboard field manager: ${managers}`);
  await shot(page, '08-scaled-by-edit');

  step('scale with the Scale button, restart (a new ReplicaSet rolls out), cordon a node');
  await page.getByTestId('scale').click();
  await page.getByLabel('Replicas').fill('4');
  await page.locator('form.panel').getByRole('button', { name: 'Scale' }).click();
  await page.getByRole('status').getByText('Scaled to 4.').waitFor();
  await page.getByTestId('relations').locator('[data-kind="ReplicaSet"][data-status^="new · 4/4"]').waitFor({ timeout: 30000 });
  const oldRs = await page.getByTestId('relations').locator('[data-kind="ReplicaSet"]').getAttribute('data-name');
  await page.getByRole('button', { name: 'Restart' }).click();
  await page.getByRole('status').getByText('Restart requested').waitFor();
  if (!kubectl('get', 'deployment', 'web', '-o', 'jsonpath={.spec.template.metadata.annotations}').includes('kubectl.kubernetes.io/restartedAt'))
    throw new Error('no restartedAt annotation on the pod template');
  await page.getByTestId('relations').locator(`[data-kind="ReplicaSet"][data-status^="new"]:not([data-name="${oldRs}"])`).waitFor({ timeout: 20000 });
  await shot(page, '08b-restart-rolling');
  await page.getByTestId('relations').locator(`[data-kind="ReplicaSet"][data-name="${oldRs}"]`).waitFor({ state: 'detached', timeout: 90000 });
  await page.goto(URL + '#/r/core/v1/nodes/_/hollow-node-0');
  await page.getByRole('button', { name: 'Cordon' }).click();
  await page.getByRole('button', { name: 'Uncordon' }).waitFor();
  if (kubectl('get', 'node', 'hollow-node-0', '-o', 'jsonpath={.spec.unschedulable}') !== 'true') throw new Error('the node is not cordoned');
  await page.goto(URL + '#/');
  await page.locator('.card', { hasText: 'hollow-node-0' }).getByText('SchedulingDisabled').waitFor();
  await shot(page, '08c-node-cordoned');
  await page.goto(URL + '#/r/core/v1/nodes/_/hollow-node-0');
  await page.getByRole('button', { name: 'Uncordon' }).click();
  await page.getByRole('button', { name: 'Cordon' }).waitFor();
  // Drain: cordon and evict; the Deployment's pods come back on the other node.
  await page.getByTestId('drain').click();
  await page.getByTestId('confirm-drain').click();
  await page.getByRole('status').getByText(/Node hollow-node-0 cordoned; \d+ pod\(s\) evicted/).waitFor({ timeout: 30000 });
  await page.getByTestId('relations').locator('[data-kind="Node"][data-status="0 pods"]').waitFor({ timeout: 30000 });
  const deadline = Date.now() + 60000;
  for (;;) {
    const nodes = kubectl('get', 'pods', '-l', 'app=web', '--field-selector=status.phase=Running', '-o', 'jsonpath={.items[*].spec.nodeName}').split(' ').filter(Boolean);
    if (nodes.length === 4 && nodes.every((n) => n === 'hollow-node-1')) break;
    if (Date.now() > deadline) throw new Error(`after the drain the web pods run on ${nodes.join(', ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  await shot(page, '08d-node-drained');
  await page.getByRole('button', { name: 'Uncordon' }).click();
  await page.getByRole('button', { name: 'Cordon' }).waitFor();

  step('search across kinds, label selector, namespace switcher, keyboard navigation');
  await page.keyboard.press('/');
  await page.keyboard.type('web\n');
  await page.getByTestId('search-results').getByRole('link', { name: /Deployment\s+default\/web/ }).waitFor();
  await shot(page, '08e-search');
  await page.goto(URL + '#/r/core/v1/pods');
  await page.getByTestId('label-selector').fill('app=nothing-here');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('No pods in namespace default.').waitFor();
  await page.getByTestId('label-selector').fill('app=web');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.locator('tr[data-name^="web-"]').nth(3).waitFor();
  await page.getByTestId('namespace').selectOption('kube-system');
  await page.getByTestId('list').waitFor();
  await page.locator('tr[data-name^="web-"]').first().waitFor({ state: 'detached' });
  await page.getByTestId('namespace').selectOption('default');
  await page.locator('tr[data-name^="web-"]').first().waitFor();
  await page.locator('.vlist').focus();
  await page.keyboard.press('ArrowDown');
  const second = await page.locator('tr.sel').getAttribute('data-name');
  await page.keyboard.press('Enter');
  await page.getByTestId('detail').getByRole('heading', { name: new RegExp(second) }).waitFor();

  step('bad input: YAML that does not parse, and a value the server refuses (its causes shown)');
  await page.goto(URL + '#/r/apps/v1/deployments/default/web/edit');
  await editor.fill('apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n spec: [\n');
  await page.getByTestId('review').click();
  await page.getByTestId('parse-error').waitFor();
  await shot(page, '09-edit-parse-error');
  await editor.fill('apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: -1\n');
  await page.getByTestId('review').click();
  await page.getByTestId('status-error').waitFor();
  const st = await page.getByTestId('status-error').innerText();
  if (!st.includes('spec.replicas')) throw new Error(`the refusal names no field: ${st}`);
  await shot(page, '10-edit-invalid');

  step('an object deleted while open shows a "deleted" banner');
  kubectl('create', 'configmap', 'doomed', '--from-literal=a=b');
  await page.goto(URL + '#/r/core/v1/configmaps/default/doomed/yaml');
  await page.getByTestId('yaml').getByText('a: b').waitFor();
  kubectl('delete', 'configmap', 'doomed');
  await page.getByTestId('deleted').waitFor({ timeout: 15000 });
  await shot(page, '11-deleted-banner');

  step('phone size and dark mode');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(URL + '#/r/apps/v1/deployments/default/web');
  await page.getByTestId('relations').locator('[data-kind="Pod"]').first().waitFor();
  await shot(page, '12-phone-detail');
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(URL + '#/');
  await page.getByTestId('overview').waitFor();
  await page.locator('.card', { hasText: 'hollow-node-1' }).waitFor();
  await shot(page, '13-phone-dark-overview');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(URL + '#/r/core/v1/pods');
  await page.locator('tr[data-name^="web-"]').first().waitFor();
  await shot(page, '14-dark-pods');
  await page.emulateMedia({ colorScheme: 'light' });

  step('a `view` user may look but gets the Forbidden page when deleting');
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: true });
  const viewer = await ctx.newPage();
  retryNavigation(viewer);
  await login(viewer, VIEW_TOKEN);
  await viewer.goto(URL + '#/r/apps/v1/deployments/default/web');
  await viewer.getByTestId('relations').waitFor();
  await viewer.getByTestId('delete').click();
  await viewer.getByTestId('confirm-delete').click();
  await viewer.getByTestId('forbidden').waitFor();
  const msg = await viewer.getByTestId('forbidden').innerText();
  if (!msg.includes('cannot delete resource "deployments"')) throw new Error(`Forbidden page without the server's message: ${msg}`);
  await shot(viewer, '15-forbidden');
  if (kubectl('get', 'deployment', 'web', '-o', 'name').trim() !== 'deployment.apps/web') throw new Error('the viewer deleted the Deployment');
  await ctx.close();

  step('an expired or revoked token sends back to the login page with a message');
  await page.evaluate(() => sessionStorage.setItem('kaji-dashboard-token', 'expired-token'));
  await page.goto(URL + '#/r/apps/v1/deployments');
  await page.getByTestId('login-message').waitFor();
  const ended = await page.getByTestId('login-message').innerText();
  if (!ended.includes('Unauthorized')) throw new Error(`the login page does not give the server's reason: ${ended}`);
  await shot(page, '16-session-ended');
});
