// CPU and memory over the last hour. The dashboard server keeps the hour (it samples the metrics
// API itself, `src/history.rs`), so a page that opens draws the whole hour at once, then asks
// only for the samples after its last one, every resolution. Nodes come in one request for all;
// a pod by itself. The server answers as the metrics API would the viewer: without the right to
// read those metrics there is no history (null).
import { useEffect, useState } from 'preact/hooks';
import { getJSON } from './api';

export type Sample = { t: number; cpu: number; mem: number }; // cores, bytes
const KEEP_MS = 60 * 60 * 1000;
const HISTORY = '/dashboard/api/history/';

const series = new Map<string, Sample[]>(); // "node/NAME" or "pod/NS/NAME"
const denied = new Set<string>(); // keys the viewer may not read ("node/" for every node)
const active = new Map<string, number>(); // key -> listeners
const listeners = new Set<() => void>();
let timer: number | undefined;
let pollMs = 15000;
let nodesSince = 0; // the last node sample's time
let polling = false;

function append(key: string, points: [number, number, number][]) {
  const s = series.get(key) ?? [];
  for (const [t, cpu, mem] of points) if (!s.length || t > s[s.length - 1].t) s.push({ t, cpu, mem });
  const from = Date.now() - KEEP_MS;
  while (s.length && s[0].t < from) s.shift();
  series.set(key, s);
}

function since(key: string) {
  const s = series.get(key);
  return s?.length ? s[s.length - 1].t : 0;
}

async function poll() {
  if (polling) return;
  polling = true;
  const keys = [...active.keys()];
  const jobs: Promise<void>[] = [];
  const remember = (r: any) => r?.resolutionSeconds > 0 && (pollMs = Math.max(1000, Math.min(60000, r.resolutionSeconds * 1000)));
  const refused = (key: string) => (e: any) => {
    if (e?.code === 401 || e?.code === 403) denied.add(key);
  };
  if (keys.some((k) => k.startsWith('node/')) && !denied.has('node/')) {
    jobs.push(
      getJSON(`${HISTORY}nodes?since=${nodesSince}`)
        .then((r) => {
          remember(r);
          for (const [name, points] of Object.entries<any>(r.items ?? {})) {
            append(`node/${name}`, points);
            nodesSince = Math.max(nodesSince, since(`node/${name}`));
          }
        })
        .catch(refused('node/')),
    );
  }
  for (const key of keys.filter((k) => k.startsWith('pod/') && !denied.has(k))) {
    const [, ns, name] = key.split('/');
    const path = `${HISTORY}namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}?since=${since(key)}`;
    jobs.push(
      getJSON(path)
        .then((r) => {
          remember(r);
          append(key, r.points ?? []);
        })
        .catch(refused(key)),
    );
  }
  await Promise.all(jobs);
  polling = false;
  for (const l of listeners) l();
  clearTimeout(timer);
  if (active.size) timer = window.setTimeout(poll, pollMs);
}

/** The samples of `key` (re-rendered as new ones arrive); null when the viewer may not read them. */
export function useUsage(key: string): Sample[] | null {
  const [, tick] = useState(0);
  useEffect(() => {
    const l = () => tick((n) => n + 1);
    listeners.add(l);
    const fresh = !active.has(key) && !series.has(key);
    active.set(key, (active.get(key) ?? 0) + 1);
    // A key seen for the first time is fetched at once (its hour), the rest on the next poll.
    if (fresh || active.size === 1) {
      clearTimeout(timer);
      timer = window.setTimeout(poll, 0);
    }
    return () => {
      listeners.delete(l);
      const n = (active.get(key) ?? 1) - 1;
      if (n > 0) active.set(key, n);
      else active.delete(key);
      if (active.size === 0) clearTimeout(timer);
    };
  }, [key]);
  if (denied.has(key) || (key.startsWith('node/') && denied.has('node/'))) return null;
  return series.get(key) ?? [];
}
