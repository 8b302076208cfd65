// Chat from the stream's real-time events, with the sender's moderation feedback:
// a message the model hides is shown to its author (and the owner) marked as such.
import { useState, type FormEvent } from "react";

import type { LiveEvent } from "../lib/events";

export interface SentMessage {
  is_moderated: boolean;
}

export function Chat(props: {
  events: LiveEvent[];
  canSend: boolean;
  onSend?: (message: string) => Promise<SentMessage | null>;
  error?: string | null;
}) {
  const [draft, setDraft] = useState("");
  const [feedback, setFeedback] = useState<string | null>(null);
  const messages = props.events.filter((e) => e.type === "chat_message");

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const text = draft.trim();
    if (!text || !props.onSend) return;
    const sent = await props.onSend(text);
    if (!sent) return; // the hook's error says why
    setDraft("");
    setFeedback(
      sent.is_moderated
        ? "Your message was hidden by moderation: only you and the streamer can see it."
        : null,
    );
  };

  return (
    <section className="chat" aria-label="Chat">
      <h3>Chat</h3>
      <ol className="messages" data-testid="chat-messages">
        {messages.map((m) => (
          <li key={m.id ?? `${m.createdAt}-${String(m.data.messageId)}`} className={m.data.isModerated ? "moderated" : ""}>
            <b>{String(m.data.username ?? shortId(m.data.userId))}</b>{" "}
            <span className="text">{String(m.data.message ?? "")}</span>
            {m.data.isModerated ? <em className="flag"> hidden by moderation</em> : null}
          </li>
        ))}
        {messages.length === 0 ? <li className="muted">No messages yet.</li> : null}
      </ol>
      {props.canSend ? (
        <form onSubmit={submit} className="chat-form">
          <input
            aria-label="Message"
            data-testid="chat-input"
            maxLength={500}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            placeholder="Say something…"
          />
          <button type="submit" data-testid="chat-send" disabled={!draft.trim()}>
            Send
          </button>
        </form>
      ) : (
        <p className="muted">Join the stream to chat.</p>
      )}
      {feedback ? <p className="notice" data-testid="moderation-feedback">{feedback}</p> : null}
      {props.error ? <p className="error" role="alert">{props.error}</p> : null}
    </section>
  );
}

export function shortId(v: unknown): string {
  return typeof v === "string" ? `user ${v.slice(0, 8)}` : "someone";
}
