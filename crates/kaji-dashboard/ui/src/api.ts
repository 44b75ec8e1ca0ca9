// The API client: every request goes same-origin to /api or /apis with the viewer's own bearer
// token, so RBAC decides what the page may show and do. A 401 sends the viewer back to the login
// page; other errors surface as ApiError carrying the server's Status.

export type Resource = {
  group: string;
  version: string;
  name: string; // plural
  kind: string;
  namespaced: boolean;
  verbs: string[];
  shortNames: string[];
  subresources: string[];
};

export type Status = {
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes?: { field?: string; message?: string; reason?: string }[] };
};

export class ApiError extends Error {
  constructor(public code: number, public status: Status) {
    super(status.message || `HTTP ${code}`);
  }
}

const TOKEN_KEY = 'kaji-dashboard-token';
let unauthorized: (message: string) => void = () => {};

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}
export function setToken(t: string | null) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}
export function onUnauthorized(f: (message: string) => void) {
  unauthorized = f;
}

export const TABLE = 'application/json;as=Table;v=v1;g=meta.k8s.io, application/json';
export const METADATA = 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io, application/json';

export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const t = token();
  if (t) headers.set('Authorization', 'Bearer ' + t);
  if (!headers.has('Accept')) headers.set('Accept', 'application/json');
  let r: Response;
  // A read that fails before any answer (the browser reports a network change, say
  // ERR_NETWORK_CHANGED when an interface comes or goes on this machine) is tried again four
  // times after growing pauses (2.5 s in all); a write is not, since it may have reached the server.
  const method = (init.method ?? 'GET').toUpperCase();
  const tries = method === 'GET' || method === 'HEAD' ? 5 : 1;
  for (let attempt = 1; ; attempt++) {
    try {
      r = await fetch(path, { ...init, headers });
      break;
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      if (attempt >= tries) {
        throw new ApiError(0, { message: 'The API server cannot be reached: ' + (e as Error).message });
      }
      await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
      if (init.signal?.aborted) throw new DOMException('The request was aborted', 'AbortError');
    }
  }
  if (!r.ok) {
    const text = await r.text().catch(() => '');
    // The page went away meanwhile (its requests aborted): nothing to report.
    if (init.signal?.aborted) throw new DOMException('The request was aborted', 'AbortError');
    let status: Status;
    try {
      status = JSON.parse(text);
    } catch {
      status = { message: text.trim() || r.statusText || `HTTP ${r.status}` };
    }
    status.code ??= r.status;
    if (r.status === 401) unauthorized(status.message || 'Unauthorized');
    throw new ApiError(r.status, status);
  }
  return r;
}

export async function getJSON<T = any>(path: string, accept?: string, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const r = await request(path, { headers: accept ? { Accept: accept } : {}, signal });
    try {
      return await r.json();
    } catch (e) {
      // A body cut by the network (a TypeError, not a SyntaxError) is read again, as above.
      if (!(e instanceof TypeError) || attempt >= 3 || signal?.aborted) throw e;
      await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
    }
  }
}

export async function send<T = any>(
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<T> {
  const r = await request(path, {
    method,
    headers: { 'Content-Type': contentType },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return text ? JSON.parse(text) : (undefined as T);
}

/** The URL of a collection or object: `/api/v1/namespaces/ns/pods/name/log`. */
export function resPath(r: Pick<Resource, 'group' | 'version' | 'name' | 'namespaced'>, ns?: string, name?: string, sub?: string) {
  let p = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  if (r.namespaced && ns) p += `/namespaces/${encodeURIComponent(ns)}`;
  p += `/${r.name}`;
  if (name) p += `/${encodeURIComponent(name)}`;
  if (sub) p += `/${sub}`;
  return p;
}

export function query(params: Record<string, string | number | boolean | undefined | null>) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? '?' + s : '';
}

// ---- Discovery -------------------------------------------------------------------------------

let discovery: Promise<Resource[]> | null = null;

const AGGREGATED = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json';

/** Aggregated discovery (one request each for /api and /apis): the first version is preferred. */
function fromAggregated(list: any): Resource[] {
  const out: Resource[] = [];
  for (const g of list.items ?? []) {
    const v = g.versions?.[0];
    for (const r of v?.resources ?? []) {
      out.push({
        group: g.metadata?.name ?? '',
        version: v.version,
        name: r.resource,
        kind: r.responseKind?.kind ?? r.resource,
        namespaced: r.scope === 'Namespaced',
        verbs: r.verbs ?? [],
        shortNames: r.shortNames ?? [],
        subresources: (r.subresources ?? []).map((s: any) => s.subresource),
      });
    }
  }
  return out;
}

/** Every kind the server offers: aggregated discovery, or the legacy walk of each group version. */
export function discover(refresh = false): Promise<Resource[]> {
  if (discovery && !refresh) return discovery;
  discovery = (async () => {
    const [core, groups] = await Promise.all([getJSON('/api', AGGREGATED), getJSON('/apis', AGGREGATED)]);
    if (core.kind === 'APIGroupDiscoveryList' && groups.kind === 'APIGroupDiscoveryList') return [...fromAggregated(core), ...fromAggregated(groups)];
    const versions: { group: string; version: string }[] = [];
    for (const v of core.versions ?? []) versions.push({ group: '', version: v });
    for (const g of groups.groups ?? []) {
      const v = g.preferredVersion?.version ?? g.versions?.[0]?.version;
      if (v) versions.push({ group: g.name, version: v });
    }
    const lists = await Promise.all(
      versions.map(({ group, version }) =>
        getJSON(group ? `/apis/${group}/${version}` : `/api/${version}`)
          .then((l) => ({ group, version, l }))
          .catch(() => null),
      ),
    );
    const out: Resource[] = [];
    for (const x of lists) {
      if (!x) continue;
      const subs = new Map<string, string[]>();
      for (const r of x.l.resources ?? []) {
        const [base, sub] = String(r.name).split('/');
        if (sub) subs.set(base, [...(subs.get(base) ?? []), sub]);
      }
      for (const r of x.l.resources ?? []) {
        if (String(r.name).includes('/')) continue;
        out.push({
          group: x.group,
          version: x.version,
          name: r.name,
          kind: r.kind,
          namespaced: !!r.namespaced,
          verbs: r.verbs ?? [],
          shortNames: r.shortNames ?? [],
          subresources: subs.get(r.name) ?? [],
        });
      }
    }
    return out;
  })();
  discovery.catch(() => (discovery = null));
  return discovery;
}

export function findResource(all: Resource[], group: string, name: string): Resource | undefined {
  return all.find((r) => r.group === group && r.name === name);
}

/** The resource for an apiVersion + kind (for ownerReferences and Events' involvedObject). */
export function resourceForKind(all: Resource[], apiVersion: string, kind: string): Resource | undefined {
  const [g, v] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  return all.find((r) => r.group === g && r.kind === kind && r.version === v) ?? all.find((r) => r.group === g && r.kind === kind);
}

// ---- Watch -----------------------------------------------------------------------------------

export type WatchEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'; object: any };

/** Reads a streamed body as JSON lines (a watch, or a followed log when `json` is false). */
export async function readLines(r: Response, onLine: (line: string) => void) {
  const reader = r.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      onLine(line);
    }
  }
  if (buf) onLine(buf);
}

export type LiveState = 'loading' | 'live' | 'reconnecting' | 'error';

export type ListWatchOptions = {
  path: string; // collection URL without query
  params?: Record<string, string | undefined>;
  accept?: string; // TABLE for rows, plain JSON otherwise
  pageSize?: number;
  /** Count the objects instead of keeping them (from remainingItemCount when the server gives it). */
  count?: boolean;
  onChange: () => void;
  onState: (s: LiveState, err?: ApiError) => void;
};

/**
 * A reflector: lists (in pages of `limit`, following `continue`), then watches from the list's
 * resourceVersion; re-watches when the server ends the stream, reconnects with backoff when it
 * drops, re-lists on 410 Gone. `items` maps namespace/name to the object (or Table row).
 */
export class ListWatch {
  items = new Map<string, any>();
  /** With `count`: how many objects the list and the watch's ADDED and DELETED events make. */
  count = 0;
  columns: any[] = [];
  loaded = 0;
  complete = false;
  private abort = new AbortController();
  private pending = false;
  private stopped = false;

  constructor(private o: ListWatchOptions) {
    this.run();
  }

  stop() {
    this.stopped = true;
    this.abort.abort();
  }

  private key(x: any): string {
    // Table rows carry the object's metadata in `object`; a server without Tables sends objects.
    const m = x.object?.metadata ?? x.metadata;
    return `${m?.namespace ?? ''}/${m?.name ?? ''}`;
  }

  private changed() {
    if (this.pending) return;
    this.pending = true;
    setTimeout(() => {
      this.pending = false;
      if (!this.stopped) this.o.onChange();
    }, 60);
  }

  private async list(): Promise<string> {
    let cont = '';
    let rv = '';
    const fresh = new Map<string, any>();
    let counted = 0;
    this.complete = false;
    do {
      // A small first page paints at once; bigger ones fill in behind it.
      const url = this.o.path + query({ ...this.o.params, limit: cont ? 1000 : (this.o.pageSize ?? 100), continue: cont });
      const l = await getJSON(url, this.o.accept, this.abort.signal);
      if (!rv) rv = l.metadata?.resourceVersion ?? '';
      if (l.columnDefinitions) this.columns = l.columnDefinitions;
      if (this.o.count) counted += (l.rows ?? l.items ?? []).length;
      else for (const x of l.rows ?? l.items ?? []) fresh.set(this.key(x), x);
      cont = l.metadata?.continue ?? '';
      // The server says how many are left (a list without selectors): counted without reading them.
      if (this.o.count && cont && typeof l.metadata?.remainingItemCount === 'number') {
        counted += l.metadata.remainingItemCount;
        cont = '';
      }
      // Pages add up as they come (a re-list shows the old count until it ends).
      if (this.o.count) this.count = Math.max(this.count, counted);
      // Show the first page at once; later pages fill in behind it.
      if (this.items.size === 0 || !cont) this.items = fresh;
      this.loaded = fresh.size;
      this.o.onState('live');
      this.changed();
    } while (cont && !this.stopped);
    this.items = fresh;
    this.count = counted;
    this.complete = true;
    this.changed();
    return rv;
  }

  private async run() {
    let rv = '';
    let backoff = 500;
    while (!this.stopped) {
      try {
        if (!rv) rv = await this.list();
        const url = this.o.path + query({ ...this.o.params, watch: 1, resourceVersion: rv, allowWatchBookmarks: true });
        const r = await request(url, { headers: { Accept: this.o.accept ?? 'application/json' }, signal: this.abort.signal });
        this.o.onState('live');
        backoff = 500;
        let gone = false;
        await readLines(r, (line) => {
          if (!line.trim()) return;
          let e: WatchEvent;
          try {
            e = JSON.parse(line);
          } catch {
            return;
          }
          if (e.type === 'ERROR') {
            if (e.object?.code === 410) gone = true;
            return;
          }
          const o = e.object;
          const rows = o?.kind === 'Table' ? o.rows ?? [] : [o];
          if (o?.kind === 'Table' && o.columnDefinitions?.length && !this.columns.length) this.columns = o.columnDefinitions;
          const newRv = o?.metadata?.resourceVersion ?? rows[0]?.object?.metadata?.resourceVersion;
          if (newRv) rv = newRv;
          if (e.type === 'BOOKMARK') return;
          if (this.o.count) {
            this.count += e.type === 'ADDED' ? 1 : e.type === 'DELETED' ? -1 : 0;
            this.changed();
            return;
          }
          for (const x of rows) {
            if (e.type === 'DELETED') this.items.delete(this.key(x));
            else this.items.set(this.key(x), x);
          }
          this.changed();
        });
        if (gone) rv = '';
        // The server ended the watch (its timeout): watch again from where we are.
      } catch (e) {
        if (this.stopped) return;
        const err = e as ApiError;
        if (err.code === 410) {
          rv = '';
          continue;
        }
        if (err.code === 401 || err.code === 403 || err.code === 404) {
          this.o.onState('error', err);
          return;
        }
        this.o.onState('reconnecting', err instanceof ApiError ? err : new ApiError(0, { message: String(e) }));
        await new Promise((res) => setTimeout(res, backoff));
        backoff = Math.min(backoff * 2, 10000);
      }
    }
  }
}

// ---- Small helpers ---------------------------------------------------------------------------

export function age(ts?: string): string {
  if (!ts) return '';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

export function base64url(s: string): string {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function selectorString(sel?: Record<string, string>): string {
  return Object.entries(sel ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

export function matches(sel: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!sel || Object.keys(sel).length === 0) return false;
  return Object.entries(sel).every(([k, v]) => labels?.[k] === v);
}
