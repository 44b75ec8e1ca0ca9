// The relations picture: how an object relates to others, drawn as nested boxes (left to right)
// from ownerReferences and selectors, and live (each list here is watched).
import { Resource, resourceForKind, selectorString, matches } from '../api';
import { useListWatch } from '../hooks';
import { objHref } from '../state';

type Box = { kind: string; name: string; href?: string; status?: string; tone?: string; note?: string; children?: Box[] };

function BoxView({ b }: { b: Box }) {
  const inner = (
    <>
      <span class="rel-kind">{b.kind}</span> <span class="rel-name">{b.name}</span>
      {b.status && <span class={`pill ${b.tone ?? ''}`}>{b.status}</span>}
      {b.note && <span class="muted small rel-note">{b.note}</span>}
    </>
  );
  return (
    <div class="rel-node">
      {b.href ? (
        <a class={`rel-box tone-${b.tone ?? 'none'}`} href={b.href} data-kind={b.kind} data-name={b.name} data-status={b.status ?? ''}>
          {inner}
        </a>
      ) : (
        <div class={`rel-box tone-${b.tone ?? 'none'}`} data-kind={b.kind} data-name={b.name} data-status={b.status ?? ''}>
          {inner}
        </div>
      )}
      {b.children && b.children.length > 0 && (
        <div class="rel-children">
          {b.children.map((c) => (
            <BoxView key={c.kind + c.name} b={c} />
          ))}
        </div>
      )}
    </div>
  );
}

function podBox(p: any): Box {
  const ready = (p.status?.containerStatuses ?? []).every((c: any) => c.ready) && (p.status?.containerStatuses ?? []).length > 0;
  const deleting = !!p.metadata.deletionTimestamp;
  const phase = deleting ? 'Terminating' : p.status?.phase ?? 'Pending';
  return {
    kind: 'Pod',
    name: p.metadata.name,
    href: objHref('', 'v1', 'pods', p.metadata.namespace, p.metadata.name),
    status: phase === 'Running' && !ready ? 'Running (not ready)' : phase,
    tone: deleting ? 'warn' : phase === 'Running' && ready ? 'ok' : phase === 'Failed' ? 'bad' : phase === 'Succeeded' ? 'none' : 'warn',
    children: p.spec?.nodeName ? [{ kind: 'Node', name: p.spec.nodeName, href: objHref('', 'v1', 'nodes', '', p.spec.nodeName) }] : [{ kind: 'Node', name: '(not scheduled)', tone: 'warn' }],
  };
}

const ownedBy = (o: any, uid: string) => (o.metadata?.ownerReferences ?? []).some((r: any) => r.uid === uid);
const byName = (a: any, b: any) => a.metadata.name.localeCompare(b.metadata.name);

function OwnersUp({ resources, obj }: { resources: Resource[]; obj: any }) {
  const owners: any[] = obj.metadata?.ownerReferences ?? [];
  if (!owners.length) return null;
  return (
    <span class="owners">
      owned by{' '}
      {owners.map((o) => {
        const r = resourceForKind(resources, o.apiVersion, o.kind);
        return (
          <a key={o.uid} class="pill" href={r ? objHref(r.group, r.version, r.name, obj.metadata.namespace, o.name) : undefined}>
            {o.kind} {o.name}
          </a>
        );
      })}
    </span>
  );
}

function DeploymentRel({ obj }: { obj: any }) {
  const ns = obj.metadata.namespace;
  const sel = selectorString(obj.spec?.selector?.matchLabels);
  const rss = useListWatch(`/apis/apps/v1/namespaces/${ns}/replicasets`, { labelSelector: sel });
  const pods = useListWatch(`/api/v1/namespaces/${ns}/pods`, { labelSelector: sel });
  const rev = obj.metadata.annotations?.['deployment.kubernetes.io/revision'];
  const mine = rss.items.filter((r) => ownedBy(r, obj.metadata.uid)).sort((a, b) => Number(b.metadata.annotations?.['deployment.kubernetes.io/revision'] ?? 0) - Number(a.metadata.annotations?.['deployment.kubernetes.io/revision'] ?? 0));
  const root: Box = {
    kind: 'Deployment',
    name: obj.metadata.name,
    status: `${obj.status?.updatedReplicas ?? 0} updated, ${obj.status?.readyReplicas ?? 0}/${obj.spec?.replicas ?? 0} ready`,
    tone: (obj.status?.readyReplicas ?? 0) === obj.spec?.replicas && (obj.status?.updatedReplicas ?? 0) === obj.spec?.replicas ? 'ok' : 'warn',
    children: mine
      .filter((r) => (r.spec?.replicas ?? 0) > 0 || (r.status?.replicas ?? 0) > 0 || r.metadata.annotations?.['deployment.kubernetes.io/revision'] === rev)
      .map((r) => {
        const isNew = r.metadata.annotations?.['deployment.kubernetes.io/revision'] === rev;
        return {
          kind: 'ReplicaSet',
          name: r.metadata.name,
          href: objHref('apps', 'v1', 'replicasets', ns, r.metadata.name),
          status: `${isNew ? 'new' : 'old'} · ${r.status?.readyReplicas ?? 0}/${r.spec?.replicas ?? 0}`,
          tone: isNew ? 'ok' : 'old',
          note: `revision ${r.metadata.annotations?.['deployment.kubernetes.io/revision'] ?? '?'}`,
          children: pods.items.filter((p) => ownedBy(p, r.metadata.uid)).sort(byName).map(podBox),
        };
      }),
  };
  const hidden = mine.length - (root.children?.length ?? 0);
  return (
    <>
      <BoxView b={root} />
      {hidden > 0 && <p class="muted small">{hidden} older ReplicaSet(s) scaled to 0 kept for rollback.</p>}
    </>
  );
}

function PodOwnerRel({ obj, kind }: { obj: any; kind: string }) {
  const ns = obj.metadata.namespace;
  const sel = selectorString(obj.spec?.selector?.matchLabels);
  const pods = useListWatch(`/api/v1/namespaces/${ns}/pods`, { labelSelector: sel || undefined });
  const status =
    kind === 'Job'
      ? `${obj.status?.succeeded ?? 0} succeeded, ${obj.status?.active ?? 0} active, ${obj.status?.failed ?? 0} failed`
      : kind === 'DaemonSet'
        ? `${obj.status?.numberReady ?? 0}/${obj.status?.desiredNumberScheduled ?? 0} ready`
        : `${obj.status?.readyReplicas ?? 0}/${obj.spec?.replicas ?? 0} ready`;
  return <BoxView b={{ kind, name: obj.metadata.name, status, children: pods.items.filter((p) => ownedBy(p, obj.metadata.uid)).sort(byName).map(podBox) }} />;
}

function ServiceRel({ obj }: { obj: any }) {
  const ns = obj.metadata.namespace;
  const slices = useListWatch(`/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`, { labelSelector: `kubernetes.io/service-name=${obj.metadata.name}` });
  const pods = useListWatch(`/api/v1/namespaces/${ns}/pods`, { labelSelector: selectorString(obj.spec?.selector) || undefined });
  const podByName = new Map(pods.items.map((p) => [p.metadata.name, p]));
  const root: Box = {
    kind: 'Service',
    name: obj.metadata.name,
    status: `${obj.spec?.type ?? 'ClusterIP'} ${obj.spec?.clusterIP ?? ''}`,
    children: slices.items.sort(byName).map((s) => ({
      kind: 'EndpointSlice',
      name: s.metadata.name,
      href: objHref('discovery.k8s.io', 'v1', 'endpointslices', ns, s.metadata.name),
      status: `${(s.endpoints ?? []).filter((e: any) => e.conditions?.ready !== false).length}/${(s.endpoints ?? []).length} ready`,
      children: (s.endpoints ?? []).map((e: any) => {
        const p = e.targetRef?.kind === 'Pod' ? podByName.get(e.targetRef.name) : undefined;
        if (p) return { ...podBox(p), note: (e.addresses ?? []).join(' ') };
        return { kind: e.targetRef?.kind ?? 'Endpoint', name: e.targetRef?.name ?? (e.addresses ?? []).join(' '), status: e.conditions?.ready === false ? 'not ready' : 'ready', tone: e.conditions?.ready === false ? 'warn' : 'ok' };
      }),
    })),
  };
  const unsliced = pods.items.filter((p) => matches(obj.spec?.selector, p.metadata.labels) && !slices.items.some((s) => (s.endpoints ?? []).some((e: any) => e.targetRef?.name === p.metadata.name)));
  return (
    <>
      <BoxView b={root} />
      {unsliced.length > 0 && <p class="muted small">Selected but not (yet) endpoints: {unsliced.map((p) => p.metadata.name).join(', ')}</p>}
    </>
  );
}

function IngressRel({ obj }: { obj: any }) {
  const ns = obj.metadata.namespace;
  const svcs = useListWatch(`/api/v1/namespaces/${ns}/services`);
  const backends: { host: string; path: string; svc: string; port: string }[] = [];
  const def = obj.spec?.defaultBackend?.service;
  if (def) backends.push({ host: '*', path: '(default)', svc: def.name, port: String(def.port?.number ?? def.port?.name ?? '') });
  for (const rule of obj.spec?.rules ?? [])
    for (const p of rule.http?.paths ?? [])
      if (p.backend?.service) backends.push({ host: rule.host ?? '*', path: p.path ?? '/', svc: p.backend.service.name, port: String(p.backend.service.port?.number ?? p.backend.service.port?.name ?? '') });
  const exists = new Set(svcs.items.map((s) => s.metadata.name));
  return (
    <BoxView
      b={{
        kind: 'Ingress',
        name: obj.metadata.name,
        status: obj.spec?.ingressClassName,
        children: backends.map((b) => ({
          kind: 'Service',
          name: b.svc,
          href: objHref('', 'v1', 'services', ns, b.svc),
          note: `${b.host}${b.path} → :${b.port}`,
          status: exists.has(b.svc) ? undefined : 'missing',
          tone: exists.has(b.svc) ? 'ok' : 'bad',
        })),
      }}
    />
  );
}

function NodeRel({ obj }: { obj: any }) {
  const pods = useListWatch('/api/v1/pods', { fieldSelector: `spec.nodeName=${obj.metadata.name}` });
  const shown = pods.items.sort(byName).slice(0, 200);
  return (
    <BoxView
      b={{
        kind: 'Node',
        name: obj.metadata.name,
        status: `${pods.items.length} pods`,
        children: shown.map((p) => ({ ...podBox(p), children: [], note: p.metadata.namespace })),
      }}
    />
  );
}

function PodRel({ resources, obj }: { resources: Resource[]; obj: any }) {
  return (
    <>
      <OwnersUp resources={resources} obj={obj} />
      <BoxView b={podBox(obj)} />
    </>
  );
}

export function Relations({ resources, res, obj }: { resources: Resource[]; res: Resource; obj: any }) {
  let pic = null;
  if (res.name === 'deployments' && res.group === 'apps') pic = <DeploymentRel obj={obj} />;
  else if (res.group === 'apps' && ['replicasets', 'statefulsets', 'daemonsets'].includes(res.name)) pic = <PodOwnerRel obj={obj} kind={res.kind} />;
  else if (res.group === 'batch' && res.name === 'jobs') pic = <PodOwnerRel obj={obj} kind="Job" />;
  else if (res.group === '' && res.name === 'services') pic = <ServiceRel obj={obj} />;
  else if (res.name === 'ingresses') pic = <IngressRel obj={obj} />;
  else if (res.group === '' && res.name === 'nodes') pic = <NodeRel obj={obj} />;
  else if (res.group === '' && res.name === 'pods') pic = <PodRel resources={resources} obj={obj} />;
  if (!pic) return null;
  return (
    <section class="relations" data-testid="relations">
      <h2>Relations</h2>
      {res.name !== 'pods' && <OwnersUp resources={resources} obj={obj} />}
      <div class="rel-scroll">{pic}</div>
    </section>
  );
}
