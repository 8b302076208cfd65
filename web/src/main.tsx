// The web app's entry: adopt a `?token=` from the address, point the client
// library at this origin with the stored token, and render.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { App } from "./App";
import { adoptTokenFromUrl, getToken } from "./lib/session";
import { LiveStreamingService } from "./services/LiveStreamingService";
import "./styles.css";

adoptTokenFromUrl();
// The token is read on every request, so signing in or out needs no reconfiguring.
LiveStreamingService.configure({ baseUrl: "", getToken });

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}
