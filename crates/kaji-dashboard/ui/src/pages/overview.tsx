import { age, METADATA, Resource } from '../api';
import { Chart, ErrorBox, LiveDot } from '../components';
import { useUsage } from '../metrics';
import { bytes, millicores, quantity } from '../units';
import { useListWatch, useTicker } from '../hooks';
import { objHref, useStore } from '../state';

function NodeUsage({ name, cpu, mem }: { name: string; cpu: number; mem: number }) {
  const s = useUsage(`node/${name}`);
  if (!s || s.length === 0) return <div class="muted small">no usage reported yet</div>;
  return (
    <>
      <Chart label="CPU" points={s.map((x) => ({ t: x.t, v: x.cpu }))} max={cpu} format={millicores} />
      <Chart label="Memory" points={s.map((x) => ({ t: x.t, v: x.mem }))} max={mem} format={bytes} />
    </>
  );
}

const PHASES = ['Running', 'Pending', 'Succeeded', 'Failed', 'Unknown'];

export function Overview({ resources }: { resources: Resource[] }) {
  const s = useStore();
  useTicker(5000);
  const nodes = useListWatch('/api/v1/nodes');
  const podsPath = s.namespace ? `/api/v1/namespaces/${s.namespace}/pods` : '/api/v1/pods';
  // Not every pod downloaded: the pods that are not Running (few, in a healthy cluster) as
  // objects, and the total counted (a one-item page's remainingItemCount, then a metadata-only
  // watch whose ADDED and DELETED events move it); Running is the difference.
  const total = useListWatch(podsPath, {}, METADATA, true);
  const others = useListWatch(podsPath, { fieldSelector: 'status.phase!=Running' });
  const pods = [total, others].find((lw) => lw.error) ?? [total, others].find((lw) => lw.state !== 'live') ?? others;
  const evPath = s.namespace ? `/api/v1/namespaces/${s.namespace}/events` : '/api/v1/events';
  const events = useListWatch(evPath, { fieldSelector: 'type=Warning' });
  const hasMetrics = resources.some((r) => r.group === 'metrics.k8s.io' && r.name === 'nodes');

  const phases = new Map<string, number>();
  for (const p of others.items) phases.set(p.status?.phase ?? 'Unknown', (phases.get(p.status?.phase ?? 'Unknown') ?? 0) + 1);
  if (total.complete && others.complete) phases.set('Running', Math.max(0, total.count - others.items.length));
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
                    {hasMetrics ? <NodeUsage name={n.metadata.name} cpu={cpu} mem={mem} /> : <div class="muted small">no metrics API</div>}
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
