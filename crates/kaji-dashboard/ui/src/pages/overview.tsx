import { useEffect, useState } from 'preact/hooks';
import { age, getJSON, Resource } from '../api';
import { ErrorBox, LiveDot } from '../components';
import { useListWatch, useTicker } from '../hooks';
import { objHref, useStore } from '../state';

/** Kubernetes quantities to numbers: CPU in cores, memory in bytes. */
export function quantity(q?: string): number {
  if (!q) return 0;
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(q);
  if (!m) return 0;
  const n = parseFloat(m[1]);
  const f: Record<string, number> = {
    n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12,
    Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4,
  };
  return n * (f[m[2]] ?? 1);
}

export function bytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) (n /= 1024), i++;
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${u[i]}`;
}

function Bar({ used, total, label }: { used: number; total: number; label: string }) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  return (
    <div class="bar" title={label} aria-label={label}>
      <div style={{ width: `${pct}%` }} class={pct > 85 ? 'hot' : ''} />
    </div>
  );
}

const PHASES = ['Running', 'Pending', 'Succeeded', 'Failed', 'Unknown'];

export function Overview({ resources }: { resources: Resource[] }) {
  const s = useStore();
  useTicker(5000);
  const nodes = useListWatch('/api/v1/nodes');
  const podsPath = s.namespace ? `/api/v1/namespaces/${s.namespace}/pods` : '/api/v1/pods';
  const pods = useListWatch(podsPath);
  const evPath = s.namespace ? `/api/v1/namespaces/${s.namespace}/events` : '/api/v1/events';
  const events = useListWatch(evPath, { fieldSelector: 'type=Warning' });
  const [metrics, setMetrics] = useState<Map<string, any>>(new Map());
  const hasMetrics = resources.some((r) => r.group === 'metrics.k8s.io' && r.name === 'nodes');
  useEffect(() => {
    if (!hasMetrics) return;
    let stop = false;
    const poll = () =>
      getJSON('/apis/metrics.k8s.io/v1beta1/nodes')
        .then((l) => !stop && setMetrics(new Map((l.items ?? []).map((m: any) => [m.metadata.name, m]))))
        .catch(() => {});
    poll();
    const t = setInterval(poll, 15000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [hasMetrics]);

  const phases = new Map<string, number>();
  for (const p of pods.items) phases.set(p.status?.phase ?? 'Unknown', (phases.get(p.status?.phase ?? 'Unknown') ?? 0) + 1);
  const warnings = events.items
    .filter((e) => e.type === 'Warning')
    .sort((a, b) => (b.lastTimestamp ?? b.eventTime ?? '').localeCompare(a.lastTimestamp ?? a.eventTime ?? ''))
    .slice(0, 20);

  return (
    <div class="overview" data-testid="overview">
      <h1>
        Overview <span class="muted">{s.namespace ? `namespace ${s.namespace}` : 'all namespaces'}</span>
      </h1>
      <section>
        <h2>
          Nodes <LiveDot state={nodes.state} error={nodes.error} />
        </h2>
        {nodes.error ? (
          <ErrorBox error={nodes.error} />
        ) : (
          <div class="cards">
            {nodes.items
              .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
              .map((n) => {
                const ready = (n.status?.conditions ?? []).find((c: any) => c.type === 'Ready');
                const bad = (n.status?.conditions ?? []).filter((c: any) => c.type !== 'Ready' && c.status === 'True');
                const cap = n.status?.allocatable ?? n.status?.capacity ?? {};
                const m = metrics.get(n.metadata.name);
                const cpu = quantity(cap.cpu);
                const mem = quantity(cap.memory);
                return (
                  <a class="card" href={objHref('', 'v1', 'nodes', '', n.metadata.name)} key={n.metadata.name}>
                    <strong>{n.metadata.name}</strong>
                    <span class={`pill ${ready?.status === 'True' ? 'ok' : 'bad'}`}>{ready?.status === 'True' ? 'Ready' : 'NotReady'}</span>
                    {n.spec?.unschedulable && <span class="pill warn">SchedulingDisabled</span>}
                    {bad.map((c: any) => (
                      <span class="pill bad" key={c.type}>
                        {c.type}
                      </span>
                    ))}
                    <div class="muted small">
                      {cap.cpu} CPU · {bytes(mem)} · {cap.pods} pods · {n.status?.nodeInfo?.kubeletVersion}
                    </div>
                    {m ? (
                      <>
                        <div class="small">CPU {(quantity(m.usage?.cpu) * 1000).toFixed(0)}m</div>
                        <Bar used={quantity(m.usage?.cpu)} total={cpu} label="CPU usage" />
                        <div class="small">Memory {bytes(quantity(m.usage?.memory))}</div>
                        <Bar used={quantity(m.usage?.memory)} total={mem} label="Memory usage" />
                      </>
                    ) : (
                      <div class="muted small">{hasMetrics ? 'no usage reported yet' : 'no metrics API'}</div>
                    )}
                  </a>
                );
              })}
          </div>
        )}
      </section>
      <section>
        <h2>
          Pods by phase <LiveDot state={pods.state} error={pods.error} />
        </h2>
        {pods.error ? (
          <ErrorBox error={pods.error} />
        ) : (
          <div class="phases" data-testid="phases">
            {PHASES.map((ph) => (
              <a class={`phase phase-${ph}`} key={ph} href={`#/r/core/v1/pods?fs=${encodeURIComponent("status.phase=" + ph)}`}>
                <span class="n">{phases.get(ph) ?? 0}</span> {ph}
              </a>
            ))}
          </div>
        )}
      </section>
      <section>
        <h2>
          Recent warnings <LiveDot state={events.state} error={events.error} />
        </h2>
        {events.error ? (
          <ErrorBox error={events.error} />
        ) : warnings.length === 0 ? (
          <p class="muted">No warning events.</p>
        ) : (
          <table class="grid">
            <thead>
              <tr>
                <th>Age</th>
                <th>Object</th>
                <th>Reason</th>
                <th>Message</th>
              </tr>
            </thead>
            <tbody>
              {warnings.map((e) => (
                <tr key={e.metadata.uid}>
                  <td>{age(e.lastTimestamp ?? e.eventTime)}</td>
                  <td>
                    {e.involvedObject?.kind}/{e.involvedObject?.name}
                  </td>
                  <td>{e.reason}</td>
                  <td>{e.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}
