// The emulator's File Picker v8 page (served by picker/mod.rs). It speaks Microsoft's picker
// protocol (learn.microsoft.com/onedrive/developer/controls/file-pickers/):
//   picker → opener/parent: {type:"initialize", channelId} with a MessagePort, to messaging.origin
//   host → port: {type:"activate"}
//   picker → port: {type:"command", id, data:{command:"authenticate", resource, type:"SharePoint"}}
//                  {type:"command", id, data:{command:"pick", items:[…]}}
//                  {type:"command", id, data:{command:"close"}}
//                  {type:"notification", data:{notification:"page-loaded", timestamp}}
//   host → port: {type:"acknowledge", id} then {type:"result", id, data:{result:"token"|"success"|"error", …}}
// It lists drives through /_sharepoint/{host}/_api/v2.0/… with the token the host gave for that
// host, asking again when the token is about to expire or an API call answers 401. As the
// consumer picker of personal accounts (cfg.consumer) it browses the personal drive through
// /_sharepoint/api.onedrive.com/v1.0/… (authenticate {resource: https://api.onedrive.com,
// type: 'Graph'}) and has no sites.
(function () {
  'use strict';

  const cfg = JSON.parse(document.getElementById('picker-config').textContent);
  const opts = cfg.options;
  // The emulator's clock may run ahead of the browser's (tests advance it): token expiry is
  // judged on the emulator's time.
  const skew = cfg.now - Date.now() / 1000;
  const REFRESH_MARGIN = 300; // seconds before `exp` at which a token is asked for again

  const $ = (id) => document.getElementById(id);
  const st = {
    port: null,
    activated: false,
    nextId: 1,
    pending: new Map(),
    tokens: new Map(), // host → {token, exp}
    flights: new Map(), // host → Promise<token> (one authenticate per host at a time)
    trail: [], // breadcrumb: locations, the last one shown
    rows: [], // what the list shows
    selected: new Map(), // key → picked item
    done: false,
  };

  class PickerError extends Error {}

  function setState(s) { document.body.dataset.state = s; }
  function status(text) { $('picker-status').textContent = text; }
  function showError(msg) {
    const e = $('picker-error');
    e.textContent = msg;
    e.hidden = false;
    setState('error');
  }
  function clearError() {
    const e = $('picker-error');
    e.hidden = true;
    e.textContent = '';
  }

  // ---- messaging -------------------------------------------------------------------------

  function onPortMessage(ev) {
    const m = ev.data || {};
    if (m.type === 'activate') {
      if (!st.activated) {
        st.activated = true;
        start();
      }
      return;
    }
    const p = st.pending.get(m.id);
    if (!p) return;
    if (m.type === 'acknowledge') {
      clearTimeout(p.ackTimer);
    } else if (m.type === 'result') {
      st.pending.delete(m.id);
      clearTimeout(p.ackTimer);
      clearTimeout(p.resultTimer);
      p.resolve(m.data || {});
    }
  }

  function command(data) {
    const id = `${opts.channelId}:${st.nextId++}`;
    return new Promise((resolve, reject) => {
      const fail = (what) => () => {
        st.pending.delete(id);
        reject(new PickerError(`The host did not ${what} the ${data.command} command.`));
      };
      const p = { resolve };
      p.ackTimer = setTimeout(fail('acknowledge'), opts.acknowledgeTimeout);
      p.resultTimer = setTimeout(fail('answer'), opts.resultTimeout);
      st.pending.set(id, p);
      st.port.postMessage({ type: 'command', id, data });
    });
  }

  function notify(notification) {
    st.port.postMessage({ type: 'notification', data: { notification, timestamp: Date.now() } });
  }

  // ---- tokens ----------------------------------------------------------------------------

  function jwtExp(t) {
    try {
      let p = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      p += '='.repeat((4 - (p.length % 4)) % 4);
      return JSON.parse(atob(p)).exp || 0;
    } catch {
      return 0;
    }
  }

  function token(host, force) {
    const now = Date.now() / 1000 + skew;
    const c = st.tokens.get(host);
    if (!force && c && c.exp - now > REFRESH_MARGIN) return Promise.resolve(c.token);
    if (st.flights.has(host)) return st.flights.get(host);
    const resource = `https://${host}`;
    const flight = command({ command: 'authenticate', resource, type: cfg.authType })
      .then((r) => {
        if (r.result !== 'token' || typeof r.token !== 'string' || !r.token) {
          const why = (r.error && (r.error.message || r.error.code)) || r.result || 'no token';
          throw new PickerError(`The host could not provide a token for ${resource}: ${why}`);
        }
        st.tokens.set(host, { token: r.token, exp: jwtExp(r.token) });
        return r.token;
      })
      .finally(() => st.flights.delete(host));
    st.flights.set(host, flight);
    return flight;
  }

  // ---- the drive API -----------------------------------------------------------------------

  async function fetchJson(host, url) {
    const call = (t) => fetch(url, { headers: { Authorization: `Bearer ${t}`, Accept: 'application/json' } });
    let resp = await call(await token(host, false));
    if (resp.status === 401) resp = await call(await token(host, true));
    if (!resp.ok) {
      let detail = '';
      try {
        const j = await resp.json();
        detail = (j.error && (j.error.message || j.error.code)) || j.error_description || '';
      } catch { /* not JSON */ }
      const diag = resp.headers.get('x-ms-diagnostics');
      throw new PickerError(`${host} answered ${resp.status}${detail ? `: ${detail}` : ''}${diag ? ` (${diag})` : ''}`);
    }
    return resp.json();
  }

  const api = (host, path) => fetchJson(host, `/_sharepoint/${host}/${cfg.apiPrefix}/${path}`);

  /** Every page of a collection (follows @odata.nextLink, on this origin). */
  async function all(host, path) {
    let page = await api(host, path);
    const out = [...(page.value || [])];
    for (let n = 0; page['@odata.nextLink'] && n < 50; n++) {
      const next = new URL(page['@odata.nextLink']);
      page = await fetchJson(host, next.pathname + next.search);
      out.push(...(page.value || []));
    }
    return out;
  }

  const enc = (s) => encodeURIComponent(s);
  const encPath = (p) => p.split('/').filter(Boolean).map(enc).join('/');
  const hostOf = (u) => { try { return new URL(u).host; } catch { return null; } };

  // ---- locations ---------------------------------------------------------------------------
  // {kind:'folder', host, driveId, itemId|null, name} | {kind:'recent'|'shared', host, name}
  // | {kind:'sites', host, name} | {kind:'site', host, siteId, name}

  async function load(loc) {
    switch (loc.kind) {
      case 'folder': {
        const path = loc.itemId
          ? `drives/${enc(loc.driveId)}/items/${enc(loc.itemId)}/children`
          : loc.driveId ? `drives/${enc(loc.driveId)}/root/children` : 'me/drive/root/children';
        return (await all(loc.host, path)).map((it) => itemRow(it, loc.host));
      }
      case 'recent':
      case 'shared': {
        const list = await all(loc.host, loc.kind === 'recent' ? 'me/drive/recent' : 'me/drive/sharedWithMe');
        return list.map((it) => itemRow(it.remoteItem || it, hostOf((it.remoteItem || it).webUrl) || loc.host));
      }
      case 'sites': {
        const site = await api(loc.host, 'sites/root');
        return [{ kind: 'site', name: site.displayName || site.name || loc.host, key: site.id,
          open: { kind: 'site', host: loc.host, siteId: site.id, name: site.displayName || loc.host } }];
      }
      case 'site': {
        const drives = await all(loc.host, `sites/${enc(loc.siteId)}/drives`);
        return drives.map((d) => ({ kind: 'library', name: d.name, key: d.id,
          open: { kind: 'folder', host: loc.host, driveId: d.id, itemId: null, name: d.name } }));
      }
      default:
        throw new PickerError(`unknown location ${loc.kind}`);
    }
  }

  function itemRow(it, host) {
    const folder = !!it.folder;
    const driveId = it.parentReference && it.parentReference.driveId;
    const row = { kind: folder ? 'folder' : 'file', name: it.name, key: `${driveId}/${it.id}`, item: it, host };
    if (folder) row.open = { kind: 'folder', host, driveId, itemId: it.id, name: it.name };
    return row;
  }

  // ---- what may be picked ----------------------------------------------------------------

  const DOCUMENT = ['.doc', '.docx', '.xls', '.xlsx', '.ppt', '.pptx', '.pdf', '.txt', '.md', '.csv', '.rtf', '.odt'];

  function matches(filter, it) {
    const folder = !!it.folder;
    const name = (it.name || '').toLowerCase();
    const mime = (it.file && it.file.mimeType) || '';
    if (filter.startsWith('.')) return !folder && name.endsWith(filter);
    switch (filter) {
      case 'folder': return folder;
      case 'file': return !folder;
      case 'photo': return mime.startsWith('image/');
      case 'video': return mime.startsWith('video/');
      case 'audio': return mime.startsWith('audio/');
      case 'media': return /^(image|video|audio)\//.test(mime);
      case 'document': return !folder && DOCUMENT.some((e) => name.endsWith(e));
      default: return false; // sites, lists, Syntex…: nothing in the emulator is one
    }
  }

  function selectable(row) {
    if (!row.item) return false;
    const folder = row.kind === 'folder';
    if (opts.mode === 'files' && folder) return false;
    if (opts.mode === 'folders' && !folder) return false;
    return opts.filters.length === 0 || opts.filters.some((f) => matches(f, row.item));
  }

  /** The item as the pick command carries it (always id, parentReference.driveId, @sharePoint.endpoint). */
  function picked(row) {
    const it = row.item;
    const out = {
      id: it.id,
      name: it.name,
      size: it.size,
      webUrl: it.webUrl,
      lastModifiedDateTime: it.lastModifiedDateTime,
      parentReference: { driveId: it.parentReference.driveId, id: it.parentReference.id },
    };
    if (!cfg.consumer) out['@sharePoint.endpoint'] = `https://${row.host}/_api/v2.0`;
    if (it.parentReference.driveType) out.parentReference.driveType = it.parentReference.driveType;
    if (it.folder) out.folder = { childCount: it.folder.childCount };
    if (it.file) out.file = { mimeType: it.file.mimeType };
    if (opts.downloadUrls && it['@microsoft.graph.downloadUrl']) {
      out['@microsoft.graph.downloadUrl'] = it['@microsoft.graph.downloadUrl'];
    }
    return out;
  }

  // ---- rendering ---------------------------------------------------------------------------

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === true) e.setAttribute(k, '');
      else if (v !== false && v != null) e.setAttribute(k, String(v));
    }
    if (text != null) e.textContent = text;
    return e;
  }

  function renderSelection() {
    const n = st.selected.size;
    $('picker-selection-count').textContent = `${n} selected`;
    $('picker-select').disabled = n === 0 || st.done;
    for (const li of $('picker-list').children) {
      const box = li.querySelector('.picker-check');
      if (box) box.checked = st.selected.has(li.dataset.key);
    }
  }

  function renderCrumbs() {
    const ol = $('picker-breadcrumb');
    ol.replaceChildren();
    st.trail.forEach((loc, i) => {
      const li = el('li');
      if (i === st.trail.length - 1) {
        li.append(el('span', { 'aria-current': 'page', 'data-crumb-index': i }, loc.name));
      } else {
        const b = el('button', { type: 'button', class: 'picker-crumb', 'data-crumb-index': i }, loc.name);
        b.addEventListener('click', () => go(st.trail.slice(0, i + 1)));
        li.append(b);
      }
      ol.append(li);
    });
  }

  function renderRows() {
    const ul = $('picker-list');
    ul.replaceChildren();
    const rows = opts.mode === 'folders' ? st.rows.filter((r) => r.kind !== 'file') : st.rows;
    if (rows.length === 0) ul.append(el('li', { class: 'empty' }, 'This folder is empty.'));
    for (const row of rows) {
      const can = selectable(row);
      const li = el('li', {
        'data-kind': row.kind, 'data-name': row.name, 'data-key': row.key,
        'data-item-id': row.item ? row.item.id : null, 'data-selectable': can ? 'true' : 'false',
      });
      const box = el('input', { type: 'checkbox', class: 'picker-check', 'aria-label': `Select ${row.name}`, disabled: !can });
      box.addEventListener('change', () => toggle(row, box.checked));
      li.append(box);
      if (row.open) {
        const b = el('button', { type: 'button', class: 'picker-open' }, row.name);
        b.addEventListener('click', () => go([...st.trail, row.open]));
        li.append(b);
      } else {
        li.append(el('span', { class: 'picker-name' }, row.name));
      }
      const meta = [];
      if (row.kind === 'folder' && row.item.folder) meta.push(`${row.item.folder.childCount} items`);
      if (row.kind === 'file') meta.push(`${row.item.size} bytes`);
      if (row.kind === 'library') meta.push('Document library');
      if (row.kind === 'site') meta.push('Site');
      li.append(el('span', { class: 'picker-meta' }, meta.join(' · ')));
      ul.append(li);
    }
    ul.dataset.location = st.trail.map((l) => l.name).join('/');
    renderSelection();
  }

  // ---- actions -----------------------------------------------------------------------------

  async function toggle(row, on) {
    if (st.done) return;
    clearError();
    if (on && opts.selection === 'pick') {
      st.selected.clear();
      st.selected.set(row.key, picked(row));
      renderSelection();
      return doPick();
    }
    if (on) {
      if (opts.selection === 'single') st.selected.clear();
      if (opts.maximumCount && st.selected.size >= opts.maximumCount) {
        status(`At most ${opts.maximumCount} items can be selected.`);
        renderSelection();
        return;
      }
      st.selected.set(row.key, picked(row));
    } else {
      st.selected.delete(row.key);
    }
    renderSelection();
  }

  let generation = 0;
  async function go(trail) {
    const mine = ++generation;
    clearError();
    if (!opts.persistence) st.selected.clear();
    setState('loading');
    status(`Loading ${trail[trail.length - 1].name}…`);
    try {
      const rows = await load(trail[trail.length - 1]);
      if (mine !== generation) return;
      st.trail = trail;
      st.rows = rows;
      renderCrumbs();
      renderRows();
      status('');
      setState('ready');
    } catch (e) {
      if (mine !== generation) return;
      showError(e.message || String(e));
      renderSelection();
    }
  }

  async function doPick() {
    if (st.selected.size === 0 || st.done) return;
    const items = [...st.selected.values()];
    setState('picking');
    status(`Sending ${items.length} item(s) to the host…`);
    try {
      const r = await command({ command: 'pick', items });
      if (r.result !== 'success') {
        throw new PickerError(`The host refused the picked items: ${(r.error && (r.error.message || r.error.code)) || r.result}`);
      }
      st.done = true;
      status(`Picked ${items.length} item(s).`);
      setState('picked');
      renderSelection();
    } catch (e) {
      showError(e.message || String(e));
    }
  }

  async function doClose() {
    st.done = true;
    renderSelection();
    try {
      await command({ command: 'close' });
    } catch { /* the host may already be gone */ }
    status('Closed.');
    setState('closed');
  }

  // ---- start -------------------------------------------------------------------------------

  function myFiles() { return { kind: 'folder', host: cfg.myHost, driveId: null, itemId: null, name: 'My files' }; }
  function sites() { return { kind: 'sites', host: cfg.rootHost, name: 'Sites' }; }

  /** The trail of the configured entry point. */
  async function entryTrail() {
    const e = opts.entry;
    switch (e.kind) {
      case 'recent': return [{ kind: 'recent', host: cfg.myHost, name: 'Recent' }];
      case 'shared': return [{ kind: 'shared', host: cfg.myHost, name: 'Shared' }];
      case 'sites': return [sites()];
      case 'oneDrive': {
        const root = myFiles();
        if (!e.folder) return [root];
        // Server-relative paths name the drive first: /personal/{user}/Documents/{folder…}.
        const segs = e.folder.split('/').filter(Boolean);
        const rel = segs[0] === 'personal' ? segs.slice(3) : segs;
        try {
          const it = await api(cfg.myHost, `me/drive/root:/${encPath(rel.join('/'))}`);
          return [root, { kind: 'folder', host: cfg.myHost, driveId: it.parentReference.driveId, itemId: it.id, name: it.name }];
        } catch (err) {
          if (e.fallbackToRoot) return [root];
          throw err;
        }
      }
      case 'sharePoint': {
        let host = cfg.host;
        if (e.web) {
          const full = /^https?:\/\//i.test(e.web);
          const u = new URL(e.web, `https://${cfg.host}`);
          if (full) host = u.host.toLowerCase();
          if (u.pathname.replace(/\/+$/, '') !== '') {
            throw new PickerError(`The emulator has only root sites; entry.sharePoint.byPath.web ${e.web} names a subsite.`);
          }
        }
        const drives = await all(host, 'drives');
        const want = e.list && decodeURIComponent(e.list.split('/').filter(Boolean).pop() || '');
        const lib = want
          ? drives.find((d) => d.name === want || decodeURIComponent((d.webUrl || '').split('/').pop()) === want)
          : drives[0];
        if (!lib) throw new PickerError(`No document library named ${e.list} on ${host}.`);
        const libLoc = { kind: 'folder', host, driveId: lib.id, itemId: null, name: lib.name };
        const trail = [{ kind: 'sites', host, name: 'Sites' }, libLoc];
        if (!e.folder) return trail;
        try {
          const it = await api(host, `drives/${enc(lib.id)}/root:/${encPath(e.folder)}`);
          return [...trail, { kind: 'folder', host, driveId: lib.id, itemId: it.id, name: it.name }];
        } catch (err) {
          if (e.fallbackToRoot) return trail;
          throw err;
        }
      }
      default:
        throw new PickerError(`unknown entry ${e.kind}`);
    }
  }

  async function start() {
    setState('loading');
    status('Signing in…');
    for (const b of document.querySelectorAll('#picker-nav button')) b.disabled = false;
    $('picker-cancel').disabled = false;
    $('picker-account').textContent = cfg.user.name ? ` — ${cfg.user.name}` : '';
    try {
      // The first command: a token for the page's own host.
      await token(cfg.host, true);
      await go(await entryTrail());
      notify('page-loaded');
    } catch (e) {
      showError(e.message || String(e));
    }
  }

  const nav = (id, loc) => { const b = $(id); if (b) b.addEventListener('click', () => go([loc()])); };
  nav('picker-nav-onedrive', myFiles);
  nav('picker-nav-recent', () => ({ kind: 'recent', host: cfg.myHost, name: 'Recent' }));
  nav('picker-nav-shared', () => ({ kind: 'shared', host: cfg.myHost, name: 'Shared' }));
  nav('picker-nav-sites', sites);
  $('picker-select').addEventListener('click', doPick);
  $('picker-cancel').addEventListener('click', doClose);

  const target = window.opener && window.opener !== window ? window.opener
    : window.parent !== window ? window.parent : null;
  if (!target) {
    showError('Open this page from a host window (a popup or an iframe): there is nobody to talk to.');
    return;
  }
  const channel = new MessageChannel();
  st.port = channel.port1;
  st.port.onmessage = onPortMessage;
  target.postMessage({ type: 'initialize', channelId: opts.channelId }, opts.origin, [channel.port2]);
})();
