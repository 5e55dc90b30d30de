#!/usr/bin/env python3
"""Times a 1 GiB upload session (Graph's resumable upload: createUploadSession, then PUT
fragments with Content-Range to the session's pre-authenticated uploadUrl), either direct to the
emulator or through grantd's proxy (`Base-Url-Override` to the emulator's origin and
`Grantd-Pre-Authenticated: true`, as an app would). Prints the throughput of the PUT phase in
MB/s (10^6 bytes per second, like curl's speed_download).

  upload.py token  EMULATOR_URL        # prints a delegated Graph token for diego (Files.ReadWrite.All)
  upload.py direct EMULATOR_URL TOKEN
  upload.py proxy  GRANTD_URL SECRET_KEY PROVIDER_CONFIG_KEY CONNECTION_ID

Uploading needs a delegated token (the bench app's application permissions are read-only);
`token` signs in through the emulator's sign-in and consent forms, as a user would.
"""
import html
import http.client
import json
import re
import sys
import time
import urllib.parse

CLIENT_ID = "7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60"
CLIENT_SECRET = "gDv8Q~emulator.dev-secret_0123456789abcdefgh"
REDIRECT = "http://127.0.0.1/oauth/callback"

SIZE = 1 << 30
CHUNK = 10 << 20  # a multiple of 320 KiB, under Graph's 60 MiB fragment limit
ITEM = "/v1.0/me/drive/root:/bench-upload.bin:/createUploadSession"


def conn(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port)


def form_attr(page, marker, name):
    """The value of `name` in the tag containing `marker` (the emulator's forms)."""
    at = page.index(marker)
    tag = page[page.rindex("<", 0, at):page.index(">", at)]
    return html.unescape(re.search(name + r'="([^"]*)"', tag).group(1))


def delegated_token(emu):
    """Authorization code flow for diego with the emulator's password, consenting once."""
    c, cookie = conn(emu), ""
    def go(method, path, form=None):
        nonlocal cookie
        h = {"Cookie": cookie} if cookie else {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body, h)
        r = c.getresponse()
        page = r.read().decode()
        for v in r.headers.get_all("Set-Cookie") or []:
            cookie = "; ".join(x for x in [cookie, v.split(";")[0]] if x)
        return r, page
    q = urllib.parse.urlencode({
        "client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT,
        "scope": "Files.ReadWrite.All offline_access", "state": "bench"})
    path = "/organizations/oauth2/v2.0/authorize?" + q
    r, page = go("GET", path)
    for _ in range(6):
        if r.status in (302, 303):
            break
        base = path.split("?")[0]
        if 'id="signin"' in page:
            action = form_attr(page, 'id="signin"', "action")
            form = {"ctx": form_attr(page, 'name="ctx"', "value"),
                    "login": "diego@fabrikam.onmicrosoft.com", "passwd": "emulator"}
        elif 'id="consent"' in page:
            action = form_attr(page, 'id="consent"', "action")
            form = {"ctx": form_attr(page, 'name="ctx"', "value"), "action": "accept"}
        else:
            raise SystemExit(f"unexpected page {r.status}: {page[:300]}")
        path = urllib.parse.urljoin(base, action)
        r, page = go("POST", path, form)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)["code"][0]
    r, page = go("POST", "/organizations/oauth2/v2.0/token", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "scope": "Files.ReadWrite.All offline_access"})
    return json.loads(page)["access_token"]


def main():
    mode, base = sys.argv[1], sys.argv[2]
    if mode == "token":
        print(delegated_token(base))
        return
    if mode == "direct":
        auth = {"Authorization": "Bearer " + sys.argv[3]}
        session_path, extra = ITEM, {}
    else:
        auth = {
            "Authorization": "Bearer " + sys.argv[3],
            "Provider-Config-Key": sys.argv[4],
            "Connection-Id": sys.argv[5],
        }
        session_path = "/proxy" + ITEM
    c = conn(base)
    body = json.dumps({"item": {"@microsoft.graph.conflictBehavior": "replace"}})
    c.request("POST", session_path, body, {**auth, "Content-Type": "application/json"})
    r = c.getresponse()
    session = json.loads(r.read())
    assert r.status == 200, (r.status, session)
    upload = urllib.parse.urlsplit(session["uploadUrl"])
    path = upload.path + ("?" + upload.query if upload.query else "")
    if mode == "direct":
        target, put_path, headers = conn(session["uploadUrl"]), path, {}
    else:
        origin = f"{upload.scheme}://{upload.netloc}"
        target, put_path = c, "/proxy" + path
        headers = {**auth, "Base-Url-Override": origin, "Grantd-Pre-Authenticated": "true"}
    data = memoryview(b"\x5a" * CHUNK)
    start, t0 = 0, time.monotonic()
    while start < SIZE:
        n = min(CHUNK, SIZE - start)
        h = {**headers, "Content-Range": f"bytes {start}-{start + n - 1}/{SIZE}",
             "Content-Length": str(n)}
        target.request("PUT", put_path, data[:n], h)
        r = target.getresponse()
        out = r.read()
        start += n
        want = (202,) if start < SIZE else (200, 201)
        assert r.status in want, (r.status, out[:300])
    elapsed = time.monotonic() - t0
    assert json.loads(out)["size"] == SIZE, out[:300]
    print(f"{SIZE / elapsed / 1e6:.0f}")


if __name__ == "__main__":
    main()
