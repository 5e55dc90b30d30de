//! Graph drive subset (`/v1.0/...`).

/// All drives and their items. Placeholder until the Graph side lands.
#[derive(Debug, Default)]
pub struct Drives {}
