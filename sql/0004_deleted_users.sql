-- Deleted users. Applied by Alembic revision 0004. Never edit once shipped.
--
-- An access token outlives the account it names until it expires, and a token's
-- subject without a users row is provisioned on first sight (Supabase users arrive
-- without one). So that deleting a user sticks, the id is remembered here when its
-- row goes, and such a token is refused (401) instead of bringing the account back.

CREATE TABLE deleted_users (
    id          uuid PRIMARY KEY,                   -- the users.id that was deleted
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
-- Not readable by lumalive_app: it asks `user_deleted` about one id at a time.
ALTER TABLE deleted_users ENABLE ROW LEVEL SECURITY;

CREATE FUNCTION remember_deleted_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO deleted_users (id) VALUES (OLD.id) ON CONFLICT DO NOTHING;
    RETURN OLD;
END $$;

CREATE TRIGGER users_remember_deleted AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION remember_deleted_user();

CREATE FUNCTION user_deleted(uid uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT EXISTS (SELECT 1 FROM deleted_users WHERE id = uid)
$$;
GRANT EXECUTE ON FUNCTION user_deleted(uuid) TO lumalive_app;
