-- Least privilege at login: the application's own non-superuser login role (issue 13).
-- Applied by Alembic revision 0008. Never edit once shipped: add a new numbered file.
--
-- The API and the actors log in as lumalive_app itself (the role the policies name),
-- not as the schema owner followed by SET ROLE: a statement that runs RESET ROLE, or
-- SET ROLE to the owner, must gain nothing. That holds while lumalive_app
--   - is not a superuser and has no BYPASSRLS (either would skip every policy),
--   - is a member of no role (it could SET ROLE to it, or inherit its rights).
-- Logging in is a property of the cluster, not of this schema, and its password must
-- not live in a migration: `cluster/postgres.py` gives the embedded Postgres's
-- lumalive_app its LOGIN and password; an operator does it once on an external one
-- (README, "External Postgres"). This migration only refuses to go on where the role
-- could escape row-level security.

DO $$
DECLARE
    r pg_roles%ROWTYPE;
    member_of text;
BEGIN
    SELECT * INTO r FROM pg_roles WHERE rolname = 'lumalive_app';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role lumalive_app is missing (migration 0001 creates it)';
    END IF;
    IF r.rolsuper OR r.rolbypassrls THEN
        RAISE EXCEPTION 'role lumalive_app may bypass row-level security'
            USING HINT = 'As a superuser: ALTER ROLE lumalive_app NOSUPERUSER NOBYPASSRLS;';
    END IF;
    SELECT string_agg(m.roleid::regrole::text, ', ') INTO member_of
      FROM pg_auth_members m WHERE m.member = r.oid;
    IF member_of IS NOT NULL THEN
        RAISE EXCEPTION 'role lumalive_app is a member of %: it could SET ROLE to them',
            member_of
            USING HINT = format('REVOKE %s FROM lumalive_app;', member_of);
    END IF;
END $$;
