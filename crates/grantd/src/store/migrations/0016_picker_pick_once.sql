-- A picker session accepts one pick (issue 16): the pick stamps `picked_at` in the transaction
-- that writes the metadata and queues the webhook; a later pick with the same session is
-- refused (409), so a leaked or replayed session cannot write the selection again.
ALTER TABLE picker_sessions ADD COLUMN picked_at {{ts}};
