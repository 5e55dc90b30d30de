//! Scope strings: which resource a scope names (Graph, a SharePoint host, OIDC), the catalog of
//! known permissions, and how granted scopes appear in tokens and token responses.

use std::collections::BTreeSet;

use super::errors::{self, AadError};
use crate::directory::{App, Directory, User};
use crate::tokens::GRAPH_APP_ID;

pub const GRAPH_URI: &str = "https://graph.microsoft.com";
/// OpenID Connect scopes; they belong to no resource.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Delegated Graph permissions the emulator knows (anything else is AADSTS650053).
pub const GRAPH_DELEGATED: &[&str] = &[
    "User.Read",
    "User.ReadBasic.All",
    "User.Read.All",
    "Files.Read",
    "Files.Read.All",
    "Files.ReadWrite",
    "Files.ReadWrite.All",
    "Files.ReadWrite.AppFolder",
    "Files.Read.Selected",
    "Files.ReadWrite.Selected",
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
    "Mail.Read",
    "Calendars.Read",
    "Contacts.Read",
    "Directory.Read.All",
];

/// Delegated SharePoint permissions.
pub const SHAREPOINT_DELEGATED: &[&str] = &[
    "AllSites.Read",
    "AllSites.Write",
    "AllSites.Manage",
    "AllSites.FullControl",
    "MyFiles.Read",
    "MyFiles.Write",
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Search.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
    "User.Read.All",
    "User.ReadWrite.All",
];

/// The consumer OneDrive API's scopes (personal Microsoft accounts only): what Microsoft's
/// File Picker v8 for personal accounts needs (`OneDrive.ReadWrite` in Microsoft's consumer
/// samples; the picker docs also name `OneDrive.Read`, the samples' readme `OneDrive.ReadOnly`).
pub const ONEDRIVE_CONSUMER: &[&str] =
    &["OneDrive.Read", "OneDrive.ReadOnly", "OneDrive.ReadWrite"];

/// The `aud` of the emulator's consumer OneDrive tokens. Microsoft's personal-account access
/// tokens are opaque (not JWTs), so no audience is visible there; the emulator names the API
/// the consumer picker calls (`api.onedrive.com`).
pub const ONEDRIVE_CONSUMER_AUDIENCE: &str = "https://api.onedrive.com";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Graph,
    /// The consumer OneDrive API (`OneDrive.*` scopes of personal accounts).
    OneDriveConsumer,
    /// A SharePoint host (`contoso.sharepoint.com`).
    SharePoint(String),
    /// Any other resource URI (not served by the emulator).
    Other(String),
}

impl Resource {
    /// The `aud` of delegated tokens for this resource.
    pub fn audience(&self) -> String {
        match self {
            Resource::Graph => GRAPH_APP_ID.to_owned(),
            Resource::OneDriveConsumer => ONEDRIVE_CONSUMER_AUDIENCE.to_owned(),
            Resource::SharePoint(h) => format!("https://{h}"),
            Resource::Other(u) => u.clone(),
        }
    }

    pub fn uri(&self) -> String {
        match self {
            Resource::Graph => GRAPH_URI.to_owned(),
            Resource::OneDriveConsumer => ONEDRIVE_CONSUMER_AUDIENCE.to_owned(),
            Resource::SharePoint(h) => format!("https://{h}"),
            Resource::Other(u) => u.clone(),
        }
    }
}

/// A parsed scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Oidc(&'static str),
    /// A permission (or `.default`) of a resource.
    Resource(Resource, String),
}

/// Splits a space-separated scope parameter.
pub fn split(raw: &str) -> Vec<String> {
    raw.split([' ', '+'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses one scope string. Bare names are Graph; `https://host/Name` names `host`'s resource.
pub fn parse(s: &str) -> Result<Scope, AadError> {
    if let Some(o) = OIDC_SCOPES.iter().find(|o| o.eq_ignore_ascii_case(s)) {
        return Ok(Scope::Oidc(o));
    }
    if s.chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>' | '"' | '\'' | '\\'))
    {
        return Err(errors::invalid_scope(s));
    }
    let (resource, name) = if let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    {
        let (host, name) = rest
            .split_once('/')
            .ok_or_else(|| errors::invalid_scope(s))?;
        let host = host.to_ascii_lowercase();
        let r = if host == "graph.microsoft.com" {
            Resource::Graph
        } else if host.ends_with(".sharepoint.com") {
            Resource::SharePoint(host)
        } else {
            Resource::Other(format!("https://{host}"))
        };
        (r, name.to_owned())
    } else if let Some((id, name)) = s.split_once('/') {
        if id.eq_ignore_ascii_case(GRAPH_APP_ID) {
            (Resource::Graph, name.to_owned())
        } else {
            (Resource::Other(id.to_owned()), name.to_owned())
        }
    } else if let Some(c) = canonical(ONEDRIVE_CONSUMER, s) {
        (Resource::OneDriveConsumer, c.to_owned())
    } else {
        (Resource::Graph, s.to_owned())
    };
    if name.is_empty() || name.contains('/') {
        return Err(errors::invalid_scope(s));
    }
    Ok(Scope::Resource(resource, name))
}

fn canonical(catalog: &[&'static str], name: &str) -> Option<&'static str> {
    catalog
        .iter()
        .find(|c| c.eq_ignore_ascii_case(name))
        .copied()
}

/// The app's statically configured delegated permissions (what `.default` means for Graph).
pub fn static_graph_scopes(app: &App) -> Vec<String> {
    if app.delegated_permissions.is_empty() {
        vec!["User.Read".to_owned()]
    } else {
        app.delegated_permissions.clone()
    }
}

/// Validates the scopes of an authorize request and expands them into the canonical strings
/// consent is recorded for (Graph bare names, `https://host/Name` for SharePoint, OIDC names).
pub fn expand_for_consent(
    dir: &Directory,
    app: &App,
    raw: &[String],
) -> Result<Vec<String>, AadError> {
    let mut out: Vec<String> = Vec::new();
    let mut defaults: BTreeSet<String> = BTreeSet::new();
    let mut dynamic: BTreeSet<String> = BTreeSet::new();
    let push = |out: &mut Vec<String>, s: String| {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&s)) {
            out.push(s);
        }
    };
    for s in raw {
        match parse(s)? {
            Scope::Oidc(o) => push(&mut out, o.to_owned()),
            Scope::Resource(r, name) => {
                let key = r.uri();
                if name == ".default" {
                    defaults.insert(key.clone());
                } else {
                    dynamic.insert(key.clone());
                }
                if defaults.contains(&key) && dynamic.contains(&key) {
                    return Err(errors::invalid_scope(&raw.join(" ")));
                }
                match r {
                    Resource::Graph if name == ".default" => {
                        for s in static_graph_scopes(app) {
                            match parse(&s) {
                                Ok(Scope::Oidc(o)) => push(&mut out, o.to_owned()),
                                _ => push(&mut out, s),
                            }
                        }
                    }
                    Resource::Graph => {
                        let c = canonical(GRAPH_DELEGATED, &name)
                            .ok_or_else(|| unknown_permission(app, s, GRAPH_APP_ID))?;
                        push(&mut out, c.to_owned());
                    }
                    Resource::SharePoint(host) => {
                        if dir.tenant_by_sharepoint_host(&host).is_none() {
                            return Err(errors::resource_not_found(
                                &format!("https://{host}"),
                                "common",
                            ));
                        }
                        if name == ".default" {
                            for n in ["AllSites.Read", "MyFiles.Read"] {
                                push(&mut out, format!("https://{host}/{n}"));
                            }
                        } else {
                            let c = canonical(SHAREPOINT_DELEGATED, &name).ok_or_else(|| {
                                unknown_permission(app, s, &format!("https://{host}"))
                            })?;
                            push(&mut out, format!("https://{host}/{c}"));
                        }
                    }
                    Resource::OneDriveConsumer => push(&mut out, name),
                    Resource::Other(uri) => return Err(errors::resource_not_found(&uri, "common")),
                }
            }
        }
    }
    Ok(out)
}

fn unknown_permission(app: &App, scope: &str, resource: &str) -> AadError {
    AadError::new(
        "invalid_client",
        650053,
        format!(
            "The application '{}' asked for scope '{scope}' that doesn't exist on the resource '{resource}'. Contact the app vendor.",
            app.display_name
        ),
    )
    .status(http::StatusCode::BAD_REQUEST)
}

/// What a delegated token grants.
#[derive(Debug, Clone)]
pub struct Granted {
    pub resource: Resource,
    /// `scp` claim value.
    pub scp: String,
    /// `scope` of the token response.
    pub response_scope: String,
    /// Effective requested scopes include `openid` / `email`.
    pub openid: bool,
    pub email: bool,
}

/// Resolves the scopes of a token request (from a code or a refresh token) against what the user
/// consented to: the token is for the first resource named; its permissions must be consented.
pub fn resolve_delegated(
    dir: &Directory,
    user: &User,
    app: &App,
    requested: &[String],
    consented: &BTreeSet<String>,
) -> Result<Granted, AadError> {
    let mut oidc: Vec<&'static str> = Vec::new();
    let mut resource: Option<Resource> = None;
    let mut names: Vec<String> = Vec::new();
    for s in requested {
        match parse(s)? {
            Scope::Oidc(o) => {
                if !oidc.contains(&o) {
                    oidc.push(o)
                }
            }
            Scope::Resource(r, name) => {
                if resource.is_none() {
                    resource = Some(r.clone());
                }
                if resource.as_ref() == Some(&r) {
                    names.push(name);
                }
            }
        }
    }
    let resource = resource.unwrap_or(Resource::Graph);
    let is_consented = |full: &str| consented.iter().any(|c| c.eq_ignore_ascii_case(full));
    let mut granted: Vec<String> = Vec::new();
    match &resource {
        Resource::Graph => {
            let consented_graph: Vec<String> = consented
                .iter()
                .filter(|c| !c.contains('/') && !OIDC_SCOPES.contains(&c.as_str()))
                .cloned()
                .collect();
            // Entra puts every consented permission of the resource into the token, not only
            // the requested ones (a refresh asking for `User.Read` after consent to `User.Read
            // Files.ReadWrite.All` gets both); what was asked must be among them.
            if !names.iter().any(|n| n == ".default") {
                for n in &names {
                    let c = canonical(GRAPH_DELEGATED, n)
                        .ok_or_else(|| unknown_permission(app, n, GRAPH_APP_ID))?;
                    if !is_consented(c) {
                        return Err(errors::consent_required(&app.client_id, &app.display_name));
                    }
                }
            }
            granted = consented_graph;
        }
        Resource::SharePoint(host) => {
            let tenant = dir.tenant_by_sharepoint_host(host);
            if tenant.is_none_or(|t| t.id != user.tenant_id) {
                let tname = dir
                    .tenants
                    .get(&user.tenant_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_else(|| user.tenant_id.clone());
                return Err(errors::resource_not_found(
                    &format!("https://{host}"),
                    &tname,
                ));
            }
            for n in &names {
                if n == ".default" {
                    let write = consented
                        .iter()
                        .any(|c| c.contains("ReadWrite") || c.ends_with(".Write"));
                    let set: &[&str] = if write {
                        &["AllSites.Write", "MyFiles.Write"]
                    } else {
                        &["AllSites.Read", "MyFiles.Read"]
                    };
                    granted.extend(set.iter().map(|s| s.to_string()));
                } else {
                    let c = canonical(SHAREPOINT_DELEGATED, n)
                        .ok_or_else(|| unknown_permission(app, n, &resource.uri()))?;
                    granted.push(c.to_owned());
                }
            }
            // Plus every permission consented on this host, as for Graph.
            let prefix = format!("{}/", resource.uri());
            granted.extend(consented.iter().filter_map(|c| {
                c.get(..prefix.len())
                    .filter(|p| p.eq_ignore_ascii_case(&prefix))
                    .map(|_| c[prefix.len()..].to_owned())
                    .filter(|n| canonical(SHAREPOINT_DELEGATED, n).is_some())
            }));
        }
        Resource::OneDriveConsumer => {
            // Personal accounts only: a work account's tenant has no such scope (AADSTS70011,
            // "…is not configured for this tenant", OneDrive/samples#52).
            if user.kind != crate::directory::AccountKind::Personal {
                return Err(AadError::new(
                    "invalid_scope",
                    70011,
                    format!(
                        "The provided value for the input parameter 'scope' is not valid. The scope '{}' is not configured for this tenant.",
                        names.join(" ")
                    ),
                ));
            }
            // Consent to Files.* covers them: reading with any Files.* permission, writing with
            // Files.ReadWrite*.
            let has = |p: &str| is_consented(p);
            let read = [
                "Files.Read",
                "Files.Read.All",
                "Files.ReadWrite",
                "Files.ReadWrite.All",
            ]
            .iter()
            .any(|p| has(p))
                || names.iter().any(|n| is_consented(n));
            let write = ["Files.ReadWrite", "Files.ReadWrite.All"]
                .iter()
                .any(|p| has(p))
                || is_consented("OneDrive.ReadWrite");
            for n in &names {
                let ok = if n == "OneDrive.ReadWrite" {
                    write
                } else {
                    read
                };
                if !ok {
                    return Err(errors::consent_required(&app.client_id, &app.display_name));
                }
                granted.push(n.clone());
            }
        }
        Resource::Other(uri) => {
            let tname = dir
                .tenants
                .get(&user.tenant_id)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| user.tenant_id.clone());
            return Err(errors::resource_not_found(uri, &tname));
        }
    }
    granted.sort_by_key(|s| s.to_ascii_lowercase());
    granted.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    let visible_oidc: Vec<&str> = oidc
        .iter()
        .copied()
        .filter(|o| *o != "offline_access")
        .collect();
    let (scp, response_scope) = match &resource {
        Resource::Graph | Resource::OneDriveConsumer => {
            let mut scp: Vec<String> = granted.clone();
            scp.extend(visible_oidc.iter().map(|s| s.to_string()));
            scp.sort_by_key(|s| s.to_ascii_lowercase());
            let mut resp = granted.clone();
            resp.extend(visible_oidc.iter().map(|s| s.to_string()));
            (scp.join(" "), resp.join(" "))
        }
        _ => {
            let mut resp: Vec<String> = granted
                .iter()
                .map(|n| format!("{}/{n}", resource.uri()))
                .collect();
            resp.extend(visible_oidc.iter().map(|s| s.to_string()));
            (granted.join(" "), resp.join(" "))
        }
    };
    Ok(Granted {
        resource,
        scp,
        response_scope,
        openid: oidc.contains(&"openid"),
        email: oidc.contains(&"email"),
    })
}

/// Human text for a permission on the consent page.
pub fn describe(scope: &str) -> String {
    let name = scope.rsplit('/').next().unwrap_or(scope);
    let text = match name {
        "openid" => "Sign you in",
        "profile" => "View your basic profile",
        "email" => "View your email address",
        "offline_access" => "Maintain access to data you have given it access to",
        "User.Read" => "Sign you in and read your profile",
        "User.Read.All" => "Read all users' full profiles",
        "Files.Read" => "Read your files",
        "Files.Read.All" => "Read all files that you have access to",
        "Files.ReadWrite" => "Have full access to your files",
        "Files.ReadWrite.All" => "Have full access to all files you have access to",
        "Sites.Read.All" => "Read items in all site collections",
        "Sites.ReadWrite.All" => "Edit or delete items in all site collections",
        "AllSites.Read" => "Read items in all site collections (SharePoint)",
        "MyFiles.Read" => "Read your files (SharePoint)",
        _ => "",
    };
    if text.is_empty() {
        scope.to_owned()
    } else {
        format!("{text} ({scope})")
    }
}
