// Microsoft's @azure/msal-node, unmodified, against the emulator over HTTPS (run by
// crates/grantd-emulator/tests/node_sdk.rs; NODE_EXTRA_CA_CERTS names the emulator's CA).
//
// Auth code + PKCE (the sign-in and consent forms are submitted with fetch), refresh through
// MSAL's cache, acquireTokenSilent after the emulator clock moves, client credentials with a
// secret and with a certificate (SHA-1 `thumbprint` and `thumbprintSha256`), and a revoked user
// surfacing as InteractionRequiredAuthError. Prints "MSAL NODE OK" at the end; exits non-zero on
// any failure.
import assert from "node:assert/strict";
import {
  ConfidentialClientApplication,
  CryptoProvider,
  InteractionRequiredAuthError,
} from "@azure/msal-node";

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `${k} must be set`);
  return v;
};
const BASE = env("EMU_HTTPS"); // https://127.0.0.1:PORT
const CONTROL = env("EMU_CONTROL"); // http://127.0.0.1:PORT/_emulator
const TENANT = env("EMU_TENANT");
const CLIENT_ID = env("EMU_CLIENT_ID");
const SECRET = env("EMU_CLIENT_SECRET");
const USER = env("EMU_USER");
const PASSWORD = env("EMU_PASSWORD");
const REDIRECT = env("EMU_REDIRECT");
const CERT_CLIENT_ID = env("EMU_CERT_CLIENT_ID");
const CERT_KEY = env("EMU_CERT_KEY_PEM");
const CERT_SHA1 = env("EMU_CERT_SHA1_HEX");
const CERT_SHA256 = env("EMU_CERT_SHA256_HEX");

const host = new URL(BASE).host;
const authority = `${BASE}/${TENANT}`;
const scopes = ["User.Read", "Files.Read"];

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

// A minimal browser: follows the emulator's sign-in and consent forms with a cookie jar.
function fields(page) {
  const out = {};
  for (const m of page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
    out[unescape(m[1])] = unescape(m[2]);
  }
  return out;
}
function unescape(s) {
  return s
    .replaceAll("&quot;", '"')
    .replaceAll("&#39;", "'")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">")
    .replaceAll("&amp;", "&");
}
function action(page, id) {
  const m = page.match(new RegExp(`<form id="${id}" method="post" action="([^"]+)"`));
  assert.ok(m, `no form ${id} in ${page.slice(0, 400)}`);
  return new URL(unescape(m[1]), BASE).toString();
}
async function signIn(authUrl) {
  const jar = new Map();
  const go = async (url, init = {}) => {
    const headers = { ...(init.headers || {}) };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const r = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const i = pair.indexOf("=");
      jar.set(pair.slice(0, i), pair.slice(i + 1));
    }
    return r;
  };
  const post = (url, data) =>
    go(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(data).toString(),
    });
  let r = await go(authUrl);
  let page = await r.text();
  assert.equal(r.status, 200, page.slice(0, 400));
  r = await post(action(page, "signin"), { ...fields(page), login: USER, passwd: PASSWORD });
  if (r.status === 200) {
    page = await r.text();
    if (page.includes('id="consent"')) {
      r = await post(action(page, "consent"), { ...fields(page), action: "accept" });
    }
  }
  assert.equal(r.status, 302, `expected a redirect, got ${r.status}`);
  const loc = new URL(r.headers.get("location"));
  const code = loc.searchParams.get("code");
  assert.ok(code, `no code in ${loc}`);
  return code;
}

function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());
}

const app = new ConfidentialClientApplication({
  auth: { clientId: CLIENT_ID, clientSecret: SECRET, authority, knownAuthorities: [host] },
});

// 1. Auth code + PKCE.
const crypto = new CryptoProvider();
const { verifier, challenge } = await crypto.generatePkceCodes();
const authUrl = await app.getAuthCodeUrl({
  scopes,
  redirectUri: REDIRECT,
  codeChallenge: challenge,
  codeChallengeMethod: "S256",
  loginHint: USER,
});
assert.ok(authUrl.startsWith(`${authority}/oauth2/v2.0/authorize`), authUrl);
const code = await signIn(authUrl);
const first = await app.acquireTokenByCode({
  code,
  scopes,
  redirectUri: REDIRECT,
  codeVerifier: verifier,
});
assert.ok(first.accessToken && first.account, "token and account");
assert.equal(first.account.username, USER);
assert.equal(first.idTokenClaims.preferred_username, USER);
console.log("auth code + PKCE: ok");

// 2. Silent: served from the cache, then a refresh (forced) through the cached refresh token.
const account = (await app.getTokenCache().getAllAccounts())[0];
const cached = await app.acquireTokenSilent({ account, scopes });
assert.equal(cached.accessToken, first.accessToken, "served from the cache");
const refreshed = await app.acquireTokenSilent({ account, scopes, forceRefresh: true });
assert.notEqual(refreshed.accessToken, first.accessToken);
console.log("refresh: ok");

// 3. Client credentials with the secret.
const cc = await app.acquireTokenByClientCredential({
  scopes: ["https://graph.microsoft.com/.default"],
});
assert.equal(claimsOf(cc.accessToken).idtyp, "app");
console.log("client credentials (secret): ok");

// 4. Client credentials with a certificate, both thumbprint forms msal-node sends.
for (const [label, cert] of [
  ["thumbprint (SHA-1)", { thumbprint: CERT_SHA1, privateKey: CERT_KEY }],
  ["thumbprintSha256", { thumbprintSha256: CERT_SHA256, privateKey: CERT_KEY }],
]) {
  const certApp = new ConfidentialClientApplication({
    auth: { clientId: CERT_CLIENT_ID, clientCertificate: cert, authority, knownAuthorities: [host] },
  });
  const r = await certApp.acquireTokenByClientCredential({
    scopes: ["https://graph.microsoft.com/.default"],
  });
  const c = claimsOf(r.accessToken);
  assert.equal(c.appid, CERT_CLIENT_ID);
  assert.equal(c.appidacr, "2", "certificate credential");
  console.log(`client credentials (certificate, ${label}): ok`);
}

// 5. The emulator clock moves two hours: the new token is minted on the new clock and MSAL's
// silent path still works with the refresh token it holds. (Last before the revocation:
// client assertions are stamped with the real clock, which the emulator would now refuse.)
const before = claimsOf(refreshed.accessToken).iat;
await control("POST", "/clock/advance", { seconds: 7200 });
const later = await app.acquireTokenSilent({ account, scopes, forceRefresh: true });
assert.ok(claimsOf(later.accessToken).iat >= before + 7200, "iat follows the emulator clock");
assert.ok(later.expiresOn > new Date(), "expiry computed from expires_in");
console.log("silent after the clock moved: ok");

// 6. The user's sessions are revoked: MSAL surfaces InteractionRequiredAuthError.
await control("POST", `/users/${encodeURIComponent(USER)}/revoke`);
try {
  await app.acquireTokenSilent({ account, scopes, forceRefresh: true });
  assert.fail("refresh after revocation succeeded");
} catch (e) {
  assert.ok(
    e instanceof InteractionRequiredAuthError,
    `expected InteractionRequiredAuthError, got ${e?.constructor?.name}: ${e?.errorCode} ${e?.message}`,
  );
  assert.ok(String(e.errorMessage || e.message).includes("AADSTS50173"), e.message);
  console.log(`revoked user: InteractionRequiredAuthError (${e.errorCode}/${e.subError}): ok`);
}
console.log("MSAL NODE OK");
