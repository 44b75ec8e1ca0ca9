import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { getJSON, onUnauthorized, Resource, send, setToken, token } from './api';
import { useDiscovery, useListWatch } from './hooks';
import { go, listHref, store, update, useRoute, useStore } from './state';
import { Overview } from './pages/overview';
import { ListPage } from './pages/list';
import { DetailPage } from './pages/detail';
import { SearchPage } from './pages/search';
import { ErrorBox, Forbidden } from './components';
import './style.css';

// `kaji dashboard` prints a URL ending in #token=...: take it, keep it for this tab only, and
// drop it from the address bar.
{
  const m = location.hash.match(/^#token=([^&]+)/);
  if (m) {
    setToken(decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search + '#/');
  }
}

onUnauthorized((message) => {
  if (!token()) return; // the first 401 has said it already
  setToken(null);
  update({ loginMessage: `Your session has ended: the server rejected the token (${message}). Log in again.` });
  go('login');
});

function Login() {
  const s = useStore();
  const [t, setT] = useState('');
  const [err, setErr] = useState('');
  const submit = async (e: Event) => {
    e.preventDefault();
    const v = t.trim();
    if (!v) return setErr('Paste a bearer token (kubectl create token NAME, or kaji token create).');
    setToken(v);
    try {
      await getJSON('/api');
      update({ loginMessage: '' });
      go('');
    } catch (x) {
      setToken(null);
      setErr((x as Error).message);
    }
  };
  return (
    <main class="login">
      <form onSubmit={submit} data-testid="login-form">
        <h1>Kaji</h1>
        {(err || s.loginMessage) && (
          <p class="error" role="alert" data-testid="login-message">
            {err || s.loginMessage}
          </p>
        )}
        <label for="token">Bearer token</label>
        <textarea id="token" rows={5} value={t} onInput={(e) => setT((e.target as HTMLTextAreaElement).value)} placeholder="kubectl create token NAME" autofocus />
        <button type="submit">Log in</button>
        <p class="muted">The token stays in this browser tab only. Every request goes to the API server as you.</p>
      </form>
    </main>
  );
}

const FAVOURITES: [string, string, string][] = [
  ['Workloads', '', 'pods'],
  ['Workloads', 'apps', 'deployments'],
  ['Workloads', 'apps', 'replicasets'],
  ['Workloads', 'apps', 'statefulsets'],
  ['Workloads', 'apps', 'daemonsets'],
  ['Workloads', 'batch', 'jobs'],
  ['Workloads', 'batch', 'cronjobs'],
  ['Network', '', 'services'],
  ['Network', 'discovery.k8s.io', 'endpointslices'],
  ['Network', 'networking.k8s.io', 'ingresses'],
  ['Config', '', 'configmaps'],
  ['Config', '', 'secrets'],
  ['Config', '', 'persistentvolumeclaims'],
  ['Cluster', '', 'nodes'],
  ['Cluster', '', 'namespaces'],
  ['Cluster', '', 'events'],
];

function Sidebar({ resources, open, close }: { resources: Resource[] | null; open: boolean; close: () => void }) {
  const [all, setAll] = useState(false);
  const sections = new Map<string, Resource[]>();
  for (const [sec, g, n] of FAVOURITES) {
    const r = resources?.find((x) => x.group === g && x.name === n);
    if (r) sections.set(sec, [...(sections.get(sec) ?? []), r]);
  }
  const others = (resources ?? [])
    .filter((r) => r.verbs.includes('list') && !FAVOURITES.some(([, g, n]) => g === r.group && n === r.name))
    .sort((a, b) => a.kind.localeCompare(b.kind));
  return (
    <nav class={`sidebar ${open ? 'open' : ''}`} onClick={(e) => (e.target as HTMLElement).tagName === 'A' && close()} aria-label="Kinds">
      <a href="#/" class="nav-overview">
        Overview
      </a>
      {[...sections].map(([sec, rs]) => (
        <div key={sec}>
          <h3>{sec}</h3>
          {rs.map((r) => (
            <a key={r.name} href={listHref(r.group, r.version, r.name)}>
              {r.kind}
            </a>
          ))}
        </div>
      ))}
      <h3>
        <button class="link" onClick={() => setAll(!all)} aria-expanded={all}>
          All kinds ({others.length}) {all ? '▾' : '▸'}
        </button>
      </h3>
      {all &&
        others.map((r) => (
          <a key={r.group + r.name} href={listHref(r.group, r.version, r.name)} title={`${r.name}.${r.group || 'core'}`}>
            {r.kind} <span class="muted">{r.group}</span>
          </a>
        ))}
    </nav>
  );
}

function NamespacePicker() {
  const s = useStore();
  const ns = useListWatch('/api/v1/namespaces', {}, 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io');
  const names = ns.items.map((x) => x.metadata?.name as string).sort();
  if (ns.error) {
    return (
      <input
        class="ns"
        aria-label="Namespace"
        value={s.namespace}
        onChange={(e) => update({ namespace: (e.target as HTMLInputElement).value.trim() })}
        placeholder="namespace"
      />
    );
  }
  if (s.namespace && !names.includes(s.namespace)) names.unshift(s.namespace);
  return (
    <select class="ns" aria-label="Namespace" data-testid="namespace" value={s.namespace} onChange={(e) => update({ namespace: (e.target as HTMLSelectElement).value })}>
      <option value="">All namespaces</option>
      {names.map((n) => (
        <option key={n} value={n}>
          {n}
        </option>
      ))}
    </select>
  );
}

function Shell() {
  const route = useRoute();
  const s = useStore();
  const { resources, error } = useDiscovery();
  const [menu, setMenu] = useState(false);
  const searchRef = useRef<HTMLInputElement>(null);
  useEffect(() => {
    send('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' })
      .then((r) => update({ user: r?.status?.userInfo?.username ?? '' }))
      .catch(() => {});
  }, []);
  // Keyboard: "/" focuses search, "g o" overview is too much; Escape leaves the Forbidden page.
  useEffect(() => {
    const k = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.closest('.xterm')) return;
      if (e.key === '/') {
        e.preventDefault();
        searchRef.current?.focus();
      }
      if (e.key === 'Escape' && store.forbidden) update({ forbidden: null });
    };
    addEventListener('keydown', k);
    return () => removeEventListener('keydown', k);
  }, []);
  useEffect(() => update({ forbidden: null }), [location.hash]);

  const [p0, g, v, plural, ns, name, tab] = route.path;
  let page;
  if (s.forbidden) page = <Forbidden message={s.forbidden.message} action={s.forbidden.action} />;
  else if (error) page = <ErrorBox error={error} />;
  else if (!resources) page = <p class="muted">Loading…</p>;
  else if (p0 === 'r' && name) {
    page = <DetailPage key={route.path.join('/')} resources={resources} group={g === 'core' ? '' : g} plural={plural} ns={ns === '_' ? '' : ns} name={name} tab={tab ?? 'summary'} />;
  } else if (p0 === 'r') {
    page = <ListPage key={route.path.join('/') + s.namespace} resources={resources} group={g === 'core' ? '' : g} version={v} plural={plural} params={route.params} />;
  } else if (p0 === 'search') page = <SearchPage resources={resources} q={route.params.get('q') ?? ''} />;
  else page = <Overview resources={resources} />;

  return (
    <div class="shell">
      <header class="top">
        <button class="menu" aria-label="Menu" onClick={() => setMenu(!menu)}>
          ☰
        </button>
        <a href="#/" class="brand">
          Kaji
        </a>
        <NamespacePicker />
        <form
          class="search"
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            go('search?q=' + encodeURIComponent(searchRef.current?.value ?? ''));
          }}
        >
          <input ref={searchRef} type="search" placeholder="Search (/)" aria-label="Search across kinds" data-testid="search" />
        </form>
        <span class="user" data-testid="user">
          {s.user}
        </span>
        <button
          class="link"
          onClick={() => {
            setToken(null);
            update({ loginMessage: 'Logged out.' });
            go('login');
          }}
        >
          Log out
        </button>
      </header>
      <Sidebar resources={resources} open={menu} close={() => setMenu(false)} />
      <main class="content" id="content">
        {page}
      </main>
    </div>
  );
}

function App() {
  const route = useRoute();
  if (route.path[0] === 'login' || !token()) return <Login />;
  return <Shell />;
}

const root = document.getElementById('app')!;
root.textContent = ''; // the loading text
render(<App />, root);
