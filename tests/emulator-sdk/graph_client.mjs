// Microsoft's @microsoft/microsoft-graph-client, unmodified, against the emulator over HTTPS (run
// by crates/grantd-emulator/tests/node_sdk.rs; NODE_EXTRA_CA_CERTS names the emulator's CA).
//
// `node graph_client.mjs core`: PageIterator over > 250 items, a delta round with creates and
// deletes, and a 429 retried by the RetryHandler (exactly once, per the emulator's counters).
// Prints "GRAPH CORE OK".
// `node graph_client.mjs upload`: OneDriveLargeFileUploadTask of a 25 MB file with its default
// configuration. Prints "GRAPH UPLOAD OK", or fails naming what the emulator lacks.
// `node graph_client.mjs rename-move`: a delta round that sees a rename and a move made with
// `PATCH /me/drive/items/{id}` (Graph's documented shape). Prints "GRAPH RENAME MOVE OK", or fails
// naming the route when the emulator does not have it.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  Client,
  OneDriveLargeFileUploadTask,
  PageIterator,
} from "@microsoft/microsoft-graph-client";

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `${k} must be set`);
  return v;
};
const BASE = env("EMU_HTTPS");
const CONTROL = env("EMU_CONTROL");
const TOKEN = env("EMU_TOKEN");
const mode = process.argv[2] || "core";

const client = Client.init({
  baseUrl: `${BASE}/`,
  customHosts: new Set([new URL(BASE).hostname]),
  authProvider: (done) => done(null, TOKEN),
});

async function control(method, path, body) {
  const r = await fetch(`${CONTROL}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `control ${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/// Follows a delta feed to its deltaLink; returns [items, deltaLink].
async function deltaAll(start) {
  const items = [];
  let url = start;
  for (;;) {
    const page = await client.api(url).get();
    items.push(...page.value);
    if (page["@odata.nextLink"]) {
      url = page["@odata.nextLink"];
    } else {
      assert.ok(page["@odata.deltaLink"], "a delta round ends with a deltaLink");
      return [items, page["@odata.deltaLink"]];
    }
  }
}

async function core() {
  // 1. PageIterator over more than 250 items (the emulator pages children by 200).
  const folder = await client
    .api("/me/drive/root/children")
    .post({ name: "Many", folder: {}, "@microsoft.graph.conflictBehavior": "fail" });
  const N = 260;
  for (let i = 1; i <= N; i++) {
    const name = `f-${String(i).padStart(3, "0")}.txt`;
    await client
      .api(`/me/drive/items/${folder.id}:/${name}:/content`)
      .header("content-type", "text/plain")
      .put(`file ${i}`);
  }
  const first = await client.api(`/me/drive/items/${folder.id}/children`).get();
  assert.ok(first["@odata.nextLink"], "more than one page");
  const seen = [];
  const it = new PageIterator(client, first, (item) => {
    seen.push(item.name);
    return true;
  });
  await it.iterate();
  assert.equal(seen.length, N);
  assert.equal(new Set(seen).size, N, "no duplicates across pages");
  assert.equal(seen[0], "f-001.txt");
  assert.equal(seen[N - 1], `f-${N}.txt`);
  console.log(`PageIterator over ${N} items: ok`);

  // 2. Delta round: enumerate, create and delete, then the deltaLink shows both.
  const [, link] = await deltaAll("/me/drive/root/delta");
  const created = await client
    .api("/me/drive/root:/delta-new.txt:/content")
    .header("content-type", "text/plain")
    .put("new");
  const doomed = await client.api(`/me/drive/items/${folder.id}:/f-001.txt`).get();
  await client.api(`/me/drive/items/${doomed.id}`).delete();
  const [changes, next] = await deltaAll(link);
  const last = (id) => changes.filter((c) => c.id === id).at(-1);
  assert.equal(last(created.id)?.name, "delta-new.txt", "created item in delta");
  assert.ok(last(doomed.id)?.deleted, "deleted item is a tombstone in delta");
  assert.ok(next && next !== link, "a fresh deltaLink");
  console.log("delta round (create, delete): ok");

  // 3. A 429 with Retry-After, retried by the RetryHandler exactly once.
  await control("DELETE", "/counters");
  await control("POST", "/faults", {
    scope: "graph",
    path_prefix: "/v1.0/me/drive/root",
    status: 429,
    retry_after: 1,
    count: 1,
  });
  const root = await client.api("/me/drive/root").get();
  assert.ok(root.root, "the retried request answered");
  const c = await control("GET", "/counters");
  assert.equal(c.graph_requests["GET /v1.0/me/drive/root"], 2, JSON.stringify(c));
  assert.equal(c.faulted_requests["graph GET /v1.0/me/drive/root"], 1, JSON.stringify(c));
  console.log("429 retried once by the RetryHandler: ok");
  console.log("GRAPH CORE OK");
}

async function upload() {
  // OneDriveLargeFileUploadTask, default configuration, 25 MB.
  const size = 25 * 1024 * 1024;
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + (i >> 11)) & 0xff;
  const task = await OneDriveLargeFileUploadTask.create(client, data, {
    fileName: "large-25mb.bin",
    path: "/",
  });
  // Production mints upload URLs on another host (SharePoint / 1drv), so the SDK does not send
  // the Graph token there; on the Graph host it would, and the upload URL refuses it.
  const uploadHost = new URL(task.uploadSession.url).hostname;
  if (uploadHost === new URL(BASE).hostname) {
    throw new Error(
      `MISSING: the upload URL ${task.uploadSession.url} is on the Graph host, so the SDK sends ` +
        "its Authorization header there (issue 11 item 10: upload URLs on another origin)",
    );
  }
  const result = await task.upload();
  const item = result.responseBody;
  assert.equal(item.name, "large-25mb.bin");
  assert.equal(item.size, size);
  const fetched = await client.api(`/me/drive/items/${item.id}`).get();
  const dl = await fetch(fetched["@microsoft.graph.downloadUrl"]);
  assert.equal(dl.status, 200);
  const back = Buffer.from(await dl.arrayBuffer());
  const sha = (b) => createHash("sha256").update(b).digest("hex");
  assert.equal(sha(back), sha(data), "downloaded bytes equal the uploaded ones");
  console.log("OneDriveLargeFileUploadTask (25 MB, default range size): ok");

  console.log("GRAPH UPLOAD OK");
}

async function renameMove() {
  const folder = await client
    .api("/me/drive/root/children")
    .post({ name: "Moved here", folder: {}, "@microsoft.graph.conflictBehavior": "rename" });
  const a = await client
    .api("/me/drive/root:/rename-me.txt:/content")
    .header("content-type", "text/plain")
    .put("a");
  const b = await client
    .api("/me/drive/root:/move-me.txt:/content")
    .header("content-type", "text/plain")
    .put("b");
  const [, link] = await deltaAll("/me/drive/root/delta");
  try {
    await client.api(`/me/drive/items/${a.id}`).patch({ name: "renamed.txt" });
    await client.api(`/me/drive/items/${b.id}`).patch({ parentReference: { id: folder.id } });
  } catch (e) {
    if (e.statusCode === 405 || e.statusCode === 400) {
      throw new Error(
        `MISSING ROUTE: the emulator answered ${e.statusCode} to PATCH /v1.0/me/drive/items/{item-id} ` +
          `(rename / move, issue 11 item 5): ${e.code}: ${e.message}`,
      );
    }
    throw e;
  }
  const [changes] = await deltaAll(link);
  const last = (id) => changes.filter((c) => c.id === id).at(-1);
  assert.equal(last(a.id)?.name, "renamed.txt", "rename seen in delta");
  assert.equal(last(b.id)?.parentReference?.id, folder.id, "move seen in delta");
  console.log("delta round (rename, move): ok");
  console.log("GRAPH RENAME MOVE OK");
}

try {
  if (mode === "core") await core();
  else if (mode === "upload") await upload();
  else if (mode === "rename-move") await renameMove();
  else throw new Error(`unknown mode ${mode}`);
} catch (e) {
  // Network failures hide their reason in `cause`.
  for (let c = e?.cause; c; c = c.cause) console.error("caused by:", c);
  throw e;
}
