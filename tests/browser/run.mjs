// Browser scenarios in real headless Chromium (Debian's /usr/bin/chromium via playwright-core),
// driven by crates/grantd/tests/it/browser.rs, which starts grantd + the emulator and passes
// everything in the BROWSER_TEST environment variable (JSON):
//   { scenario, grantdUrl, secretKey, connectLink?, sessionToken?, connectionId?, upn, password,
//     (picker: connectionId of a one-drive connection with Sites.Read.All, or with personal: true
//     and providerConfigKey a one-drive-personal connection's),
//     screenshots }
// Prints one JSON line {"ok":true,...} on success; throws (exit 1) otherwise.
import { chromium } from 'playwright-core';
import { build } from 'esbuild';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const cfg = JSON.parse(process.env.BROWSER_TEST);
const here = path.dirname(fileURLToPath(import.meta.url));
fs.mkdirSync(cfg.screenshots, { recursive: true });
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'grantd-chromium-'));
const TIMEOUT = 30_000;

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1100, height: 800 },
});
context.setDefaultTimeout(TIMEOUT);

async function shot(page, name) {
  await page.screenshot({ path: path.join(cfg.screenshots, `${cfg.scenario}-${name}.png`), fullPage: true });
}

/** Fills the emulator's sign-in page, then accepts or cancels consent. */
async function signInAndConsent(page, action) {
  await page.waitForSelector('#passwd');
  await shot(page, 'emulator-sign-in');
  await page.fill('#login', cfg.upn);
  await page.fill('#passwd', cfg.password);
  await page.click('#idSIButton9');
  await page.waitForSelector(`#${action}`);
  await shot(page, 'emulator-consent');
  await page.click(`#${action}`);
}

/** Signs in; then cancels, or accepts consent when the emulator asks (it remembers a consent). */
async function signInMaybeConsent(page, action) {
  await page.waitForSelector('#passwd');
  await page.fill('#login', cfg.upn);
  await page.fill('#passwd', cfg.password);
  await page.click('#idSIButton9');
  if (action === 'cancel') {
    await page.waitForSelector('#cancel');
    await page.click('#cancel');
    return;
  }
  try {
    await page.waitForSelector('#accept', { timeout: 5_000 });
    await page.click('#accept');
  } catch {
    // Consent already given (a reconnect): the popup went straight to the callback.
  }
}

async function dashboardLogin(page) {
  // A browser opening grantd's address lands on the dashboard, i.e. its login when signed out.
  await page.goto(`${cfg.grantdUrl}/`);
  if (new URL(page.url()).pathname !== '/dashboard/login') throw new Error(`GET / ended at ${page.url()}`);
  await shot(page, 'login');
  await page.getByLabel('Secret key').fill(cfg.secretKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForSelector('h1:has-text("Overview")');
}

const scenarios = {
  // The hosted Connect UI end to end through the emulator's sign-in and consent pages.
  async connect() {
    const page = await context.newPage();
    await page.goto(cfg.connectLink);
    await shot(page, 'connect-ui');
    await page.getByRole('link', { name: /Connect / }).click();
    await signInAndConsent(page, 'accept');
    await page.waitForSelector('h1:has-text("Connected")');
    await shot(page, 'success');
    return { title: await page.title() };
  },

  // A cancelled consent shows its message in plain words.
  async cancel() {
    const page = await context.newPage();
    await page.goto(cfg.connectLink);
    await page.getByRole('link', { name: /Connect / }).click();
    await signInAndConsent(page, 'cancel');
    await page.waitForSelector('[role=alert]');
    await shot(page, 'failure');
    return { text: await page.locator('[role=alert]').innerText() };
  },

  // @nangohq/frontend's popup flow from a page served here: nango.auth() resolves with the id.
  async popup() {
    const bundle = await build({
      entryPoints: [path.join(here, 'node_modules/@nangohq/frontend/dist/index.js')],
      bundle: true, format: 'iife', globalName: 'NangoFrontend', write: false, platform: 'browser',
    });
    const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>App using @nangohq/frontend</title></head>
<body><h1>My SaaS app</h1><button id="connect">Connect OneDrive</button><pre id="result"></pre>
<script>${bundle.outputFiles[0].text}</script>
<script>
  const Nango = NangoFrontend.default || NangoFrontend.Nango;
  document.getElementById('connect').onclick = () => {
    const nango = new Nango({ host: ${JSON.stringify(cfg.grantdUrl)}, connectSessionToken: ${JSON.stringify(cfg.sessionToken)} });
    nango.auth('one-drive')
      .then((r) => { window.__result = r; document.getElementById('result').textContent = JSON.stringify(r); })
      .catch((e) => { window.__error = { type: e.type, message: e.message }; document.getElementById('result').textContent = 'error: ' + e.message; });
  };
</script></body></html>`;
    const server = http.createServer((_, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(html); });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    try {
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      const [popup] = await Promise.all([context.waitForEvent('page'), page.click('#connect')]);
      await signInAndConsent(popup, 'accept');
      await page.waitForFunction(() => window.__result || window.__error, null, { timeout: TIMEOUT });
      const error = await page.evaluate(() => window.__error);
      if (error) throw new Error(`nango.auth rejected: ${JSON.stringify(error)}`);
      await shot(page, 'app-resolved');
      return await page.evaluate(() => window.__result);
    } finally {
      server.close();
    }
  },

  // grantd's hosted File Picker from an app page served here (its own origin): the app's backend
  // creates a picker session, the page opens it with /picker/sdk.js, adele browses her OneDrive
  // in the emulator's picker, then a SharePoint site (the root host: a second authenticate),
  // picks two files and a folder; the promise resolves with them. Everything the app page could
  // see — its globals, DOM, storage, the messages it received and its network traffic (CDP
  // Network events with bodies) — is searched for a token; the popup's own traffic is searched
  // the same way and must show one (the detector works). With cfg.personal the connection is a
  // personal account's (cfg.providerConfigKey): Microsoft's consumer picker, no sites; the user
  // picks two files of Documents and the Photos folder.
  async picker() {
    const key = cfg.providerConfigKey || 'one-drive';
    const personal = !!cfg.personal;
    const JWT = /eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}/;
    const server = http.createServer((_, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(appHtml); });
    let appHtml = '';
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const appOrigin = `http://127.0.0.1:${server.address().port}`;
    try {
      // The app's backend.
      const created = await fetch(`${cfg.grantdUrl}/picker/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${cfg.secretKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          connection_id: cfg.connectionId, provider_config_key: key,
          options: { origin: appOrigin, mode: 'all', multi_select: true, save_selection: true },
        }),
      });
      const session = await created.json();
      if (created.status !== 201 || !session.data.ready) throw new Error(`picker session: ${JSON.stringify(session)}`);
      appHtml = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>App with grantd's picker</title>
<script>window.__messages = []; window.addEventListener('message', (e) => window.__messages.push({ origin: e.origin, data: e.data }));</script>
<script src="${cfg.grantdUrl}/picker/sdk.js"></script></head>
<body><h1>My SaaS app</h1><button id="pick">Pick files</button><pre id="result"></pre>
<script>
  document.getElementById('pick').onclick = () => {
    grantdPicker.open({ url: ${JSON.stringify(session.data.url)} })
      .then((items) => { window.__picked = items; document.getElementById('result').textContent = JSON.stringify(items, null, 1); })
      .catch((e) => { window.__error = e.message; });
  };
</script></body></html>`;

      const page = await context.newPage();
      const network = [];
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      cdp.on('Network.requestWillBeSent', (e) => network.push({ url: e.request.url, headers: e.request.headers, postData: e.request.postData || '' }));
      cdp.on('Network.responseReceived', (e) => network.push({ url: e.response.url, headers: e.response.headers }));
      const bodies = [];
      cdp.on('Network.loadingFinished', (e) => {
        bodies.push(cdp.send('Network.getResponseBody', { requestId: e.requestId }).then((b) => b.body, () => ''));
      });
      await page.goto(`${appOrigin}/`);
      // The popup's traffic, heard from the context before the click (listeners attached to the
      // popup itself would miss what it does before they are attached: its first token, and the
      // consumer picker's only authenticate).
      const popupBodies = [];
      const tokenResources = [];
      const notApp = (r) => { try { return r.frame().page() !== page; } catch { return true; } };
      context.on('response', (r) => { if (notApp(r)) popupBodies.push(r.text().catch(() => '')); });
      context.on('request', (q) => {
        if (notApp(q) && q.url().endsWith('/picker/token')) tokenResources.push(JSON.parse(q.postData() || '{}').resource);
      });
      const [popup] = await Promise.all([context.waitForEvent('page'), page.click('#pick')]);
      const popupConsole = [];
      popup.on('console', (m) => popupConsole.push(m.text()));
      try {

      const picker = popup.frameLocator('#picker');
      const row = (name) => picker.locator(`#picker-list li[data-name="${name}"]`);
      const ready = () => picker.locator('body[data-state="ready"]').waitFor();
      const open = async (name, expect) => {
        await row(name).locator('.picker-open').click();
        await row(expect).waitFor();
        await ready();
      };
      await row('Documents').waitFor();
      await ready();
      await shot(popup, 'onedrive');
      await open('Documents', 'Report.docx');
      await row('Report.docx').locator('.picker-check').check();
      await row('Budget.xlsx').locator('.picker-check').check();
      if (personal) {
        if (await picker.locator('#picker-nav-sites').count()) throw new Error('the consumer picker shows Sites');
        await picker.locator('#picker-nav-onedrive').click();
        await row('Photos').waitFor();
        await ready();
        await row('Photos').locator('.picker-check').check();
        await shot(popup, 'personal-onedrive');
      } else {
        await picker.locator('#picker-nav-sites').click();
        await row('Communication site').waitFor();
        await ready();
        await open('Communication site', 'Documents');
        await open('Documents', 'Policies');
        await row('Policies').locator('.picker-check').check();
        await shot(popup, 'site-library');
      }
      await picker.locator('#picker-select').click();
      await page.waitForFunction(() => window.__picked || window.__error, null, { timeout: TIMEOUT });
      } catch (e) {
        try { await shot(popup, 'failure'); } catch { /* gone */ }
        let text = '';
        try { text = await picker.locator('body').innerText({ timeout: 2000 }); } catch { /* no frame */ }
        let own = '';
        try { own = await popup.locator('body').innerText({ timeout: 2000 }); } catch { /* gone */ }
        console.error(`grantd page:\n${own}\npicker frame:\n${text}\nconsole:\n${popupConsole.join('\n')}`);
        throw e;
      }
      const error = await page.evaluate(() => window.__error);
      if (error) throw new Error(`grantdPicker.open rejected: ${error}`);
      await shot(page, 'app-picked');

      // What the app page can see.
      const seen = await page.evaluate((grantdOrigin) => {
        const globals = [];
        for (const k of Object.getOwnPropertyNames(window)) {
          let v;
          try { v = window[k]; } catch { continue; }
          if (v === window || v === document) continue;
          try { globals.push(typeof v === 'function' ? String(v) : JSON.stringify(v)); } catch { /* cyclic */ }
        }
        return {
          globals: globals.join('\n'),
          dom: document.documentElement.outerHTML,
          storage: JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie,
          messages: JSON.stringify(window.__messages),
          picked: window.__picked,
          messageTypes: window.__messages.filter((m) => m.origin === grantdOrigin).map((m) => m.data && m.data.type),
        };
      }, new URL(cfg.grantdUrl).origin);
      const net = JSON.stringify(network) + (await Promise.all(bodies)).join('\n');
      const leaks = [];
      for (const [where, text] of Object.entries({ globals: seen.globals, dom: seen.dom, storage: seen.storage, messages: seen.messages, network: net })) {
        if (JWT.test(text)) leaks.push(where);
      }
      const popupText = (await Promise.all(popupBodies)).join('\n');
      return {
        picked: seen.picked,
        messageTypes: seen.messageTypes,
        leaks,
        appRequests: network.length,
        popupSawToken: JWT.test(popupText),
        tokenResources: [...new Set(tokenResources)].sort(),
      };
    } finally {
      server.close();
    }
  },

  // The dashboard shows the connection healthy.
  // @nangohq/frontend's openConnectUI: the iframe at {grantd}/connect/, the ready /
  // session_token handshake, a popup for Microsoft, and the events passed to onEvent.
  async 'connect-ui-sdk'() {
    const bundle = await build({
      entryPoints: [path.join(here, 'node_modules/@nangohq/frontend/dist/index.js')],
      bundle: true, format: 'iife', globalName: 'NangoFrontend', write: false, platform: 'browser',
    });
    const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>App using openConnectUI</title></head>
<body><h1>My SaaS app</h1><button id="open">Connect</button>
<script>${bundle.outputFiles[0].text}</script>
<script>
  const Nango = NangoFrontend.default || NangoFrontend.Nango;
  window.__events = [];
  document.getElementById('open').onclick = () => {
    const nango = new Nango({ host: ${JSON.stringify(cfg.grantdUrl)} });
    nango.openConnectUI({
      sessionToken: ${JSON.stringify(cfg.sessionToken)},
      baseURL: ${JSON.stringify(cfg.grantdUrl + '/connect')},
      apiURL: ${JSON.stringify(cfg.grantdUrl)},
      lang: ${JSON.stringify(cfg.lang || 'en')},
      onEvent: (e) => { window.__events.push(e); },
    });
  };
</script></body></html>`;
    const server = http.createServer((_, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(html); });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    try {
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      await page.click('#open');
      const frame = page.frameLocator('#connect-ui');
      const link = frame.locator('a.connect').first();
      await link.waitFor();
      await shot(page, 'iframe-list');
      const lang = await frame.locator('html').getAttribute('lang');
      const linkText = await link.innerText();
      const [popup] = await Promise.all([context.waitForEvent('page'), link.click()]);
      await signInMaybeConsent(popup, cfg.action || 'accept');
      const want = (cfg.action || 'accept') === 'accept' ? 'connect' : 'error';
      await page.waitForFunction((w) => window.__events.some((e) => e.type === w), want, { timeout: TIMEOUT });
      await shot(page, 'after-flow');
      await frame.locator('#close').click();
      await page.waitForFunction(() => window.__events.some((e) => e.type === 'close'), null, { timeout: TIMEOUT });
      const iframeGone = (await page.locator('#connect-ui').count()) === 0;
      return { events: await page.evaluate(() => window.__events), lang, linkText, iframeGone };
    } finally {
      server.close();
    }
  },

  async 'dashboard-healthy'() {
    const page = await context.newPage();
    await dashboardLogin(page);
    await shot(page, 'overview');
    await page.getByRole('link', { name: 'Connections', exact: true }).click();
    const row = page.locator(`tr[data-connection-id="${cfg.connectionId}"]`);
    await row.waitFor();
    await shot(page, 'connections');
    const status = await row.locator('[data-status]').getAttribute('data-status');
    await row.getByRole('link').first().click();
    await page.getByRole('button', { name: 'Test call: list drives' }).click();
    await page.waitForSelector('#drives');
    await shot(page, 'test-call');
    const drives = await page.locator('#drives li').count();
    await page.getByRole('button', { name: 'Copy reconnect link' }).click();
    const link = await page.locator('#reconnect-link').inputValue();
    await shot(page, 'reconnect-link');
    await page.goto(`${cfg.grantdUrl}/dashboard/integrations/one-drive`);
    await shot(page, 'integration');
    const redirectUri = await page.locator('#redirect-uri').innerText();
    return { status, drives, link, redirectUri };
  },

  // After the emulator revoked the user: "Refresh now" turns the connection to "must reconnect".
  async 'dashboard-revoked'() {
    const page = await context.newPage();
    await dashboardLogin(page);
    await page.goto(`${cfg.grantdUrl}/dashboard/connections/one-drive/${encodeURIComponent(cfg.connectionId)}`);
    await page.getByRole('button', { name: 'Refresh now' }).click();
    await page.waitForSelector('[role=alert]');
    await shot(page, 'refresh-failed');
    const alert = await page.locator('[role=alert]').innerText();
    await page.goto(`${cfg.grantdUrl}/dashboard/connections`);
    const row = page.locator(`tr[data-connection-id="${cfg.connectionId}"]`);
    await row.waitFor();
    await shot(page, 'connections');
    const status = await row.locator('[data-status]').getAttribute('data-status');
    const problem = await row.locator('td').last().innerText();
    return { status, alert, problem };
  },

  // The overview: status counts, recent auth events and webhook deliveries from the outbox.
  async 'dashboard-overview'() {
    const page = await context.newPage();
    await dashboardLogin(page);
    await page.locator('#webhook-deliveries').waitFor();
    await shot(page, 'overview');
    const events = page.locator('tr[data-event-id]');
    const deliveries = page.locator('tr[data-delivery-id]');
    return {
      events: await events.count(),
      newestEvent: await events.first().innerText(),
      newestResult: await events.first().locator('[data-result]').getAttribute('data-result'),
      deliveries: await deliveries.count(),
      delivered: await page.locator('[data-delivery="delivered"]').count(),
    };
  },
};

try {
  const fn = scenarios[cfg.scenario];
  if (!fn) throw new Error(`unknown scenario ${cfg.scenario}`);
  const result = await fn();
  console.log(JSON.stringify({ ok: true, ...result }));
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
