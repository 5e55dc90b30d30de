//! Seed content: every user's OneDrive (a small folder tree, a 30-file folder for paging tests
//! and the generated `big.bin`), and each tenant's root site with its `Shared Documents` library
//! (`Policies/Travel Policy.docx`, `Projects/Roadmap.docx`, `Team Plan.xlsx`, `Brand Guidelines.pptx`).
//!
//! Ids, names and timestamps are deterministic (derived from user and tenant ids), so a reset
//! reproduces the same drive and item ids.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};

use super::content::{Content, QuickXor};
use super::drives::{
    Conflict, Drive, DriveType, FileData, Identity, Model, Site, business_drive_id, guid_from,
    personal_drive_id,
};
use crate::directory::{AccountKind, Directory, Tenant, User};

/// Name of the folder with 30 files, for `$top` paging tests.
pub const PAGING_FOLDER: &str = "Archive";
/// Number of files in [`PAGING_FOLDER`].
pub const PAGING_FILES: usize = 30;
/// Name of the generated large file at the root of every user's drive.
pub const BIG_FILE: &str = "big.bin";

/// When seeded items were created (fixed so snapshots are stable).
pub fn seed_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 9, 0, 0)
        .single()
        .expect("valid date")
}

/// The MIME type Graph reports for a file name.
pub fn mime_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "json" => "application/json",
        "csv" => "text/csv",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

pub fn identity_of(user: &User) -> Identity {
    Identity {
        id: user.id.clone(),
        display_name: user.display_name.clone(),
        email: Some(user.upn.clone()),
    }
}

/// Small in-memory file content with its hash.
pub fn memory_file(name: &str, bytes: Bytes) -> FileData {
    FileData {
        quick_xor: Some(QuickXor::of(&bytes)),
        content: Content::Memory(bytes),
        mime: mime_for(name).to_owned(),
    }
}

fn text_file(name: &str, owner: &str, repeat: usize) -> FileData {
    let line = format!("{name}: seeded by grantd-emulator for {owner}.\n");
    memory_file(name, Bytes::from(line.repeat(repeat)))
}

/// Builds everything from the directory.
pub fn seed_model(dir: &Directory, large_file_size: u64) -> Model {
    let generation = rand::random();
    let mut model = Model {
        generation,
        signer: crate::files::UrlSigner::new(generation),
        large_file_size,
        ..Model::default()
    };
    for user in dir.users.values() {
        provision_user(&mut model, dir, user);
    }
    for tenant in dir.tenants.values() {
        seed_site(&mut model, tenant);
    }
    model
}

/// Creates the user's OneDrive (seeded tree included) if it does not exist yet; returns its id.
/// Also used lazily for users added to the directory after seeding.
pub fn provision_user(model: &mut Model, dir: &Directory, user: &User) -> String {
    if let Some(id) = model.user_drives.get(&user.id) {
        return id.clone();
    }
    let owner = identity_of(user);
    let created = seed_time();
    let mut drive = match user.kind {
        AccountKind::Personal => {
            let id = personal_drive_id(&user.id);
            let web_url = format!("https://onedrive.live.com/?cid={id}");
            let mut owner = owner.clone();
            owner.id = id.clone();
            Drive::new(
                id,
                DriveType::Personal,
                "OneDrive",
                &user.tenant_id,
                owner,
                web_url,
                created,
            )
        }
        AccountKind::Work => {
            let my_host = dir
                .tenants
                .get(&user.tenant_id)
                .map(|t| t.my_host.clone())
                .unwrap_or_else(|| "unknown-my.sharepoint.com".into());
            let slug: String = user
                .upn
                .chars()
                .map(|c| if c == '@' || c == '.' { '_' } else { c })
                .collect();
            let web_url = format!("https://{my_host}/personal/{slug}/Documents");
            let id = business_drive_id(&user.id);
            Drive::new(
                id,
                DriveType::Business,
                "OneDrive",
                &user.tenant_id,
                owner.clone(),
                web_url,
                created,
            )
        }
    };
    drive.owner_user = Some(user.id.clone());
    seed_user_tree(&mut drive, &owner, &user.upn, model.large_file_size);
    let id = drive.id.clone();
    model.user_drives.insert(user.id.clone(), id.clone());
    model.drives.insert(id.clone(), drive);
    id
}

fn folder(d: &mut Drive, parent: &str, name: &str, by: &Identity) -> String {
    d.put_item(parent, name, None, Conflict::Fail, seed_time(), by)
        .expect("seed folder names are valid and unique")
        .0
}

fn file(d: &mut Drive, parent: &str, name: &str, data: FileData, by: &Identity) {
    d.put_item(parent, name, Some(data), Conflict::Fail, seed_time(), by)
        .expect("seed file names are valid and unique");
}

fn seed_user_tree(d: &mut Drive, by: &Identity, upn: &str, large: u64) {
    let root = d.root_id.clone();
    let docs = folder(d, &root, "Documents", by);
    file(
        d,
        &docs,
        "Report.docx",
        text_file("Report.docx", upn, 40),
        by,
    );
    file(
        d,
        &docs,
        "Budget.xlsx",
        text_file("Budget.xlsx", upn, 25),
        by,
    );
    file(
        d,
        &docs,
        "Meeting Notes.txt",
        text_file("Meeting Notes.txt", upn, 3),
        by,
    );
    let photos = folder(d, &root, "Photos", by);
    let vacation = folder(d, &photos, "Vacation", by);
    file(
        d,
        &vacation,
        "beach.jpg",
        text_file("beach.jpg", upn, 60),
        by,
    );
    file(
        d,
        &vacation,
        "sunset.jpg",
        text_file("sunset.jpg", upn, 70),
        by,
    );
    file(
        d,
        &photos,
        "profile.png",
        text_file("profile.png", upn, 10),
        by,
    );
    let archive = folder(d, &root, PAGING_FOLDER, by);
    for n in 1..=PAGING_FILES {
        let name = format!("file-{n:02}.txt");
        file(d, &archive, &name, text_file(&name, upn, 1), by);
    }
    let big = FileData {
        content: Content::Generated { len: large },
        mime: mime_for(BIG_FILE).to_owned(),
        quick_xor: None,
    };
    file(d, &root, BIG_FILE, big, by);
}

fn seed_site(model: &mut Model, tenant: &Tenant) {
    let host = tenant.sharepoint_host.clone();
    let site_id = format!(
        "{host},{},{}",
        guid_from(&format!("site-collection:{}", tenant.id)),
        guid_from(&format!("web:{}", tenant.id))
    );
    let created = seed_time();
    let system = Identity::system();
    let mut lib = Drive::new(
        business_drive_id(&format!("library:{}", tenant.id)),
        DriveType::DocumentLibrary,
        "Documents",
        &tenant.id,
        system.clone(),
        format!("https://{host}/Shared%20Documents"),
        created,
    );
    lib.site_id = Some(site_id.clone());
    let root = lib.root_id.clone();
    let policies = folder(&mut lib, &root, "Policies", &system);
    file(
        &mut lib,
        &policies,
        "Travel Policy.docx",
        text_file("Travel Policy.docx", &tenant.name, 30),
        &system,
    );
    file(
        &mut lib,
        &root,
        "Team Plan.xlsx",
        text_file("Team Plan.xlsx", &tenant.name, 20),
        &system,
    );
    let projects = folder(&mut lib, &root, "Projects", &system);
    file(
        &mut lib,
        &projects,
        "Roadmap.docx",
        text_file("Roadmap.docx", &tenant.name, 15),
        &system,
    );
    file(
        &mut lib,
        &root,
        "Brand Guidelines.pptx",
        text_file("Brand Guidelines.pptx", &tenant.name, 25),
        &system,
    );
    let site = Site {
        id: site_id.clone(),
        tenant_id: tenant.id.clone(),
        host: host.clone(),
        name: String::new(),
        display_name: "Communication site".into(),
        web_url: format!("https://{host}"),
        created,
        drive_ids: vec![lib.id.clone()],
    };
    model.drives.insert(lib.id.clone(), lib);
    model.sites.insert(site_id, site);
}
