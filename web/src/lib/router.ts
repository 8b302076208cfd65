// Client-side routing on the History API: the API answers index.html for every
// path that is not its own, so `/watch/<id>` survives a reload or a shared link.
import { createElement, useSyncExternalStore, type MouseEvent, type ReactNode } from "react";

export type Route =
  | { name: "browse" }
  | { name: "watch"; id: string }
  | { name: "studio"; id: string | null }
  | { name: "analytics"; id: string | null }
  | { name: "signin" }
  | { name: "missing" };

const listeners = new Set<() => void>();
window.addEventListener("popstate", () => listeners.forEach((l) => l()));

export function parseRoute(path: string): Route {
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const [head, id] = parts;
  if (!head) return { name: "browse" };
  if (head === "watch" && id) return { name: "watch", id };
  if (head === "studio") return { name: "studio", id: id ?? null };
  if (head === "analytics") return { name: "analytics", id: id ?? null };
  if (head === "signin") return { name: "signin" };
  return { name: "missing" };
}

export function navigate(path: string): void {
  if (path === window.location.pathname) return;
  window.history.pushState(null, "", path);
  listeners.forEach((l) => l());
  window.scrollTo(0, 0);
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The page the address bar names; re-renders on navigation. */
export function useRoute(): Route {
  const path = useSyncExternalStore(subscribe, () => window.location.pathname);
  return parseRoute(path);
}

/** An `<a>` that navigates without reloading (and still opens in a new tab). */
export function Link(props: { to: string; className?: string; children: ReactNode }) {
  const onClick = (e: MouseEvent<HTMLAnchorElement>) => {
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(props.to);
  };
  return createElement("a", { href: props.to, className: props.className, onClick }, props.children);
}
