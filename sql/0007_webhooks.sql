-- Webhooks: subscriptions, a durable delivery queue (issue 14). Applied by Alembic
-- revision 0007. Never edit once shipped: add a new numbered file instead.
--
-- Endpoints. An owner's endpoint (owner_id = a user) hears about that user's own
-- streams only; a platform endpoint (owner_id NULL) is registered by an operator
-- (`lumalive webhook add`, connecting as the schema owner) and hears about every
-- stream, and alone may subscribe to `report.created`.
--
-- Deliveries are enqueued by triggers, in the transaction that writes the event or
-- the report, so a committed event always has its deliveries and a rolled-back one
-- never does. The queue is this table: a dispatcher that dies loses nothing.
--
--   status      pending -> delivered | failed (no more attempts left)
--   attempts    POSTs begun so far; a claim counts one before it POSTs
--   next_attempt_at  when a pending delivery is due; a claim moves it one lease
--               ahead, so a dispatcher that dies mid-POST leaves it due again
--               after the lease (at-least-once: receivers dedupe on webhook-id)
--
-- Secrets. The dispatcher must sign with the secret, so it is stored as it is, not
-- hashed. lumalive_app may not SELECT the column: the API returns the secret once,
-- from the value it generated, and the only way back out is `webhook_claim`, the
-- dispatcher's path (SECURITY DEFINER), which answers only a transaction that names no
-- acting user. An app-role session could still call it so: the same trust the ingest's
-- `stream_for_key` gets; a separate dispatcher login role would narrow it further.
--
-- Event types (`webhook_event_type` maps the internal ones):
--   stream.started           live_stream_events stream_started
--   stream.ended             live_stream_events stream_ended
--   stream.quality_degraded  live_stream_events quality_degraded (none emits it yet)
--   moderation.flagged       live_stream_events moderation_action whose action is
--                            segment_flagged, stream_ended or chat_message_hidden
--   report.created           stream_reports insert; platform endpoints only: reports
--                            are the moderators' queue, and telling the reported
--                            broadcaster at once (with the reporter's id) would invite
--                            retaliation and let a bad actor tidy up before review.
-- Payloads: {"type", "timestamp", "data"} with camelCase keys; `data` is what the
-- stream's owner sees of the event (redact_event's 'owner' audience) plus streamId
-- and ownerId, so an owner's endpoint never learns more than its owner may.


CREATE TABLE webhook_endpoints (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id    uuid REFERENCES users(id) ON DELETE CASCADE,  -- NULL: platform-wide
    url         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events      text[] NOT NULL CHECK (cardinality(events) > 0),
    secret      text NOT NULL CHECK (secret LIKE 'whsec\_%'),  -- see the header
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_owner_idx ON webhook_endpoints (owner_id, created_at);
CREATE INDEX webhook_endpoints_events_idx ON webhook_endpoints USING gin (events);

CREATE TABLE webhook_deliveries (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id       uuid NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    owner_id          uuid,            -- the endpoint's, copied so RLS needs no join
    event_id          uuid NOT NULL,   -- the event's or report's id; the webhook-id
    event_type        varchar(50) NOT NULL,
    payload           jsonb NOT NULL,
    status            varchar(10) NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_attempt_at   timestamptz,
    last_status_code  integer,         -- the receiver's HTTP status, NULL: no answer
    last_error        text,            -- why the last attempt failed
    delivered_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at);


------------------------------------------------------------------------------
-- Enqueueing.

-- The webhook type of an internal event, NULL if no webhook carries it.
CREATE FUNCTION webhook_event_type(kind text, data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN kind = 'stream_started' THEN 'stream.started'
        WHEN kind = 'stream_ended' THEN 'stream.ended'
        WHEN kind = 'quality_degraded' THEN 'stream.quality_degraded'
        WHEN kind = 'moderation_action'
             AND data->>'action' IN ('segment_flagged', 'stream_ended', 'chat_message_hidden')
            THEN 'moderation.flagged'
    END
$$;

-- snake_case keys to camelCase (top level): "source_sequence" -> "sourceSequence".
CREATE FUNCTION jsonb_camel_keys(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT COALESCE(jsonb_object_agg(
        (SELECT string_agg(CASE WHEN i = 1 THEN p ELSE initcap(p) END, '' ORDER BY i)
           FROM unnest(string_to_array(e.key, '_')) WITH ORDINALITY AS t(p, i)),
        e.value), '{}'::jsonb)
      FROM jsonb_each(data) AS e
$$;

-- One pending delivery per subscribed endpoint: the owner's and the platform's.
-- Wakes the dispatchers (on commit; one notification per transaction).
CREATE FUNCTION enqueue_webhook(kind text, event uuid, stream_owner uuid, only_platform boolean,
                                at timestamptz, data jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, owner_id, event_id, event_type, payload)
    SELECT w.id, w.owner_id, event, kind,
           jsonb_build_object('type', kind, 'timestamp', at, 'data', data)
      FROM webhook_endpoints w
     WHERE w.events @> ARRAY[kind]
       AND (w.owner_id IS NULL OR (NOT only_platform AND w.owner_id = stream_owner))
    ON CONFLICT (endpoint_id, event_id) DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('lumalive_webhooks', '');
    END IF;
END $$;

CREATE FUNCTION on_event_webhook() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE owner uuid;
BEGIN
    SELECT user_id INTO owner FROM live_streams WHERE id = NEW.stream_id;
    PERFORM enqueue_webhook(
        webhook_event_type(NEW.event_type, NEW.event_data), NEW.id, owner, false, NEW.created_at,
        jsonb_build_object('streamId', NEW.stream_id, 'ownerId', owner)
            || jsonb_camel_keys(redact_event(NEW.event_type, NEW.event_data, 'owner')));
    RETURN NULL;
END $$;
-- Only the types that carry a webhook pay for it (chat and reactions do not).
CREATE TRIGGER event_webhook AFTER INSERT ON live_stream_events
    FOR EACH ROW WHEN (webhook_event_type(NEW.event_type, NEW.event_data) IS NOT NULL)
    EXECUTE FUNCTION on_event_webhook();

CREATE FUNCTION on_report_webhook() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE owner uuid;
BEGIN
    SELECT user_id INTO owner FROM live_streams WHERE id = NEW.stream_id;
    PERFORM enqueue_webhook('report.created', NEW.id, owner, true, NEW.created_at,
        jsonb_build_object('reportId', NEW.id, 'streamId', NEW.stream_id, 'ownerId', owner,
                           'reporterId', NEW.reporter_id, 'reason', NEW.reason,
                           'details', NEW.details));
    RETURN NULL;
END $$;
CREATE TRIGGER report_webhook AFTER INSERT ON stream_reports
    FOR EACH ROW EXECUTE FUNCTION on_report_webhook();


------------------------------------------------------------------------------
-- The dispatcher's path (actors/webhook_dispatcher.py): claim, then record.

-- Up to `max_rows` due deliveries, each leased for `lease_s` seconds and counted as an
-- attempt, with what it takes to send them. SKIP LOCKED: dispatchers share the queue.
-- Nothing for a transaction that names an acting user: the dispatcher acts as nobody,
-- and a request's transaction (which names its user) has no business here.
CREATE FUNCTION webhook_claim(max_rows integer, lease_s double precision)
RETURNS TABLE (id uuid, event_id uuid, attempts integer, url text, secret text, payload jsonb)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH due AS (
        SELECT d.id FROM webhook_deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND app_user_id() IS NULL
         ORDER BY d.next_attempt_at
         LIMIT max_rows
           FOR UPDATE SKIP LOCKED)
    UPDATE webhook_deliveries d
       SET attempts = d.attempts + 1, last_attempt_at = now(),
           next_attempt_at = now() + make_interval(secs => lease_s)
      FROM due, webhook_endpoints w
     WHERE d.id = due.id AND w.id = d.endpoint_id
    RETURNING d.id, d.event_id, d.attempts, w.url, w.secret, d.payload
$$;

-- The outcome of attempt `attempt`: delivered; or failed for good (`retry_in_s` NULL);
-- or due again in `retry_in_s`. A failure is recorded only by the attempt that holds
-- the current lease (a late answer to an expired lease changes nothing); a success
-- always ends a pending delivery.
CREATE FUNCTION webhook_record(delivery uuid, attempt integer, ok boolean, status_code integer,
                               error text, retry_in_s double precision) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    UPDATE webhook_deliveries
       SET status = CASE WHEN ok THEN 'delivered'
                         WHEN retry_in_s IS NULL THEN 'failed' ELSE 'pending' END,
           last_status_code = status_code,
           last_error = CASE WHEN ok THEN NULL ELSE left(error, 500) END,
           delivered_at = CASE WHEN ok THEN now() END,
           next_attempt_at = CASE WHEN ok OR retry_in_s IS NULL THEN next_attempt_at
                                  ELSE now() + make_interval(secs => retry_in_s) END
     WHERE id = delivery AND status = 'pending' AND (ok OR attempts = attempt)
$$;

-- When the next pending delivery is due (NULL: none), so a dispatcher sleeps no longer.
CREATE FUNCTION webhook_next_due() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'
$$;


------------------------------------------------------------------------------
-- Row-level security: a user sees and manages only their own endpoints and their
-- deliveries; platform endpoints (owner NULL) are the schema owner's (operator_all).
ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;

CREATE POLICY webhooks_own ON webhook_endpoints FOR SELECT USING (owner_id = app_user_id());
CREATE POLICY webhooks_add ON webhook_endpoints FOR INSERT WITH CHECK (owner_id = app_user_id());
CREATE POLICY webhooks_remove ON webhook_endpoints FOR DELETE USING (owner_id = app_user_id());
CREATE POLICY deliveries_own ON webhook_deliveries FOR SELECT USING (owner_id = app_user_id());

DO $$
DECLARE t regclass;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_endpoints'::regclass, 'webhook_deliveries'::regclass]
    LOOP
        EXECUTE format('CREATE POLICY operator_all ON %s TO %I'
                       ' USING (operator_session()) WITH CHECK (operator_session())',
                       t, (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = t));
    END LOOP;
END $$;

-- Every column but the secret (see the header).
GRANT SELECT (id, owner_id, url, events, created_at) ON webhook_endpoints TO lumalive_app;
GRANT INSERT (owner_id, url, events, secret), DELETE ON webhook_endpoints TO lumalive_app;
GRANT SELECT ON webhook_deliveries TO lumalive_app;

-- Functions: the definer ones run as operators (0005, section 5); the dispatcher's are
-- lumalive_app's, the trigger and enqueue functions the owner's alone.
ALTER FUNCTION enqueue_webhook(text, uuid, uuid, boolean, timestamptz, jsonb)
    SET lumalive.definer = on;
ALTER FUNCTION on_event_webhook() SET lumalive.definer = on;
ALTER FUNCTION on_report_webhook() SET lumalive.definer = on;
ALTER FUNCTION webhook_claim(integer, double precision) SET lumalive.definer = on;
ALTER FUNCTION webhook_record(uuid, integer, boolean, integer, text, double precision)
    SET lumalive.definer = on;
ALTER FUNCTION webhook_next_due() SET lumalive.definer = on;
REVOKE EXECUTE ON FUNCTION enqueue_webhook(text, uuid, uuid, boolean, timestamptz, jsonb),
    on_event_webhook(), on_report_webhook() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_event_type(text, jsonb), jsonb_camel_keys(jsonb),
    webhook_claim(integer, double precision),
    webhook_record(uuid, integer, boolean, integer, text, double precision),
    webhook_next_due() TO lumalive_app;
