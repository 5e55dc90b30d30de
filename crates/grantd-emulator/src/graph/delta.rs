//! `…/root/delta`: the initial enumeration paged with `@odata.nextLink`, `@odata.deltaLink` on
//! the last page, changes (incl. tombstones with the `deleted` facet) since a token,
//! `token=latest`, and `410 resyncRequired` with a `Location` for unknown or expired tokens.
//!
//! A token is opaque to clients; inside it is `generation.since.upto.depth.ordinal.issued`:
//! changes with `since < seq <= upto` (upto fixed by the first page, so later changes wait for the
//! next round), ordered by (depth when last stamped, creation order) — parents first, except a
//! folder moved deeper after a child of the round changed — and continuing after the
//! (depth, ordinal) key of the previous page's last item. Tokens from before a reset (other generation) or older than
//! [`TOKEN_LIFETIME_DAYS`] on the emulator clock answer 410.

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use http::{StatusCode, header};
use serde_json::{Value, json};

use std::collections::VecDeque;
use std::sync::Arc;

use super::drives::{Drive, Item};
use super::error::GraphError;
use super::json::{Render, item_json};

/// Delta tokens older than this are refused with 410 (resync).
pub const TOKEN_LIFETIME_DAYS: i64 = 30;
/// Default and largest delta page sizes.
const DEFAULT_PAGE: usize = 200;
const MAX_PAGE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token {
    generation: u64,
    since: u64,
    /// 0 = not fixed yet (a deltaLink); fixed on the first page of a round.
    upto: u64,
    /// (depth, ordinal) of the last item already returned; (0, 0) = from the start.
    after: (u64, u64),
    issued: i64,
}

impl Token {
    fn encode(&self) -> String {
        let raw = format!(
            "{}.{}.{}.{}.{}.{}",
            self.generation, self.since, self.upto, self.after.0, self.after.1, self.issued
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    fn decode(s: &str) -> Option<Token> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_matches('\''))
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let p: Vec<&str> = raw.split('.').collect();
        if p.len() != 6 {
            return None;
        }
        Some(Token {
            generation: p[0].parse().ok()?,
            since: p[1].parse().ok()?,
            upto: p[2].parse().ok()?,
            after: (p[3].parse().ok()?, p[4].parse().ok()?),
            issued: p[5].parse().ok()?,
        })
    }
}

/// 410 Gone telling the client to enumerate again from `fresh_url`.
pub fn resync(fresh_url: &str) -> GraphError {
    GraphError::new(
        StatusCode::GONE,
        "resyncRequired",
        "Resync required. Replace any local items with the server's version (including deletes) \
         if you're sure that the service was up to date with your local changes when you last \
         sync'd. Upload any local changes that the server doesn't know about.",
    )
    .with_inner("resyncChangesApplyDifferences")
    .with_header(header::LOCATION, fresh_url)
}

/// One delta page. `link_base` is the absolute URL of the delta resource the client called
/// (e.g. `http://…/v1.0/me/drive/root/delta`); links are built on it.
#[allow(clippy::too_many_arguments)]
pub fn page(
    r: &Render,
    drive: &mut Drive,
    generation: u64,
    token: Option<&str>,
    top: Option<usize>,
    link_base: &str,
    now: DateTime<Utc>,
) -> Result<Value, GraphError> {
    // The drive is mutable only for its round orders (`RoundOrders`).
    let top = top.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let link = |t: Token| format!("{link_base}?token={}", t.encode());
    let fresh = Token {
        generation,
        since: 0,
        upto: 0,
        after: (0, 0),
        issued: now.timestamp(),
    };
    let mut tok = match token {
        None => fresh,
        Some("latest") => {
            let t = Token {
                since: drive.seq,
                ..fresh
            };
            return Ok(json!({"value": [], "@odata.deltaLink": link(t)}));
        }
        Some(s) => {
            let t = Token::decode(s).ok_or_else(|| resync(link_base))?;
            let age = now.timestamp() - t.issued;
            let stale = t.generation != generation
                || age > TimeDelta::days(TOKEN_LIFETIME_DAYS).num_seconds()
                || t.since > drive.seq
                || t.upto > drive.seq;
            if stale {
                return Err(resync(link_base));
            }
            t
        }
    };
    if tok.upto == 0 {
        tok.upto = drive.seq;
    }
    let changed = round_page(drive, generation, &tok, top);
    let drive: &Drive = drive;
    let more = changed.len() > top;
    let changed = &changed[..changed.len().min(top)];
    let changed: Vec<((u64, u64), &Item)> = changed
        .iter()
        .filter_map(|(key, id)| drive.items.get(id).map(|i| (*key, i)))
        .collect();
    let value: Vec<Value> = changed
        .iter()
        .map(|(_, i)| item_json(r, drive, i, true))
        .collect();
    let mut out = json!({ "value": value });
    if more {
        let after = changed.last().map_or(tok.after, |(key, _)| *key);
        out["@odata.nextLink"] = json!(link(Token {
            after,
            issued: now.timestamp(),
            ..tok
        }));
    } else {
        let next = Token {
            since: tok.upto,
            upto: 0,
            after: (0, 0),
            issued: now.timestamp(),
            generation,
        };
        out["@odata.deltaLink"] = json!(link(next));
    }
    Ok(out)
}

/// Which round an order belongs to: (generation, since, upto).
type RoundKey = (u64, u64, u64);
/// A round's items in delta order: ((depth, creation ordinal), item id).
type Order = Arc<Vec<((u64, u64), String)>>;

/// Rounds kept at once per drive (many clients may page the same drive; the oldest goes).
const KEPT_ROUNDS: usize = 8;

/// The delta order of the rounds of a drive being paged through, computed on a round's first
/// page (one scan and sort of the drive) and read by its later pages from the previous page's
/// last key (a binary search): a page costs O(page), not O(drive).
///
/// An order stays exact while the round is paged: the round holds the items whose sequence
/// number lies in `(since, upto]`, numbers only grow, and an item's key (its depth when it was
/// stamped, `seq_depth`, and its creation order) changes only with its number. A folder move
/// does not stamp the descendants, whose key stays where their last change put it, so a
/// recomputed order never drops an item behind the previous page's key. Each page re-checks
/// the range on the items it returns, and their key; an order that no longer matches is
/// computed again.
#[derive(Debug, Clone, Default)]
pub struct RoundOrders {
    rounds: VecDeque<(RoundKey, Order)>,
}

impl RoundOrders {
    fn get(&self, key: RoundKey) -> Option<Order> {
        self.rounds
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| o.clone())
    }

    fn put(&mut self, key: RoundKey, order: Order) {
        self.forget(key);
        if self.rounds.len() >= KEPT_ROUNDS {
            self.rounds.pop_front();
        }
        self.rounds.push_back((key, order));
    }

    fn forget(&mut self, key: RoundKey) {
        self.rounds.retain(|(k, _)| *k != key);
    }
}

/// Whether item `i` belongs to the round of `tok`.
fn in_round(i: &Item, tok: &Token) -> bool {
    i.seq > tok.since && i.seq <= tok.upto && (tok.since > 0 || !i.deleted)
}

/// The whole round of `tok` in delta order (a scan and sort of the drive).
fn round_order(drive: &Drive, tok: &Token) -> Vec<((u64, u64), String)> {
    let mut all: Vec<((u64, u64), String)> = drive
        .items
        .values()
        .filter(|i| in_round(i, tok))
        .map(|i| ((i.seq_depth, i.ordinal), i.id.clone()))
        .collect();
    all.sort_unstable_by_key(|(key, _)| *key);
    all
}

/// Up to `top + 1` items of the round of `tok` after its `after` key, in delta order (one more
/// than a page tells whether another follows).
fn round_page(
    drive: &mut Drive,
    generation: u64,
    tok: &Token,
    top: usize,
) -> Vec<((u64, u64), String)> {
    let key = (generation, tok.since, tok.upto);
    let from_order = |drive: &Drive, order: &[((u64, u64), String)]| {
        let start = order.partition_point(|(k, _)| *k <= tok.after);
        let mut page = Vec::with_capacity(top + 1);
        for (k, id) in &order[start..] {
            let Some(i) = drive.items.get(id) else {
                continue;
            };
            if !in_round(i, tok) {
                continue;
            }
            if i.seq_depth != k.0 {
                return None;
            }
            page.push((*k, id.clone()));
            if page.len() > top {
                break;
            }
        }
        Some(page)
    };
    if let Some(order) = drive.delta_rounds.get(key) {
        if let Some(page) = from_order(drive, &order) {
            if page.len() <= top {
                drive.delta_rounds.forget(key);
            }
            return page;
        }
        drive.delta_rounds.forget(key);
    }
    let order = round_order(drive, tok);
    let page = from_order(drive, &order).expect("a fresh order matches the drive");
    if page.len() > top {
        drive.delta_rounds.put(key, Arc::new(order));
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        let t = Token {
            generation: 7,
            since: 3,
            upto: 9,
            after: (2, 4),
            issued: 1_700_000_000,
        };
        assert_eq!(Token::decode(&t.encode()), Some(t));
        assert_eq!(Token::decode("not-a-token"), None);
        assert_eq!(Token::decode(""), None);
    }

    /// Random creates, moves, deletes and restores interleaved with paged delta rounds (two
    /// items a page, so folders move while a round is paged): a client that applies every page
    /// (live item → present, tombstone → gone) ends with exactly the items a walk from the root
    /// reaches. A move stamps neither live descendants nor tombstones below (as on OneDrive for
    /// Business); keyed by their current depth instead of `seq_depth`, items below a folder moved
    /// while a round is paged fell behind the page key and were never reported (issue 12).
    #[test]
    fn delta_client_matches_the_walk_under_random_edits() {
        use super::super::drives::{Conflict, DriveType, Identity};
        use rand::{Rng, SeedableRng};
        for seed in 0..64u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let now = Utc::now();
            let by = Identity::system();
            let mut d = Drive::new(
                "d1".into(),
                DriveType::Business,
                "OneDrive",
                "t",
                by.clone(),
                "http://x".into(),
                now,
            );
            let root = d.root_id.clone();
            let mut client: std::collections::BTreeSet<String> = Default::default();
            let mut tok = Token {
                generation: 1,
                since: 0,
                upto: 0,
                after: (0, 0),
                issued: 0,
            };
            let mut n = 0;
            for _ in 0..400 {
                // One edit.
                let ids: Vec<String> = d.items.keys().cloned().collect();
                let pick = ids[rng.gen_range(0..ids.len())].clone();
                let folders: Vec<String> = d
                    .items
                    .values()
                    .filter(|i| !i.deleted && i.is_folder() && d.is_within(&i.id, &root))
                    .map(|i| i.id.clone())
                    .collect();
                let folder = folders[rng.gen_range(0..folders.len())].clone();
                n += 1;
                let _ = match rng.gen_range(0..6) {
                    0 => d
                        .put_item(&folder, &format!("f{n}"), None, Conflict::Rename, now, &by)
                        .map(|_| ()),
                    1 => d
                        .put_item(&folder, &format!("f{n}"), None, Conflict::Rename, now, &by)
                        .map(|_| ()),
                    2 => d.update_item(
                        &pick,
                        None,
                        Some(&folder),
                        Default::default(),
                        Conflict::Rename,
                        now,
                        &by,
                    ),
                    3 => d.delete(&pick, now, &by),
                    _ => d.restore(&pick, now, &by).map(|_| ()),
                };
                // One delta page of two items (rounds span edits).
                if tok.upto == 0 {
                    tok.upto = d.seq;
                }
                let page = round_page(&mut d, 1, &tok, 2);
                let more = page.len() > 2;
                for (_, id) in page.iter().take(2) {
                    if d.items[id].deleted {
                        client.remove(id);
                    } else if *id != root {
                        client.insert(id.clone());
                    }
                }
                if more {
                    tok.after = page[1].0;
                } else {
                    tok = Token {
                        since: tok.upto,
                        upto: 0,
                        after: (0, 0),
                        ..tok
                    };
                }
            }
            // Drain: rounds until one comes back empty.
            loop {
                if tok.upto == 0 {
                    tok.upto = d.seq;
                }
                let page = round_page(&mut d, 1, &tok, 100_000);
                if page.is_empty() && tok.upto == d.seq {
                    break;
                }
                for (_, id) in &page {
                    if d.items[id].deleted {
                        client.remove(id);
                    } else if *id != root {
                        client.insert(id.clone());
                    }
                }
                tok = Token {
                    since: tok.upto,
                    upto: 0,
                    after: (0, 0),
                    ..tok
                };
            }
            let mut walk = std::collections::BTreeSet::new();
            let mut stack = vec![root.clone()];
            while let Some(c) = stack.pop() {
                for k in d.children(&c) {
                    walk.insert(k.id.clone());
                    stack.push(k.id.clone());
                }
            }
            let extra: Vec<_> = client.difference(&walk).collect();
            let missing: Vec<_> = walk.difference(&client).collect();
            let detail: Vec<_> = extra
                .iter()
                .map(|id| {
                    let i = &d.items[*id];
                    let chain: Vec<_> = std::iter::successors(i.parent.clone(), |p| {
                        d.items.get(p).and_then(|x| x.parent.clone())
                    })
                    .map(|p| (d.items[&p].deleted, d.items[&p].recycled_with.clone()))
                    .collect();
                    (i.deleted, i.recycled_with.clone(), chain)
                })
                .collect();
            assert!(
                extra.is_empty() && missing.is_empty(),
                "seed {seed}: extra {extra:?} {detail:?} missing {missing:?}"
            );
        }
    }
}
