//! Integration tests: one binary, a module per feature (STYLE §6). Shared helpers live in
//! `support` (e.g. `support::db::TestDb` for a fresh SQLite or PostgreSQL database).

mod abuse;
mod api;
mod app_only;
mod browser;
mod cli;
mod client;
mod connections_fetch;
mod dashboard;
mod feed;
mod feed_bench;
mod feed_chaos;
mod flow;
mod front;
mod last_fetched;
mod layers;
mod lifecycle;
mod lifecycle_gaps;
mod logs;
mod openapi;
mod per_core;
mod pg_crash;
mod picker;
mod proxy;
mod proxy_pool;
mod rekey;
mod schema;
mod sdk;
mod store;
mod support;
mod throttle;
mod tidy;
mod webhooks;
mod ws;
