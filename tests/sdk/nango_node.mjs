// Runs Nango's published @nangohq/node SDK against a running grantd and asserts what it gets.
// Driven by crates/grantd/tests/it/sdk.rs, which starts grantd + the emulator, connects a user
// through the browser flow (the SDK cannot fill Microsoft's sign-in form) and passes:
//   GRANTD_URL, GRANTD_SECRET_KEY       grantd's base URL and backend secret key
//   GRANTD_INTEGRATION                  the integration the connection belongs to
//   GRANTD_CONNECTION_ID                the connection made by the Rust side
//   GRANTD_END_USER_ID                  the end user of that connection
//   GRANTD_CLIENT_ID, GRANTD_CLIENT_SECRET  an Entra app (the emulator's) for createIntegration
// Exits 0 when every check passes; otherwise prints the failing check and exits 1.
// It never prints tokens: only whether they look right.

import assert from 'node:assert/strict';
import { Nango } from '@nangohq/node';

function env(name) {
    const v = process.env[name];
    if (!v) {
        console.error(`missing environment variable ${name}`);
        process.exit(2);
    }
    return v;
}

const host = env('GRANTD_URL');
const secretKey = env('GRANTD_SECRET_KEY');
const key = env('GRANTD_INTEGRATION');
const connectionId = env('GRANTD_CONNECTION_ID');
const endUserId = env('GRANTD_END_USER_ID');
const clientId = env('GRANTD_CLIENT_ID');
const clientSecret = env('GRANTD_CLIENT_SECRET');

const nango = new Nango({ host, secretKey });
let passed = 0;

async function step(name, f) {
    try {
        await f();
        passed += 1;
        console.log(`ok - ${name}`);
    } catch (e) {
        const detail = e?.response ? `HTTP ${e.response.status} ${JSON.stringify(e.response.data)}` : (e?.stack ?? String(e));
        console.error(`not ok - ${name}: ${detail}`);
        process.exit(1);
    }
}

/** Runs `f`, which must fail with an HTTP error; returns the response. */
async function httpError(f) {
    try {
        await f();
    } catch (e) {
        if (e?.response) {
            return e.response;
        }
        throw e;
    }
    throw new Error('expected an HTTP error, got a success');
}

const sdkKey = 'sdk-one-drive';

await step('createIntegration', async () => {
    const res = await nango.createIntegration({
        provider: 'one-drive',
        unique_key: sdkKey,
        display_name: 'OneDrive (SDK)',
        credentials: { type: 'OAUTH2', client_id: clientId, client_secret: clientSecret, scopes: 'User.Read,Files.ReadWrite.All' }
    });
    assert.equal(res.data.unique_key, sdkKey);
    assert.equal(res.data.provider, 'one-drive');
    assert.equal(res.data.display_name, 'OneDrive (SDK)');
    assert.equal(res.data.credentials, undefined, 'no credentials unless asked for');
});

await step('createIntegration refuses a duplicate key', async () => {
    const r = await httpError(() =>
        nango.createIntegration({
            provider: 'one-drive',
            unique_key: sdkKey,
            credentials: { type: 'OAUTH2', client_id: clientId, client_secret: clientSecret }
        })
    );
    assert.equal(r.status, 400);
    assert.equal(r.data.error.code, 'invalid_body');
});

await step('listIntegrations', async () => {
    const { configs } = await nango.listIntegrations();
    const keys = configs.map((c) => c.unique_key).sort();
    assert.deepEqual(keys, [key, sdkKey].sort());
});

await step('logos: logo of integrations and logo_url of providers are served SVGs', async () => {
    const { configs } = await nango.listIntegrations();
    const providers = await nango.listProviders({});
    const urls = [...configs.map((c) => c.logo), ...providers.data.map((p) => p.logo_url)];
    assert.ok(urls.length >= 7, `${urls.length} logo URLs`);
    for (const u of urls) {
        const r = await fetch(u);
        assert.equal(r.status, 200, u);
        assert.equal(r.headers.get('content-type'), 'image/svg+xml', u);
        assert.match(await r.text(), /^<svg /, u);
    }
    const missing = await fetch(`${host}/images/template-logos/not-a-provider.svg`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.code, 'not_found');
});

await step('getIntegration with include=credentials', async () => {
    const res = await nango.getIntegration({ uniqueKey: sdkKey }, { include: ['credentials'] });
    assert.equal(res.data.credentials.type, 'OAUTH2');
    assert.equal(res.data.credentials.client_id, clientId);
    assert.equal(res.data.credentials.scopes, 'User.Read,Files.ReadWrite.All');
});

await step('createConnectSession', async () => {
    const res = await nango.createConnectSession({
        end_user: { id: 'sdk-user', email: 'sdk@example.com', display_name: 'SDK User' },
        organization: { id: 'sdk-org', display_name: 'SDK Org' },
        allowed_integrations: [sdkKey],
        integrations_config_defaults: { [sdkKey]: { connection_config: {} } }
    });
    assert.match(res.data.token, /^nango_connect_session_[0-9a-f]{64}$/);
    assert.ok(res.data.connect_link.includes(res.data.token), 'connect_link carries the token');
    assert.ok(Date.parse(res.data.expires_at) > Date.now(), 'expires_at is in the future');
});

await step('createConnectSession refuses an unknown integration', async () => {
    const r = await httpError(() => nango.createConnectSession({ end_user: { id: 'x' }, allowed_integrations: ['nope'] }));
    assert.equal(r.status, 400);
    assert.equal(r.data.error.code, 'invalid_body');
});

await step('createReconnectSession', async () => {
    const res = await nango.createReconnectSession({ connection_id: connectionId, integration_id: key });
    assert.match(res.data.token, /^nango_connect_session_[0-9a-f]{64}$/);
});

await step('listConnections (all, by id, by end user)', async () => {
    const all = await nango.listConnections();
    const mine = all.connections.find((c) => c.connection_id === connectionId);
    assert.ok(mine, 'the connection is listed');
    assert.equal(mine.provider_config_key, key);
    assert.equal(mine.provider, 'one-drive');
    assert.equal(typeof mine.created, 'string');
    assert.equal(mine.end_user.id, endUserId);
    const byId = await nango.listConnections(connectionId);
    assert.deepEqual(byId.connections.map((c) => c.connection_id), [connectionId]);
    const byUser = await nango.listConnections({ userId: endUserId, integrationId: [key] });
    assert.deepEqual(byUser.connections.map((c) => c.connection_id), [connectionId]);
    const none = await nango.listConnections({ userId: 'nobody' });
    assert.deepEqual(none.connections, []);
});

await step('tags: keys stored lowercased, camel-case filter finds them (patchConnection, listConnections)', async () => {
    await nango.patchConnection({ connectionId, provider_config_key: key }, { tags: { Region: 'EU', projectId: 'P-1' } });
    const c = await nango.getConnection(key, connectionId);
    assert.equal(c.tags.region, 'EU');
    assert.equal(c.tags.projectid, 'P-1');
    assert.equal(c.tags.Region, undefined, 'keys are lowercased as Nango stores them');
    const found = await nango.listConnections({ tags: { Region: 'EU' } });
    assert.deepEqual(found.connections.map((x) => x.connection_id), [connectionId]);
    const both = await nango.listConnections({ tags: { projectId: 'P-1', region: 'EU' } });
    assert.deepEqual(both.connections.map((x) => x.connection_id), [connectionId]);
    const none = await nango.listConnections({ tags: { Region: 'US' } });
    assert.deepEqual(none.connections, []);
    const r = await httpError(() => nango.patchConnection({ connectionId, provider_config_key: key }, { tags: { Region: 'EU', region: 'US' } }));
    assert.equal(r.status, 400, 'keys differing only by case are refused');
    assert.equal(r.data.error.code, 'invalid_body');
});

await step('createConnectSession lowercases tag keys', async () => {
    const res = await nango.createConnectSession({ end_user: { id: 'tag-user', tags: { CostCenter: 'X1' } }, tags: { TenantRef: 'acme' }, allowed_integrations: [sdkKey] });
    const s = await fetch(`${host}/connect/session`, { headers: { Authorization: `Bearer ${res.data.token}` } }).then((r) => r.json());
    assert.equal(s.data.endUser.tags.costcenter, 'X1', JSON.stringify(s.data));
    assert.equal(s.data.endUser.tags.CostCenter, undefined);
});

await step('unknown route: 404 in Nango\'s error envelope', async () => {
    const r = await fetch(`${host}/no-such-route`, { headers: { Authorization: `Bearer ${secretKey}` } });
    assert.equal(r.status, 404);
    const body = await r.json();
    assert.equal(body.error.code, 'not_found');
});

await step('proxy: a POST answered 503 is not retried without Retries', async () => {
    // The Rust side armed one 503 for this path; a retry would have reached Graph (404 or 2xx).
    const endpoint = '/v1.0/me/drive/root:/sdk-no-retry:/children';
    const r = await httpError(() => nango.post({ endpoint, providerConfigKey: key, connectionId, data: { name: 'x', folder: {} } }));
    assert.equal(r.status, 503);
    const again = await httpError(() => nango.post({ endpoint, providerConfigKey: key, connectionId, data: { name: 'x', folder: {} } }));
    assert.notEqual(again.status, 503, 'the one-shot fault was used by the first attempt alone');
});

await step('createConnectSession accepts overrides (docs_connect shown in the Connect UI); unknown keys are 400', async () => {
    const docs = 'https://docs.example.com/connect-onedrive';
    const res = await nango.createConnectSession({ end_user: { id: 'ov-user' }, allowed_integrations: [sdkKey], overrides: { [sdkKey]: { docs_connect: docs } } });
    const s = await fetch(`${host}/connect/session`, { headers: { Authorization: `Bearer ${res.data.token}` } }).then((r) => r.json());
    assert.equal(s.data.overrides[sdkKey].docs_connect, docs);
    const page = await fetch(res.data.connect_link).then((r) => r.text());
    assert.ok(page.includes(docs), 'the Connect UI links the docs');
    const bad = await httpError(() => nango.createConnectSession({ end_user: { id: 'x' }, overrides: { [sdkKey]: { docs_connect: docs, colour: 'red' } } }));
    assert.equal(bad.status, 400);
    assert.equal(bad.data.error.code, 'invalid_body');
    const badDefaults = await httpError(() =>
        nango.createConnectSession({ end_user: { id: 'x' }, allowed_integrations: [sdkKey], integrations_config_defaults: { [sdkKey]: { connection_config: {}, unknown_key: 1 } } })
    );
    assert.equal(badDefaults.status, 400);
    assert.equal(badDefaults.data.error.code, 'invalid_body');
});

await step('a connect session token reads providers, an integration and its session, with CORS', async () => {
    const res = await nango.createConnectSession({ end_user: { id: 'cors-user' }, allowed_integrations: [sdkKey] });
    const auth = { Authorization: `Bearer ${res.data.token}`, Origin: 'https://app.example.com' };
    const providers = await fetch(`${host}/providers`, { headers: auth });
    assert.equal(providers.status, 200);
    assert.equal(providers.headers.get('access-control-allow-origin'), '*');
    assert.ok((await providers.json()).data.some((p) => p.name === 'one-drive'));
    const integ = await fetch(`${host}/integrations/${sdkKey}`, { headers: auth });
    assert.equal(integ.status, 200);
    assert.equal((await integ.json()).data.unique_key, sdkKey);
    const withCreds = await fetch(`${host}/integrations/${sdkKey}?include=credentials`, { headers: auth });
    assert.equal(withCreds.status, 403, 'credentials need the secret key');
    const session = await fetch(`${host}/connect/session`, { headers: auth });
    assert.equal(session.headers.get('access-control-allow-origin'), '*');
    assert.deepEqual((await session.json()).data.allowed_integrations, [sdkKey]);
    for (const path of ['/providers', `/integrations/${sdkKey}`, '/connect/session']) {
        const pre = await fetch(`${host}${path}`, {
            method: 'OPTIONS',
            headers: { Origin: 'https://app.example.com', 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' }
        });
        assert.equal(pre.status, 204, path);
        assert.equal(pre.headers.get('access-control-allow-origin'), '*', path);
        assert.match(pre.headers.get('access-control-allow-headers'), /authorization/, path);
    }
    const listed = await fetch(`${host}/connections`, { headers: auth });
    assert.equal(listed.status, 401, 'other routes still need the secret key');
});

let firstToken;
await step('getConnection', async () => {
    const c = await nango.getConnection(key, connectionId);
    assert.equal(c.connection_id, connectionId);
    assert.equal(c.provider_config_key, key);
    assert.equal(c.credentials.type, 'OAUTH2');
    assert.equal(typeof c.credentials.access_token, 'string');
    assert.ok(c.credentials.access_token.length > 100, 'a JWT access token');
    assert.equal(c.credentials.refresh_token, undefined, 'refresh token hidden by default');
    assert.equal(c.credentials.raw.refresh_token, undefined, 'hidden inside raw too');
    assert.ok(Date.parse(c.credentials.expires_at) > Date.now());
    assert.equal(typeof c.connection_config.tenantId, 'string');
    assert.equal(c.end_user.id, endUserId);
    for (const f of ['created_at', 'updated_at', 'last_fetched_at']) {
        assert.equal(typeof c[f], 'string', f);
    }
    firstToken = c.credentials.access_token;
    const withRt = await nango.getConnection(key, connectionId, false, true);
    assert.equal(typeof withRt.credentials.refresh_token, 'string', 'refresh token on request');
});

await step('getConnection of an unknown connection: 404', async () => {
    const r = await httpError(() => nango.getConnection(key, 'no-such-connection'));
    assert.equal(r.status, 404);
    assert.equal(r.data.error.code, 'not_found');
});

await step('getToken (and forced refresh)', async () => {
    const t = await nango.getToken(key, connectionId);
    assert.equal(t, firstToken, 'a valid token is not refreshed');
    const fresh = await nango.getToken(key, connectionId, true);
    assert.equal(typeof fresh, 'string');
    assert.notEqual(fresh, firstToken, 'forceRefresh gives a new token');
    const raw = await nango.getRawTokenResponse(key, connectionId);
    assert.equal(raw.token_type, 'Bearer');
});

await step('setMetadata / getMetadata / updateMetadata', async () => {
    const set = await nango.setMetadata(key, connectionId, { folder: 'Reports', nested: { a: 1 } });
    assert.equal(set.status, 201);
    assert.deepEqual(await nango.getMetadata(key, connectionId), { folder: 'Reports', nested: { a: 1 } });
    const upd = await nango.updateMetadata(key, connectionId, { nested: { b: 2 }, extra: true });
    assert.equal(upd.status, 200);
    assert.deepEqual(await nango.getMetadata(key, connectionId), { folder: 'Reports', nested: { b: 2 }, extra: true });
    const replaced = await nango.setMetadata(key, [connectionId], { only: 'this' });
    assert.equal(replaced.status, 201);
    assert.deepEqual(await nango.getMetadata(key, connectionId), { only: 'this' });
    const r = await httpError(() => nango.setMetadata(key, 'no-such-connection', { x: 1 }));
    assert.equal(r.status, 404);
    assert.equal(r.data.error.code, 'unknown_connection');
});

await step('proxy GET /v1.0/me/drives (get and proxy)', async () => {
    const res = await nango.get({ endpoint: '/v1.0/me/drives', providerConfigKey: key, connectionId });
    assert.equal(res.status, 200);
    assert.equal(res.data.value[0].driveType, 'business');
    const me = await nango.proxy({ method: 'GET', endpoint: 'v1.0/me', providerConfigKey: key, connectionId, params: { $select: 'id,userPrincipalName' } });
    assert.equal(me.status, 200);
    assert.equal(typeof me.data.userPrincipalName, 'string');
});

await step('proxy POST creates a folder, GET lists it', async () => {
    const name = `sdk-folder-${Date.now()}`;
    const res = await nango.post({
        endpoint: '/v1.0/me/drive/root/children',
        providerConfigKey: key,
        connectionId,
        data: { name, folder: {}, '@microsoft.graph.conflictBehavior': 'fail' }
    });
    assert.equal(res.status, 201, 'the upstream status passes through (docs/api.md)');
    assert.equal(res.data.name, name);
    assert.ok(res.data.folder, 'a folder');
    const list = await nango.get({ endpoint: '/v1.0/me/drive/root/children', providerConfigKey: key, connectionId });
    assert.ok(list.data.value.some((i) => i.name === name), 'the new folder is listed');
    // Graph's errors pass through unchanged.
    const again = await httpError(() =>
        nango.post({
            endpoint: '/v1.0/me/drive/root/children',
            providerConfigKey: key,
            connectionId,
            data: { name, folder: {}, '@microsoft.graph.conflictBehavior': 'fail' }
        })
    );
    assert.equal(again.status, 409);
    assert.equal(again.data.error.code, 'nameAlreadyExists');
});

await step('proxy with an unknown integration: 404 unknown_provider_config', async () => {
    const r = await httpError(() => nango.get({ endpoint: '/v1.0/me', providerConfigKey: 'nope', connectionId }));
    assert.equal(r.status, 404);
    assert.equal(r.data.error.code, 'unknown_provider_config');
});

await step('a wrong secret key: 401 unknown_account', async () => {
    const bad = new Nango({ host, secretKey: '00000000-0000-4000-8000-000000000000' });
    const r = await httpError(() => bad.listConnections());
    assert.equal(r.status, 401);
    assert.equal(r.data.error.code, 'unknown_account');
});

const recordCount = Number(env('GRANTD_RECORD_COUNT'));

await step('listRecords', async () => {
    const seen = new Set();
    let cursor = null;
    let pages = 0;
    do {
        const page = await nango.listRecords({
            providerConfigKey: key,
            connectionId,
            model: 'OneDriveFile',
            limit: 10,
            ...(cursor ? { cursor } : {}),
        });
        pages += 1;
        for (const r of page.records) {
            assert.ok(!seen.has(r.id), 'each record once');
            seen.add(r.id);
            assert.equal(r._nango_metadata.last_action, 'ADDED');
            assert.equal(typeof r.name, 'string');
            assert.equal(typeof r.is_folder, 'boolean');
        }
        cursor = page.next_cursor;
    } while (cursor);
    assert.equal(seen.size, recordCount, 'every item of the drive is a record');
    assert.ok(pages > 1 || recordCount <= 10, 'paged by cursor');
    const some = await nango.listRecords({
        providerConfigKey: key, connectionId, model: 'OneDriveFile', ids: [...seen].slice(0, 2),
    });
    assert.equal(some.records.length, Math.min(2, seen.size));
    const deleted = await nango.listRecords({
        providerConfigKey: key, connectionId, model: 'OneDriveFile', filter: 'deleted',
    });
    assert.deepEqual(deleted.records, []);
});

await step('syncStatus', async () => {
    const res = await nango.syncStatus(key, ['user-files'], connectionId);
    assert.equal(res.syncs.length, 1);
    assert.equal(res.syncs[0].name, 'user-files');
    assert.equal(res.syncs[0].recordCount.OneDriveFile, recordCount);
});

await step('triggerSync / pauseSync / startSync', async () => {
    const res = await nango.triggerSync(key, ['user-files'], connectionId);
    assert.equal(res.status, 200);
    const paused = await nango.pauseSync(key, ['user-files'], connectionId);
    assert.equal(paused.status, 200);
    const status = await nango.syncStatus(key, ['user-files'], connectionId);
    assert.equal(status.syncs[0].status, 'PAUSED');
    const started = await nango.startSync(key, ['user-files'], connectionId);
    assert.equal(started.status, 200);
    const unknown = await httpError(() => nango.triggerSync(key, ['no-such-sync'], connectionId));
    assert.equal(unknown.status, 400);
});

await step('deleteConnection', async () => {
    const res = await nango.deleteConnection(key, connectionId);
    assert.equal(res.status, 200);
    assert.deepEqual(res.data, { success: true });
    const r = await httpError(() => nango.getConnection(key, connectionId));
    assert.equal(r.status, 404);
    const all = await nango.listConnections();
    assert.ok(!all.connections.some((c) => c.connection_id === connectionId), 'no longer listed');
    const again = await httpError(() => nango.deleteConnection(key, connectionId));
    assert.equal(again.status, 400);
    assert.deepEqual(again.data, { error: { code: 'unknown_connection' } });
});

await step('deleteIntegration', async () => {
    const res = await nango.deleteIntegration(sdkKey);
    assert.equal(res.status, 200);
    const r = await httpError(() => nango.getIntegration({ uniqueKey: sdkKey }));
    assert.equal(r.status, 404);
    assert.equal(r.data.error.code, 'not_found');
});

console.log(`all ${passed} checks passed`);
