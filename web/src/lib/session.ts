// Who is using the app: a bearer token (from `lumalive token USERNAME`), kept in
// localStorage. `?token=` on any page stores it and is then removed from the address
// bar, so a shared link or a screenshot does not carry it.
import { useSyncExternalStore } from "react";

const KEY = "lumalive.token";
const listeners = new Set<() => void>();

export interface Session {
  token: string | null;
  userId: string | null;
  username: string | null;
}

/** Reads `?token=` once at start-up, stores it and strips it from the URL. */
export function adoptTokenFromUrl(): void {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (!token) return;
  setToken(token);
  url.searchParams.delete("token");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
}

export function getToken(): string | null {
  return window.localStorage.getItem(KEY);
}

export function setToken(token: string | null): void {
  if (token) window.localStorage.setItem(KEY, token.trim());
  else window.localStorage.removeItem(KEY);
  cached = null;
  listeners.forEach((l) => l());
}

/** The claims the app shows (never trusted for access: the API checks the token). */
function claims(token: string): Record<string, unknown> {
  try {
    const payload = token.split(".")[1] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(decodeURIComponent(escape(json))) as Record<string, unknown>;
  } catch {
    return {};
  }
}

let cached: Session | null = null;

function snapshot(): Session {
  const token = getToken();
  if (cached && cached.token === token) return cached;
  const c = token ? claims(token) : {};
  const str = (v: unknown) => (typeof v === "string" ? v : null);
  cached = {
    token,
    userId: str(c.sub),
    username: str(c.preferred_username) ?? str(c.name) ?? str(c.username),
  };
  return cached;
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The current session; re-renders when the token changes. */
export function useSession(): Session {
  return useSyncExternalStore(subscribe, snapshot);
}
