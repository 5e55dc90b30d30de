#!/usr/bin/env python3
"""MSAL fidelity test: drives the grantd emulator over HTTPS with Microsoft's own `msal` library.

Auth-code flow with PKCE (the sign-in and consent forms are submitted with `requests`), refresh
through MSAL's cache and by refresh token, client credentials, and id_token validation against the
JWKS from the discovery document. Run by `tests/msal.rs`; needs REQUESTS_CA_BUNDLE pointing at the
emulator's CA. Exits non-zero on any failure.
"""
import argparse
import hashlib
import html
import re
import sys
import urllib.parse

import jwt  # PyJWT, a dependency of msal
import msal
import requests


def form_fields(page):
    fields = {}
    for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page):
        fields[html.unescape(m.group(1))] = html.unescape(m.group(2))
    return fields


def form_action(page, form_id):
    m = re.search(r'<form id="%s" method="post" action="([^"]+)"' % form_id, page)
    assert m, "no form %s in page: %s" % (form_id, page[:500])
    return html.unescape(m.group(1))


def sign_in(base, auth_uri, user, password):
    """Plays the browser: GET authorize, POST the sign-in form, accept consent, return the query."""
    s = requests.Session()
    r = s.get(auth_uri, allow_redirects=False)
    assert r.status_code == 200 and 'id="signin"' in r.text, (r.status_code, r.text[:500])
    assert ">Email</label>" in r.text and ">Password</label>" in r.text and ">Sign in</button>" in r.text
    data = dict(form_fields(r.text), login=user, passwd=password)
    r = s.post(base + form_action(r.text, "signin"), data=data, allow_redirects=False)
    if r.status_code == 200 and 'id="consent"' in r.text:
        assert ">Accept</button>" in r.text and ">Cancel</button>" in r.text
        data = dict(form_fields(r.text), action="accept")
        r = s.post(base + form_action(r.text, "consent"), data=data, allow_redirects=False)
    if r.status_code == 200 and 'name="hiddenform"' in r.text:
        return form_fields(r.text)  # response_mode=form_post
    assert r.status_code == 302, (r.status_code, r.text[:500])
    location = r.headers["Location"]
    query = urllib.parse.urlparse(location).query
    return {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="https://127.0.0.1:PORT")
    p.add_argument("--tenant", default="contoso")
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--redirect-uri", required=True)
    a = p.parse_args()
    assert a.base.startswith("https://"), "MSAL needs an https authority"

    authority = "%s/%s" % (a.base, a.tenant)
    app = msal.ConfidentialClientApplication(
        a.client_id,
        client_credential=a.client_secret,
        authority=authority,
        instance_discovery=False,
        validate_authority=False,
    )

    # 1. Auth-code flow with PKCE.
    scopes = ["User.Read", "Files.Read"]
    flow = app.initiate_auth_code_flow(
        scopes, redirect_uri=a.redirect_uri, login_hint=a.user, response_mode="form_post")
    assert "code_challenge=" in flow["auth_uri"], flow["auth_uri"]
    auth_response = sign_in(a.base, flow["auth_uri"], a.user, a.password)
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    assert "access_token" in result, result
    assert "refresh_token" in result, "offline_access is added by MSAL"
    claims = result["id_token_claims"]
    assert claims["preferred_username"] == a.user, claims
    # MSAL sends sha256(nonce) and checks it came back.
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest(), claims
    print("auth code flow: ok (%s)" % claims["preferred_username"])

    # 2. id_token validation against the JWKS from discovery.
    config = requests.get(authority + "/v2.0/.well-known/openid-configuration").json()
    jwks = requests.get(config["jwks_uri"]).json()
    kid = jwt.get_unverified_header(result["id_token"])["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    verified = jwt.decode(
        result["id_token"],
        jwt.PyJWK(key).key,
        algorithms=config["id_token_signing_alg_values_supported"],
        audience=a.client_id,
        issuer=config["issuer"],
    )
    assert verified["tid"] == claims["tid"] and verified["ver"] == "2.0", verified
    print("id_token signature and issuer: ok")

    # 3. Refresh: MSAL's silent path with the cached refresh token, then an explicit one.
    accounts = app.get_accounts(username=a.user)
    assert accounts, "MSAL cached the account (client_info)"
    silent = app.acquire_token_silent(scopes, account=accounts[0], force_refresh=True)
    assert silent and "access_token" in silent, silent
    assert silent["access_token"] != result["access_token"]
    by_rt = app.acquire_token_by_refresh_token(result["refresh_token"], scopes)
    assert "access_token" in by_rt, by_rt
    print("refresh: ok")

    # 4. Client credentials (the tenant has admin-consented the app).
    cc = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert "access_token" in cc, cc
    at = jwt.decode(cc["access_token"], options={"verify_signature": False})
    assert at.get("roles") and "scp" not in at and at["idtyp"] == "app", at
    print("client credentials: ok (roles=%s)" % ",".join(at["roles"]))

    # 5. An error as MSAL surfaces it.
    bad = msal.ConfidentialClientApplication(
        a.client_id, client_credential="wrong", authority=authority,
        instance_discovery=False, validate_authority=False,
    ).acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert bad.get("error") == "invalid_client" and 7000215 in bad.get("error_codes", []), bad
    print("invalid secret surfaces as AADSTS7000215: ok")
    print("MSAL OK")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("MSAL FIDELITY FAILURE: %r" % (e,), file=sys.stderr)
        raise
