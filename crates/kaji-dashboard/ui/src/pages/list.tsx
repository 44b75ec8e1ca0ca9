import { useEffect, useRef, useState } from 'preact/hooks';
import { age, findResource, Resource, resPath, TABLE } from '../api';
import { ErrorBox, LiveDot } from '../components';
import { useListWatch, useTicker } from '../hooks';
import { go, objHref, useStore } from '../state';

const ROW = 32; // px, fixed so that only the visible rows are rendered

function cell(v: unknown, col: any): string {
  if (v === null || v === undefined) return '<none>';
  if (col?.type === 'date' && typeof v === 'string') return v;
  if (Array.isArray(v)) return v.join(',');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** A generic list of any kind: columns from the server's Table, live from a Table watch. */
export function ListPage({ resources, group, version, plural, params }: { resources: Resource[]; group: string; version: string; plural: string; params: URLSearchParams }) {
  const s = useStore();
  useTicker(10000);
  const res = findResource(resources, group, plural) ?? { group, version, name: plural, kind: plural, namespaced: true, verbs: [], shortNames: [], subresources: [] };
  const ns = res.namespaced ? s.namespace : '';
  const [labelSel, setLabelSel] = useState(params.get('l') ?? '');
  const [fieldSel, setFieldSel] = useState(params.get('fs') ?? '');
  const [filter, setFilter] = useState('');
  const lw = useListWatch(resPath(res, ns), { labelSelector: labelSel || undefined, fieldSelector: fieldSel || undefined }, TABLE);
  const [scroll, setScroll] = useState(0);
  const [height, setHeight] = useState(600);
  const [sel, setSel] = useState(0);
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // Without a Table from the server (an aggregated API may not make one): name and age.
  const fallback = lw.columns.length === 0;
  const cols = fallback ? [{ name: 'Name' }, { name: 'Age' }] : lw.columns.filter((c: any) => c.priority === 0);
  const cellOf = (r: any, c: any) => {
    if (!fallback) return cell(r.cells?.[lw.columns.indexOf(c)], c);
    const m = r.object?.metadata ?? r.metadata ?? {};
    return c.name === 'Name' ? m.name : age(m.creationTimestamp);
  };
  const nameIdx = cols.findIndex((c: any) => c.name === 'Name');
  const f = filter.toLowerCase();
  const rows = lw.items
    .filter((r) => !f || `${(r.object ?? r).metadata?.namespace}/${(r.object ?? r).metadata?.name}`.toLowerCase().includes(f))
    .sort((a, b) => {
      const am = (a.object ?? a).metadata ?? {};
      const bm = (b.object ?? b).metadata ?? {};
      return (am.namespace ?? '').localeCompare(bm.namespace ?? '') || (am.name ?? '').localeCompare(bm.name ?? '');
    });
  const first = Math.max(0, Math.floor(scroll / ROW) - 10);
  const last = Math.min(rows.length, Math.ceil((scroll + height) / ROW) + 10);
  const showNs = res.namespaced && !ns;

  const open = (r: any) => {
    const m = (r.object ?? r).metadata ?? {};
    location.hash = objHref(res.group, res.version, res.name, m.namespace, m.name);
  };
  const onKey = (e: KeyboardEvent) => {
    if ((e.target as HTMLElement).tagName === 'INPUT') return;
    let n = sel;
    if (e.key === 'ArrowDown' || e.key === 'j') n = Math.min(rows.length - 1, sel + 1);
    else if (e.key === 'ArrowUp' || e.key === 'k') n = Math.max(0, sel - 1);
    else if (e.key === 'Enter' && rows[sel]) return open(rows[sel]);
    else return;
    e.preventDefault();
    setSel(n);
    const el = box.current!;
    if (n * ROW < el.scrollTop) el.scrollTop = n * ROW;
    if ((n + 1) * ROW > el.scrollTop + el.clientHeight - ROW) el.scrollTop = (n + 2) * ROW - el.clientHeight;
  };

  return (
    <div class="list" data-testid="list" data-kind={res.kind}>
      <div class="list-head">
        <h1>
          {res.kind}
          {res.group && <span class="muted small"> {res.group}</span>} <span class="count" data-testid="count">{rows.length}{lw.complete ? '' : '+'}</span>
        </h1>
        <LiveDot state={lw.state} error={lw.error} />
      </div>
      <div class="filters">
        <input type="search" placeholder="Filter by name" aria-label="Filter by name" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const fd = new FormData(e.target as HTMLFormElement);
            setLabelSel(String(fd.get('l') ?? '').trim());
            setFieldSel(String(fd.get('fs') ?? '').trim());
          }}
        >
          <input name="l" placeholder="Label selector, e.g. app=web" aria-label="Label selector" defaultValue={labelSel} data-testid="label-selector" />
          <input name="fs" placeholder="Field selector" aria-label="Field selector" defaultValue={fieldSel} />
          <button type="submit">Apply</button>
        </form>
      </div>
      {lw.error && lw.state === 'error' ? (
        <ErrorBox error={lw.error} />
      ) : (
        <div class="vlist" ref={box} tabIndex={0} onScroll={(e) => setScroll((e.target as HTMLElement).scrollTop)} onKeyDown={onKey} aria-label={`${res.kind} list`}>
          <table class="grid">
            <thead>
              <tr>
                {showNs && <th>Namespace</th>}
                {cols.map((c: any) => (
                  <th key={c.name} title={c.description}>
                    {c.name}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              <tr style={{ height: `${first * ROW}px` }} aria-hidden="true" />
              {rows.slice(first, last).map((r, i) => {
                const m = (r.object ?? r).metadata ?? {};
                const idx = first + i;
                return (
                  <tr key={m.uid ?? m.name} class={idx === sel ? 'sel' : ''} style={{ height: `${ROW}px` }} onClick={() => open(r)} data-name={m.name}>
                    {showNs && <td>{m.namespace}</td>}
                    {cols.map((c: any, ci: number) => (
                      <td key={c.name}>
                        {ci === nameIdx ? (
                          <a href={objHref(res.group, res.version, res.name, m.namespace, m.name)} onClick={(e) => e.stopPropagation()}>
                            {cellOf(r, c)}
                          </a>
                        ) : (
                          cellOf(r, c)
                        )}
                      </td>
                    ))}
                  </tr>
                );
              })}
              <tr style={{ height: `${(rows.length - last) * ROW}px` }} aria-hidden="true" />
            </tbody>
          </table>
          {lw.state !== 'loading' && rows.length === 0 && <p class="muted empty">No {res.name} {ns ? `in namespace ${ns}` : ''}.</p>}
        </div>
      )}
    </div>
  );
}

export function goList(r: Resource) {
  go(`r/${r.group || 'core'}/${r.version}/${r.name}`);
}
