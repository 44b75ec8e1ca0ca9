import { useEffect, useState } from 'preact/hooks';
import { getJSON, METADATA, query, Resource, resPath } from '../api';
import { listHref, objHref, useStore } from '../state';

// Kinds searched by name (one metadata-only list each, in the current namespace).
const SEARCHED = ['pods', 'deployments', 'replicasets', 'statefulsets', 'daemonsets', 'jobs', 'cronjobs', 'services', 'ingresses', 'configmaps', 'secrets', 'persistentvolumeclaims', 'serviceaccounts', 'nodes', 'namespaces'];

/** Search across kinds: kinds whose name matches, then objects whose name contains the text. */
export function SearchPage({ resources, q }: { resources: Resource[]; q: string }) {
  const s = useStore();
  const [hits, setHits] = useState<{ r: Resource; m: any }[] | null>(null);
  const needle = q.trim().toLowerCase();
  const kinds = needle
    ? resources.filter((r) => r.verbs.includes('list') && (r.name.startsWith(needle) || r.kind.toLowerCase().startsWith(needle) || r.shortNames.includes(needle)))
    : [];
  useEffect(() => {
    if (!needle) return setHits([]);
    setHits(null);
    const ac = new AbortController();
    const rs = resources.filter((r) => SEARCHED.includes(r.name) && r.verbs.includes('list'));
    Promise.all(
      rs.map((r) =>
        getJSON(resPath(r, r.namespaced ? s.namespace : '') + query({ limit: 2000 }), METADATA, ac.signal)
          .then((l) => (l.items ?? []).filter((x: any) => x.metadata?.name?.toLowerCase().includes(needle)).map((m: any) => ({ r, m })))
          .catch(() => []),
      ),
    ).then((all) => !ac.signal.aborted && setHits(all.flat().slice(0, 500)));
    return () => ac.abort();
  }, [needle, s.namespace]);
  return (
    <div class="search-page" data-testid="search-results">
      <h1>Search “{q}”</h1>
      {kinds.length > 0 && (
        <p>
          Kinds:{' '}
          {kinds.map((r) => (
            <a class="pill" key={r.group + r.name} href={listHref(r.group, r.version, r.name)}>
              {r.kind}
            </a>
          ))}
        </p>
      )}
      {hits === null ? (
        <p class="muted">Searching…</p>
      ) : hits.length === 0 ? (
        <p class="muted">No object named like “{q}” {s.namespace ? `in namespace ${s.namespace}` : ''}.</p>
      ) : (
        <ul class="hits">
          {hits.map(({ r, m }) => (
            <li key={m.metadata.uid}>
              <a href={objHref(r.group, r.version, r.name, m.metadata.namespace, m.metadata.name)}>
                <span class="muted">{r.kind}</span> {m.metadata.namespace ? `${m.metadata.namespace}/` : ''}
                {m.metadata.name}
              </a>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
