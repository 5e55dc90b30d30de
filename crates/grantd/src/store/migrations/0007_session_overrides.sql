-- Connect sessions keep Nango's `overrides` (per integration: `docs_connect`, the docs link the
-- Connect UI shows), as validated JSON; NULL when the session has none.
ALTER TABLE connect_sessions ADD COLUMN overrides {{text}};
