-- Control plane: chat and event writes in one call (issue 12). Applied by Alembic revision
-- 0014. Never edit once shipped: add a new numbered file instead.
--
-- A stream actor group-commits its writes (actors/write_batcher.py). Before this file a
-- chat message was three round trips inside that transaction (set the acting user,
-- insert the message, insert its event) and the actor and Postgres took turns. These
-- two functions take a whole batch of messages (or reactions) as arrays and do the
-- same statements for each, in order, inside Postgres: one round trip per batch.
--
-- They are plain SECURITY INVOKER functions on purpose: each row is written acting as
-- its author (`set_config('lumalive.user_id', …, true)`, exactly what `set_actor` does),
-- so every policy of today holds per message, unchanged: chat_write / reactions (the
-- author, a visible stream), chat_not_barred / reactions_not_barred (bans and timeouts,
-- 0006), events_write (may_insert_event, 0005: a chat_message event only for the
-- stored, unmoderated text). A message that a policy refuses fails the call; the
-- batcher then writes each message of the batch alone, so one refusal sinks no other.
--
--   post_chat(sid, authors, texts, scores, hidden)  the messages, in array order, each
--       with its event (`chat_message`, or `moderation_action`/`chat_message_hidden`
--       without the text when hidden); returns the stored rows in the same order.
--   post_reactions(sid, authors, reactions)  the reactions, each with its `reaction`
--       event; returns the stored rows in order.
--
-- Arrays must have equal lengths (checked). After a call the acting user is the last
-- row's author: a caller that writes more in the transaction names its actor again.

CREATE FUNCTION post_chat(sid uuid, authors uuid[], texts text[], scores real[],
                          hidden boolean[])
RETURNS SETOF live_stream_chat
LANGUAGE plpgsql SET search_path = public AS $$
DECLARE
    n integer := coalesce(array_length(authors, 1), 0);
    msg live_stream_chat;
BEGIN
    IF coalesce(array_length(texts, 1), 0) <> n OR coalesce(array_length(scores, 1), 0) <> n
       OR coalesce(array_length(hidden, 1), 0) <> n THEN
        RAISE EXCEPTION 'post_chat: arrays of different lengths' USING ERRCODE = '22023';
    END IF;
    FOR i IN 1 .. n LOOP
        PERFORM set_config('lumalive.user_id', authors[i]::text, true);
        INSERT INTO live_stream_chat (stream_id, user_id, message, is_moderated, moderation_score)
        VALUES (sid, authors[i], texts[i], hidden[i], scores[i])
        RETURNING * INTO msg;
        IF hidden[i] THEN
            INSERT INTO live_stream_events (stream_id, event_type, event_data)
            VALUES (sid, 'moderation_action', jsonb_build_object(
                'action', 'chat_message_hidden', 'message_id', msg.id, 'user_id', authors[i],
                'score', round(scores[i]::numeric, 4)));
        ELSE
            INSERT INTO live_stream_events (stream_id, event_type, event_data)
            VALUES (sid, 'chat_message', jsonb_build_object(
                'message_id', msg.id, 'user_id', authors[i], 'message', texts[i]));
        END IF;
        RETURN NEXT msg;
    END LOOP;
END $$;

CREATE FUNCTION post_reactions(sid uuid, authors uuid[], reactions text[])
RETURNS SETOF live_stream_reactions
LANGUAGE plpgsql SET search_path = public AS $$
DECLARE
    n integer := coalesce(array_length(authors, 1), 0);
    r live_stream_reactions;
BEGIN
    IF coalesce(array_length(reactions, 1), 0) <> n THEN
        RAISE EXCEPTION 'post_reactions: arrays of different lengths' USING ERRCODE = '22023';
    END IF;
    FOR i IN 1 .. n LOOP
        PERFORM set_config('lumalive.user_id', authors[i]::text, true);
        INSERT INTO live_stream_reactions (stream_id, user_id, reaction)
        VALUES (sid, authors[i], reactions[i])
        RETURNING * INTO r;
        INSERT INTO live_stream_events (stream_id, event_type, event_data)
        VALUES (sid, 'reaction', jsonb_build_object('user_id', authors[i],
                                                    'reaction', reactions[i]));
        RETURN NEXT r;
    END LOOP;
END $$;

REVOKE EXECUTE ON FUNCTION post_chat(uuid, uuid[], text[], real[], boolean[]),
    post_reactions(uuid, uuid[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION post_chat(uuid, uuid[], text[], real[], boolean[]),
    post_reactions(uuid, uuid[], text[]) TO lumalive_app;
