import { useRef, useState } from 'preact/hooks';
import { stringify } from 'yaml';
import { age, ApiError, findResource, getJSON, query, Resource, resourceForKind, resPath, send } from '../api';
import { Chart, ErrorBox, LiveDot } from '../components';
import { useUsage } from '../metrics';
import { bytes, millicores, quantity } from '../units';
import { useListWatch, useTicker } from '../hooks';
import { objHref, update } from '../state';
import { Relations } from './relations';
import { EditYaml } from './edit';
import { Logs } from './logs';
import { Exec } from './exec';

/** The object without the noise a reader does not want (managedFields). */
export function cleaned(o: any) {
  if (!o?.metadata?.managedFields) return o;
  const { managedFields: _, ...metadata } = o.metadata;
  return { ...o, metadata };
}

// Conditions where True is bad news (upstream's node pressure conditions, ReplicaFailure, ...).
const NEGATIVE = new Set(['MemoryPressure', 'DiskPressure', 'PIDPressure', 'NetworkUnavailable', 'ReplicaFailure', 'Failed', 'FailureTarget', 'Terminating', 'DisruptionTarget']);
function conditionTone(c: { type: string; status: string }) {
  if (c.status !== 'True' && c.status !== 'False') return 'warn';
  return (c.status === 'True') !== NEGATIVE.has(c.type) ? 'ok' : 'bad';
}

const SCALABLE = ['deployments', 'replicasets', 'statefulsets', 'replicationcontrollers'];
const RESTARTABLE = ['deployments', 'statefulsets', 'daemonsets'];

/** `kubectl drain`: cordon, then evict each pod on the node but DaemonSet and static pods. */
async function drain(node: string): Promise<string> {
  await send('PATCH', `/api/v1/nodes/${node}`, { spec: { unschedulable: true } }, 'application/merge-patch+json');
  const pods = await getJSON('/api/v1/pods' + query({ fieldSelector: `spec.nodeName=${node}` }));
  const refused: string[] = [];
  let evicted = 0;
  for (const p of pods.items ?? []) {
    const m = p.metadata;
    if ((m.ownerReferences ?? []).some((o: any) => o.kind === 'DaemonSet') || m.annotations?.['kubernetes.io/config.mirror']) continue;
    if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
    try {
      await send('POST', `/api/v1/namespaces/${m.namespace}/pods/${m.name}/eviction`, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: m.name, namespace: m.namespace } });
      evicted++;
    } catch (e) {
      if ((e as ApiError).code === 403) throw e;
      refused.push(`${m.namespace}/${m.name}: ${(e as Error).message}`);
    }
  }
  return `Node ${node} cordoned; ${evicted} pod(s) evicted.` + (refused.length ? ` Not evicted (retry later): ${refused.join('; ')}` : '');
}

function Actions({ res, obj }: { res: Resource; obj: any }) {
  const [panel, setPanel] = useState<'' | 'scale' | 'delete' | 'drain'>('');
  const [replicas, setReplicas] = useState<number>(obj.spec?.replicas ?? 1);
  const [policy, setPolicy] = useState('Background');
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const path = resPath(res, obj.metadata.namespace, obj.metadata.name);
  // `from` is the panel the action was confirmed in, closed when it succeeds; an action of a plain
  // button (cordon, restart) leaves alone whatever panel was opened while it ran.
  const act = async (what: string, f: () => Promise<unknown>, done: string, from?: 'scale' | 'delete' | 'drain') => {
    setMsg(null);
    try {
      const r = await f();
      setMsg({ ok: true, text: typeof r === 'string' ? r : done });
      if (from) setPanel((p) => (p === from ? '' : p));
    } catch (e) {
      const err = e as ApiError;
      if (err.code === 403) update({ forbidden: { message: err.message, action: what } });
      else setMsg({ ok: false, text: err.message });
    }
  };
  const canScale = SCALABLE.includes(res.name) || res.subresources.includes('scale');
  return (
    <div class="actions">
      {canScale && (
        <button onClick={() => setPanel(panel === 'scale' ? '' : 'scale')} data-testid="scale">
          Scale
        </button>
      )}
      {RESTARTABLE.includes(res.name) && (
        <button
          onClick={() =>
            act(
              `restart ${res.kind} ${obj.metadata.name}`,
              () =>
                send('PATCH', path, { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } } } }, 'application/strategic-merge-patch+json'),
              'Restart requested: new pods roll out.',
            )
          }
        >
          Restart
        </button>
      )}
      {res.name === 'nodes' && (
        <button
          onClick={() =>
            act(
              `${obj.spec?.unschedulable ? 'uncordon' : 'cordon'} node ${obj.metadata.name}`,
              () => send('PATCH', path, { spec: { unschedulable: obj.spec?.unschedulable ? null : true } }, 'application/merge-patch+json'),
              obj.spec?.unschedulable ? 'Node uncordoned.' : 'Node cordoned.',
            )
          }
        >
          {obj.spec?.unschedulable ? 'Uncordon' : 'Cordon'}
        </button>
      )}
      {res.name === 'nodes' && (
        <button onClick={() => setPanel(panel === 'drain' ? '' : 'drain')} data-testid="drain">
          Drain
        </button>
      )}
      {res.verbs.includes('delete') && (
        <button class="danger" onClick={() => setPanel(panel === 'delete' ? '' : 'delete')} data-testid="delete">
          Delete
        </button>
      )}
      {panel === 'scale' && (
        <form
          class="panel"
          onSubmit={(e) => {
            e.preventDefault();
            act(`scale ${res.kind} ${obj.metadata.name}`, () => send('PATCH', path + '/scale', { spec: { replicas } }, 'application/merge-patch+json'), `Scaled to ${replicas}.`, 'scale');
          }}
        >
          <label>
            Replicas <input type="number" min={0} value={replicas} onInput={(e) => setReplicas(parseInt((e.target as HTMLInputElement).value, 10) || 0)} />
          </label>
          <button type="submit">Scale</button>
        </form>
      )}
      {panel === 'drain' && (
        <form
          class="panel"
          onSubmit={(e) => {
            e.preventDefault();
            act(`drain node ${obj.metadata.name}`, () => drain(obj.metadata.name), '', 'drain');
          }}
        >
          <span>
            Cordon <strong>{obj.metadata.name}</strong> and evict its pods (DaemonSet and static pods stay; PodDisruptionBudgets are honoured)?
          </span>
          <button type="submit" class="danger" data-testid="confirm-drain">
            Drain
          </button>
        </form>
      )}
      {panel === 'delete' && (
        <form
          class="panel"
          onSubmit={(e) => {
            e.preventDefault();
            act(
              `delete ${res.kind} ${obj.metadata.name}`,
              () => send('DELETE', path, { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: policy }),
              `Deletion of ${obj.metadata.name} requested (${policy}).`,
              'delete',
            );
          }}
        >
          <span>
            Delete {res.kind} <strong>{obj.metadata.name}</strong>?
          </span>
          <label>
            Dependents{' '}
            <select value={policy} onChange={(e) => setPolicy((e.target as HTMLSelectElement).value)} aria-label="Propagation policy">
              <option value="Background">Background (delete them after)</option>
              <option value="Foreground">Foreground (delete them first)</option>
              <option value="Orphan">Orphan (keep them)</option>
            </select>
          </label>
          <button type="submit" class="danger" data-testid="confirm-delete">
            Delete
          </button>
        </form>
      )}
      {msg && (
        <span class={msg.ok ? 'ok-msg' : 'error'} role="status">
          {msg.text}
        </span>
      )}
    </div>
  );
}

export function ObjectEvents({ ns, uid, name, kind }: { ns: string; uid: string; name: string; kind: string }) {
  useTicker(10000);
  const path = ns ? `/api/v1/namespaces/${ns}/events` : '/api/v1/events';
  const ev = useListWatch(path, { fieldSelector: `involvedObject.name=${name},involvedObject.kind=${kind}` });
  const items = ev.items
    .filter((e) => !uid || !e.involvedObject?.uid || e.involvedObject.uid === uid)
    .sort((a, b) => (b.lastTimestamp ?? b.eventTime ?? '').localeCompare(a.lastTimestamp ?? a.eventTime ?? ''));
  return (
    <section class="events" data-testid="events">
      <h2>
        Events <LiveDot state={ev.state} error={ev.error} />
      </h2>
      {ev.error && ev.state === 'error' ? (
        <ErrorBox error={ev.error} />
      ) : items.length === 0 ? (
        <p class="muted">{ev.state === 'loading' ? 'Loading…' : 'No events.'}</p>
      ) : (
        <table class="grid">
          <thead>
            <tr>
              <th>Type</th>
              <th>Reason</th>
              <th>Age</th>
              <th>From</th>
              <th>Message</th>
            </tr>
          </thead>
          <tbody>
            {items.map((e) => (
              <tr key={e.metadata.uid} class={e.type === 'Warning' ? 'warn' : ''}>
                <td>{e.type}</td>
                <td>{e.reason}</td>
                <td>
                  {age(e.lastTimestamp ?? e.eventTime)}
                  {e.count > 1 ? ` (x${e.count})` : ''}
                </td>
                <td>{e.source?.component ?? e.reportingComponent}</td>
                <td>{e.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function containerState(st: any): string {
  if (st?.running) return `Running since ${age(st.running.startedAt)}`;
  if (st?.waiting) return `Waiting: ${st.waiting.reason ?? ''}${st.waiting.message ? ` (${st.waiting.message})` : ''}`;
  if (st?.terminated) return `Terminated: ${st.terminated.reason ?? ''} (exit ${st.terminated.exitCode})`;
  return 'Pending';
}

/** A pod's containers with their status (image, ready, restarts, state, last termination). */
function Containers({ pod }: { pod: any }) {
  const statuses = new Map<string, any>([...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].map((c: any) => [c.name, c]));
  const all = [...(pod.spec?.initContainers ?? []).map((c: any) => ({ ...c, init: true })), ...(pod.spec?.containers ?? [])];
  return (
    <section>
      <h2>Containers</h2>
      <table class="grid wrap" data-testid="containers">
        <thead>
          <tr>
            <th>Name</th>
            <th>Image</th>
            <th>Ready</th>
            <th>Restarts</th>
            <th>State</th>
          </tr>
        </thead>
        <tbody>
          {all.map((c) => {
            const st = statuses.get(c.name);
            return (
              <tr key={c.name}>
                <td>
                  {c.name}
                  {c.init && <span class="muted small"> (init)</span>}
                </td>
                <td>{c.image}</td>
                <td>{st?.ready ? 'yes' : 'no'}</td>
                <td>{st?.restartCount ?? 0}</td>
                <td>
                  {containerState(st?.state)}
                  {st?.lastState?.terminated && <span class="muted small"> · last: {containerState(st.lastState)}</span>}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

function PodUsage({ pod }: { pod: any }) {
  const s = useUsage(`pod/${pod.metadata.namespace}/${pod.metadata.name}`);
  if (!s || s.length === 0) return null;
  return (
    <section>
      <h2>Usage, last hour</h2>
      <div class="charts" data-testid="pod-usage">
        <Chart label="CPU" points={s.map((x) => ({ t: x.t, v: x.cpu }))} format={millicores} />
        <Chart label="Memory" points={s.map((x) => ({ t: x.t, v: x.mem }))} format={bytes} />
      </div>
    </section>
  );
}

function NodeUsage({ node }: { node: any }) {
  const s = useUsage(`node/${node.metadata.name}`);
  if (!s || s.length === 0) return null;
  const cap = node.status?.allocatable ?? node.status?.capacity ?? {};
  return (
    <section>
      <h2>Usage, last hour</h2>
      <div class="charts" data-testid="node-usage">
        <Chart label="CPU" points={s.map((x) => ({ t: x.t, v: x.cpu }))} max={quantity(cap.cpu)} format={millicores} />
        <Chart label="Memory" points={s.map((x) => ({ t: x.t, v: x.mem }))} max={quantity(cap.memory)} format={bytes} />
      </div>
    </section>
  );
}

function Summary({ resources, res, obj }: { resources: Resource[]; res: Resource; obj: any }) {
  const m = obj.metadata;
  const conds: any[] = obj.status?.conditions ?? [];
  return (
    <div class="summary">
      <dl class="meta">
        {m.namespace && (
          <>
            <dt>Namespace</dt>
            <dd>{m.namespace}</dd>
          </>
        )}
        <dt>Created</dt>
        <dd title={m.creationTimestamp}>{age(m.creationTimestamp)} ago</dd>
        <dt>Labels</dt>
        <dd>
          {Object.entries(m.labels ?? {}).map(([k, v]) => (
            <span class="pill" key={k}>
              {k}={String(v)}
            </span>
          ))}
        </dd>
        {(m.ownerReferences ?? []).length > 0 && (
          <>
            <dt>Owners</dt>
            <dd>
              {m.ownerReferences.map((o: any) => {
                const r = resourceForKind(resources, o.apiVersion, o.kind);
                return r ? (
                  <a key={o.uid} href={objHref(r.group, r.version, r.name, m.namespace, o.name)}>
                    {o.kind}/{o.name}{' '}
                  </a>
                ) : (
                  <span key={o.uid}>
                    {o.kind}/{o.name}{' '}
                  </span>
                );
              })}
            </dd>
          </>
        )}
        {conds.length > 0 && (
          <>
            <dt>Conditions</dt>
            <dd>
              {conds.map((c) => (
                <span class={`pill ${conditionTone(c)}`} key={c.type} title={c.message}>
                  {c.type}={c.status}
                </span>
              ))}
            </dd>
          </>
        )}
      </dl>
      {res.name === 'pods' && res.group === '' && <Containers pod={obj} />}
      {res.name === 'pods' && res.group === '' && resources.some((r) => r.group === 'metrics.k8s.io') && <PodUsage pod={obj} />}
      {res.name === 'nodes' && res.group === '' && resources.some((r) => r.group === 'metrics.k8s.io') && <NodeUsage node={obj} />}
      <Relations resources={resources} res={res} obj={obj} />
      <ObjectEvents ns={m.namespace ?? ''} uid={m.uid} name={m.name} kind={obj.kind ?? res.kind} />
    </div>
  );
}

export function DetailPage({ resources, group, plural, ns, name, tab }: { resources: Resource[]; group: string; plural: string; ns: string; name: string; tab: string }) {
  const res = findResource(resources, group, plural);
  const lw = useListWatch(res ? resPath(res, ns) : null, { fieldSelector: `metadata.name=${name}` });
  const lastRef = useRef<any>(null);
  if (!res) return <div class="error">The server offers no kind “{plural}” in group “{group || 'core'}”.</div>;
  const obj = lw.items.find((o) => o.metadata?.name === name);
  if (obj) lastRef.current = obj;
  const shown = obj ?? lastRef.current;
  const deleted = !obj && !!lastRef.current && lw.complete;
  if (lw.error && lw.state === 'error') return <ErrorBox error={lw.error} />;
  if (!shown) {
    if (lw.complete) return <ErrorBox error={new ApiError(404, { message: `${res.name} "${name}" not found` })} />;
    return <p class="muted">Loading…</p>;
  }
  const tabs: [string, string][] = [
    ['summary', 'Summary'],
    ['yaml', 'YAML'],
  ];
  if (res.verbs.includes('patch')) tabs.push(['edit', 'Edit']);
  if (res.name === 'pods') tabs.push(['logs', 'Logs'], ['exec', 'Exec']);
  return (
    <div class="detail" data-testid="detail">
      <div class="list-head">
        <h1>
          <a href={`#/r/${res.group || 'core'}/${res.version}/${res.name}`} class="muted">
            {res.kind}
          </a>{' '}
          {name}
        </h1>
        <LiveDot state={lw.state} error={lw.error} />
      </div>
      {deleted && (
        <div class="banner" role="alert" data-testid="deleted">
          This {res.kind} was deleted. What you see is its last state.
        </div>
      )}
      {!deleted && <Actions res={res} obj={shown} />}
      <nav class="tabs" role="tablist">
        {tabs.map(([t, label]) => (
          <a key={t} role="tab" aria-selected={t === tab} class={t === tab ? 'active' : ''} href={objHref(res.group, res.version, res.name, ns, name, t)}>
            {label}
          </a>
        ))}
      </nav>
      {tab === 'summary' && <Summary resources={resources} res={res} obj={shown} />}
      {tab === 'yaml' && (
        <pre class="yaml" data-testid="yaml">
          {stringify(cleaned(shown))}
        </pre>
      )}
      {tab === 'edit' && <EditYaml res={res} obj={shown} />}
      {tab === 'logs' && <Logs pod={shown} />}
      {tab === 'exec' && <Exec pod={shown} />}
    </div>
  );
}
