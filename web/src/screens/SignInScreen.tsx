// Sign in for the self-hosted default: paste an access token (`lumalive token
// USERNAME` prints one). Deployments with Supabase paste its access token.
import { useState, type FormEvent } from "react";

import { navigate } from "../lib/router";
import { setToken, useSession } from "../lib/session";

export function SignInScreen() {
  const session = useSession();
  const [draft, setDraft] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!draft.trim()) return;
    setToken(draft.trim());
    navigate("/");
  };
  return (
    <main className="screen narrow" data-screen="signin">
      <h1>Sign in</h1>
      {session.token ? (
        <p>
          Signed in as <code>{session.username ?? session.userId}</code>.{" "}
          <button type="button" onClick={() => setToken(null)}>
            Sign out
          </button>
        </p>
      ) : null}
      <form onSubmit={submit}>
        <label>
          Access token
          <textarea
            name="token"
            rows={4}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            placeholder="eyJhbGciOi…"
          />
        </label>
        <p className="muted">
          On the server: <code>.venv/bin/lumalive token USERNAME</code>. Or open any page with{" "}
          <code>?token=…</code>. The token stays in this browser (localStorage).
        </p>
        <button type="submit" className="primary">
          Sign in
        </button>
      </form>
    </main>
  );
}
