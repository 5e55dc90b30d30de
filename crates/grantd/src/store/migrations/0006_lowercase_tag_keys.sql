-- Tag keys are stored lowercased, as Nango stores them (its SDK lowercases keys when it filters
-- connections). Earlier versions kept keys as given; this lowercases the keys of existing rows:
-- connections' and connect sessions' tags and their end users' tags. Values are left as they are.
-- When two keys differ only by case, one of them is kept. Data only: the schema does not change.
--@postgres
UPDATE connections
SET tags = (SELECT jsonb_object_agg(lower(key), value) FROM jsonb_each(tags))
WHERE EXISTS (SELECT 1 FROM jsonb_each(tags) WHERE key <> lower(key));
UPDATE connections
SET end_user = jsonb_set(end_user, '{tags}',
    (SELECT jsonb_object_agg(lower(key), value) FROM jsonb_each(end_user->'tags')))
WHERE jsonb_typeof(end_user->'tags') = 'object'
  AND EXISTS (SELECT 1 FROM jsonb_each(end_user->'tags') WHERE key <> lower(key));
UPDATE connect_sessions
SET tags = (SELECT jsonb_object_agg(lower(key), value) FROM jsonb_each(tags::jsonb))::text
WHERE EXISTS (SELECT 1 FROM jsonb_each(tags::jsonb) WHERE key <> lower(key));
UPDATE connect_sessions
SET end_user = jsonb_set(end_user::jsonb, '{tags}',
    (SELECT jsonb_object_agg(lower(key), value) FROM jsonb_each(end_user::jsonb->'tags')))::text
WHERE jsonb_typeof(end_user::jsonb->'tags') = 'object'
  AND EXISTS (SELECT 1 FROM jsonb_each(end_user::jsonb->'tags') WHERE key <> lower(key));
--@end
--@sqlite
UPDATE connections
SET tags = (SELECT json_group_object(lower(key), value) FROM json_each(connections.tags))
WHERE EXISTS (SELECT 1 FROM json_each(connections.tags) WHERE key <> lower(key));
UPDATE connections
SET end_user = json_set(end_user, '$.tags',
    json((SELECT json_group_object(lower(key), value) FROM json_each(connections.end_user, '$.tags'))))
WHERE json_type(end_user, '$.tags') = 'object'
  AND EXISTS (SELECT 1 FROM json_each(connections.end_user, '$.tags') WHERE key <> lower(key));
UPDATE connect_sessions
SET tags = (SELECT json_group_object(lower(key), value) FROM json_each(connect_sessions.tags))
WHERE EXISTS (SELECT 1 FROM json_each(connect_sessions.tags) WHERE key <> lower(key));
UPDATE connect_sessions
SET end_user = json_set(end_user, '$.tags',
    json((SELECT json_group_object(lower(key), value) FROM json_each(connect_sessions.end_user, '$.tags'))))
WHERE json_type(end_user, '$.tags') = 'object'
  AND EXISTS (SELECT 1 FROM json_each(connect_sessions.end_user, '$.tags') WHERE key <> lower(key));
--@end
