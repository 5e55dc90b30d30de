// The emulator's File Picker v8 page in real headless Chromium (Debian's /usr/bin/chromium via
// playwright-core), driven by crates/grantd-emulator/tests/picker.rs, which starts the emulator
// and a small host app, and passes everything in the BROWSER_TEST environment variable (JSON):
//   { scenario, hostUrl, emulatorUrl, baseUrl, resource, options, screenshots }
// The host page (served by the test) reads {options, baseUrl, resource} from its URL fragment,
// posts the form into an iframe and answers the picker's commands; it records what it saw in
// window.__log / __picked / __closed, which this script returns.
// Prints one JSON line {"ok":true,...} on success; throws (exit 1) otherwise.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const cfg = JSON.parse(process.env.BROWSER_TEST);
fs.mkdirSync(cfg.screenshots, { recursive: true });
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'grantd-picker-'));
const TIMEOUT = 30_000;

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1100, height: 800 },
});
context.setDefaultTimeout(TIMEOUT);
const page = await context.newPage();
const violations = [];
page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });

async function shot(name) {
  await page.screenshot({ path: path.join(cfg.screenshots, `emulator-picker-${cfg.scenario}-${name}.png`), fullPage: true });
}

const fragment = encodeURIComponent(JSON.stringify({ options: cfg.options, baseUrl: cfg.baseUrl, resource: cfg.resource }));
await page.goto(`${cfg.hostUrl}/#${fragment}`);
const picker = page.frameLocator('#picker-frame');
const row = (name) => picker.locator(`#picker-list li[data-name="${name}"]`);
const ready = () => picker.locator('body[data-state="ready"]').waitFor();
const host = () => page.evaluate(() => ({ log: window.__log, picked: window.__picked, closed: window.__closed }));

/** Opens a folder, site or library by clicking its name; waits until the list shows `expect`. */
async function open(name, expect) {
  await row(name).locator('.picker-open').click();
  await row(expect).waitFor();
  await ready();
}

const scenarios = {
  // Adele picks two files in her OneDrive, then (after her OneDrive token expired on the
  // emulator clock) browses on, opens Sites (a second host), picks a folder there, and selects.
  async pick() {
    await row('Documents').waitFor();
    await ready();
    await shot('onedrive');
    await open('Documents', 'Report.docx');
    await row('Report.docx').locator('.picker-check').check();
    await row('Budget.xlsx').locator('.picker-check').check();
    if ((await picker.locator('#picker-selection-count').textContent()) !== '2 selected') {
      throw new Error('selection count did not follow the clicks');
    }
    // Back to "My files" by the breadcrumb.
    await picker.locator('#picker-breadcrumb [data-crumb-index="0"]').click();
    await row('Photos').waitFor();
    await ready();
    // The OneDrive token expires on the emulator clock: the next listing answers 401 and the
    // picker asks the host again.
    const adv = await fetch(`${cfg.emulatorUrl}/_emulator/clock/advance`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ seconds: 7200 }),
    });
    if (!adv.ok) throw new Error(`clock advance: ${adv.status}`);
    await open('Photos', 'Vacation');
    // Sites: the tenant's root host, a second authenticate.
    await picker.locator('#picker-nav-sites').click();
    await row('Communication site').waitFor();
    await ready();
    await open('Communication site', 'Documents');
    await open('Documents', 'Policies');
    await shot('site-library');
    await row('Policies').locator('.picker-check').check();
    if ((await picker.locator('#picker-selection-count').textContent()) !== '3 selected') {
      throw new Error('the selection did not persist across hosts');
    }
    await picker.locator('#picker-select').click();
    await picker.locator('body[data-state="picked"]').waitFor();
    await page.waitForFunction(() => window.__picked !== null);
    await shot('picked');
    return host();
  },

  // Short-lived tokens: the picker asks again before each listing (the test counts).
  async 'near-expiry'() {
    await row('Documents').waitFor();
    await ready();
    await open('Documents', 'Report.docx');
    return host();
  },

  // The host hands out the OneDrive host's token for the root host: the picker shows
  // SharePoint's refusal; then the user cancels.
  async 'wrong-second-host'() {
    await row('Documents').waitFor();
    await ready();
    await picker.locator('#picker-nav-sites').click();
    const err = picker.locator('#picker-error');
    await err.waitFor({ state: 'visible' });
    const error = await err.textContent();
    await shot('error');
    await picker.locator('#picker-cancel').click();
    await picker.locator('body[data-state="closed"]').waitFor();
    await page.waitForFunction(() => window.__closed === true);
    return { ...(await host()), error };
  },
};

try {
  const fn = scenarios[cfg.scenario];
  if (!fn) throw new Error(`unknown scenario ${cfg.scenario}`);
  const result = await fn();
  if (violations.length) throw new Error(`CSP violations: ${violations.join(' | ')}`);
  console.log(JSON.stringify({ ok: true, ...result }));
} catch (e) {
  try { await shot('failure'); } catch { /* page gone */ }
  let pickerText = '';
  try { pickerText = await picker.locator('body').innerText({ timeout: 2000 }); } catch { /* no frame */ }
  console.error(`picker page text:\n${pickerText}`);
  throw e;
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
