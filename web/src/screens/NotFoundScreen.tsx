// One page for "no such stream" and "not yours to see": the API answers 404 for
// both, so the page must not hint which it was.
import { Link } from "../lib/router";

export function NotFoundScreen() {
  return (
    <main className="screen" data-screen="not-found">
      <h1>Not found</h1>
      <p>There is nothing here.</p>
      <Link to="/">Back to live streams</Link>
    </main>
  );
}
