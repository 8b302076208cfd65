/**
 * `LiveStreamingService` against the running backend: errors arrive as `ApiError`
 * with the server's own status and code; one user sees another's chat and
 * reactions as events; the SSE subscription resumes with `Last-Event-ID` after a
 * drop with no duplicate and no gap; a burst of reactions adds up however the
 * server batches it; a stranger cannot subscribe to a private stream.
 */
import { waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { ApiError } from "../src/api/errors";
import { reactionCount, type StreamEvent } from "../src/api/events";
import type { EventSubscription } from "../src/api/subscription";
import { API_URL, liveStream, serviceFor, user } from "./backend";

const owner = user(2);
const alice = user(3);
const bob = user(4);
const stranger = user(5);
const host = user(6); // a second owner: at most 5 live streams each

/** Collects a subscription's events; resolves once it is live (first `viewer_count`). */
async function collect(
  sub: (onEvent: (e: StreamEvent) => void) => EventSubscription,
): Promise<{ sub: EventSubscription; events: StreamEvent[] }> {
  const events: StreamEvent[] = [];
  const s = sub((e) => events.push(e));
  await waitFor(() => expect(events.some((e) => e.type === "viewer_count")).toBe(true));
  return { sub: s, events };
}

function chats(events: StreamEvent[]): unknown[] {
  return events.filter((e) => e.type === "chat_message").map((e) => e.data.message);
}

async function rawError(path: string, token: string | null, init: RequestInit = {}) {
  const headers = new Headers(init.headers);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const r = await fetch(`${API_URL}${path}`, { ...init, headers });
  return { status: r.status, body: (await r.json()) as { error: { code: string } } };
}

describe("errors", () => {
  it("a 404 surfaces as an ApiError with the server's status and code", async () => {
    const missing = crypto.randomUUID();
    const error = await serviceFor(alice).getLiveStream(missing).catch((e: unknown) => e);
    const raw = await rawError(`/api/live-streaming/${missing}`, alice.token);
    expect(error).toBeInstanceOf(ApiError);
    expect(raw.status).toBe(404);
    expect((error as ApiError).status).toBe(404);
    expect((error as ApiError).code).toBe(raw.body.error.code);
    expect((error as ApiError).toJSON().error.code).toBe(raw.body.error.code);
  });

  it("a 422 (bitrate above the tier) carries the server's code and message", async () => {
    const config = { title: "too fast", quality: "1080p" as const, bitrate: 999_999 };
    const error = await serviceFor(alice).createLiveStream(config).catch((e: unknown) => e);
    const raw = await rawError("/api/live-streaming/create", alice.token, {
      method: "POST",
      body: JSON.stringify(config),
      headers: { "Content-Type": "application/json" },
    });
    expect(raw.status).toBe(422);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(422);
    expect((error as ApiError).code).toBe(raw.body.error.code);
    expect((error as ApiError).message.length).toBeGreaterThan(0);
  });

  it("a stranger's subscription to a private stream fails once, with 404", async () => {
    const id = await liveStream(serviceFor(owner), "private room", "private");
    const failures: ApiError[] = [];
    const sub = serviceFor(stranger).subscribeToStream(id, {
      onEvent: () => undefined,
      onError: (e, final) => {
        if (final) failures.push(e);
      },
    });
    await waitFor(() => expect(sub.status).toBe("failed"));
    expect(failures).toHaveLength(1);
    expect(failures[0]?.status).toBe(404);
    await expect(serviceFor(stranger).getLiveStream(id)).rejects.toMatchObject({ status: 404 });
  });
});

describe("real-time events", () => {
  it("a second user sees the first's chat message and reaction", async () => {
    const id = await liveStream(serviceFor(owner), "two viewers");
    const aliceSvc = serviceFor(alice);
    const bobSvc = serviceFor(bob);
    await bobSvc.joinLiveStream(id); // bob watches: his events fill the service's state
    await waitFor(() => expect(bobSvc.getState().connection).toBe("open"));
    await aliceSvc.joinLiveStream(id);
    const sentAt = Date.now();
    const chat = await aliceSvc.sendChatMessage(id, "hi bob");
    await aliceSvc.sendReaction(id, ":wave:");
    await waitFor(() => {
      const events = bobSvc.getState().streamEvents;
      const message = events.find((e) => e.type === "chat_message");
      expect(message?.data).toMatchObject({ message: "hi bob", userId: alice.id, username: alice.name });
      expect(message?.data.messageId).toBe(chat.id);
      const reaction = events.find((e) => e.type === "reaction");
      expect(reaction?.data.reaction).toBe(":wave:");
      expect(bobSvc.getState().viewerCount).toBe(2);
    });
    console.info(`chat + reaction seen by the other viewer after ${Date.now() - sentAt} ms`);
    aliceSvc.unwatchStream();
    bobSvc.unwatchStream();
  });

  it("reconnects with Last-Event-ID: no duplicate, no gap", async () => {
    const ownerSvc = serviceFor(owner);
    const id = await liveStream(ownerSvc, "flaky network");
    let offline = false;
    const sent: Headers[] = [];
    // The real network, with a switch: while offline every request fails as a
    // dropped connection would. Requests are recorded to check the resume header.
    const flaky: typeof fetch = async (input, init) => {
      sent.push(new Headers(init?.headers));
      if (offline) throw new TypeError("network is down (test)");
      return fetch(input, init);
    };
    const { sub, events } = await collect((onEvent) =>
      serviceFor(bob, { fetch: flaky }).subscribeToStream(id, { onEvent }),
    );
    for (const n of [1, 2, 3]) await ownerSvc.sendChatMessage(id, `m${n}`);
    await waitFor(() => expect(chats(events)).toEqual(["m1", "m2", "m3"]));
    const resumeFrom = sub.lastEventId;
    expect(resumeFrom).not.toBeNull();

    offline = true;
    sub.reconnect(); // the connection drops; the retry fails too
    await waitFor(() => expect(sub.status).toBe("reconnecting"));
    for (const n of [4, 5, 6]) await ownerSvc.sendChatMessage(id, `m${n}`);
    const missedWhileOffline = chats(events).length;
    offline = false;
    sub.reconnect();

    await waitFor(() => expect(chats(events)).toEqual(["m1", "m2", "m3", "m4", "m5", "m6"]));
    expect(missedWhileOffline).toBe(3); // 4-6 came by replay, after the reconnect
    expect(sent.at(-1)?.get("Last-Event-ID")).toBe(String(resumeFrom));
    const ids = events.map((e) => e.id).filter((i): i is number => i !== null);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    sub.close();
  });

  it("a new subscription resuming from an id gets exactly the events after it", async () => {
    const ownerSvc = serviceFor(host);
    const id = await liveStream(ownerSvc, "resume");
    for (const n of [1, 2, 3]) await ownerSvc.sendChatMessage(id, `r${n}`);
    const page = await serviceFor(bob).getStreamEvents(id);
    const stored = (page as { items: StreamEvent[] }).items;
    const first = stored.find((e) => e.type === "chat_message" && e.data.message === "r1");
    expect(first?.id).toBeTypeOf("number");
    const { sub, events } = await collect((onEvent) =>
      serviceFor(bob).subscribeToStream(id, { onEvent, lastEventId: first?.id ?? null }),
    );
    await waitFor(() => expect(chats(events)).toEqual(["r2", "r3"]));
    sub.close();
  });

  it("a burst of reactions adds up to what was sent, batched or not", async () => {
    const ownerSvc = serviceFor(host);
    const id = await liveStream(ownerSvc, "reaction burst");
    const { sub, events } = await collect((onEvent) =>
      serviceFor(bob).subscribeToStream(id, { onEvent }),
    );
    const aliceSvc = serviceFor(alice);
    await aliceSvc.joinLiveStream(id);
    aliceSvc.unwatchStream();
    await waitFor(() => expect(events.some((e) => e.type === "viewer_joined")).toBe(true));
    const before = sub.lastEventId;
    const burst = ["🔥", "🔥", "🔥", "👏", "👏", "🎉", "🔥", "👏", "🔥", "🎉", "🔥", "😂"];
    await Promise.all(burst.map((r) => aliceSvc.sendReaction(id, r)));
    const expected: Record<string, number> = {};
    for (const r of burst) expected[r] = (expected[r] ?? 0) + 1;
    const tally = (list: StreamEvent[]) => {
      const got: Record<string, number> = {};
      for (const e of list) {
        const r = String(e.data.reaction);
        if (e.type === "reaction") got[r] = (got[r] ?? 0) + reactionCount(e);
      }
      return got;
    };
    await waitFor(() => expect(tally(events)).toEqual(expected));
    expect(events.some((e) => e.type === "reaction_batch")).toBe(false); // presented as reactions
    sub.close();

    // A replay has no ticks: the server sends the first few one by one and batches the
    // rest, so a resumed subscription surely meets a `reaction_batch`.
    const raw = await collect((onEvent) =>
      serviceFor(bob).subscribeToStream(id, { onEvent, lastEventId: before, expandBatches: false }),
    );
    await waitFor(() => expect(raw.events.some((e) => e.type === "reaction_batch")).toBe(true));
    const expanded = await collect((onEvent) =>
      serviceFor(bob).subscribeToStream(id, { onEvent, lastEventId: before }),
    );
    await waitFor(() => expect(tally(expanded.events)).toEqual(expected));
    expect(expanded.events.some((e) => e.data.batched === true)).toBe(true);
    raw.sub.close();
    expanded.sub.close();
  });
});
