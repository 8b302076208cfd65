/**
 * The typed HTTP client: `openapi-fetch` over the generated `schema.d.ts`, so every
 * path, parameter and body is checked against the API's OpenAPI document.
 *
 * Invariant: each call either resolves with the response's data or rejects with
 * an `ApiError` (see `call`); callers never see openapi-fetch's `{data, error}`.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";

import { ApiError } from "./errors";
import type { paths } from "./schema";

/** Gives the current access token (a JWT), or null for an anonymous caller. */
export type TokenProvider = () => string | null | Promise<string | null>;

export interface ClientOptions {
  /** Where the API lives; "" (the default) is this page's origin. */
  baseUrl?: string;
  getToken?: TokenProvider;
  /** The transport; tests and non-browser hosts may pass their own. */
  fetch?: typeof fetch;
}

export type ApiClient = Client<paths>;

export function createApiClient(options: ClientOptions = {}): ApiClient {
  const fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const client = createClient<paths>({
    baseUrl: trimSlash(options.baseUrl ?? ""),
    fetch: (request: Request) => fetchImpl(request),
  });
  client.use(bearer(options.getToken));
  return client;
}

function bearer(getToken: TokenProvider | undefined): Middleware {
  return {
    async onRequest({ request }) {
      const token = getToken ? await getToken() : null;
      if (token) request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  };
}

export function trimSlash(url: string): string {
  return url.endsWith("/") ? url.slice(0, -1) : url;
}

interface Outcome<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The data of a finished call, or an `ApiError` (thrown) carrying the server's code. */
export async function call<T>(request: Promise<Outcome<T>>): Promise<T> {
  let outcome: Outcome<T>;
  try {
    outcome = await request;
  } catch (cause) {
    throw ApiError.network(cause);
  }
  if (!outcome.response.ok) throw ApiError.fromResponse(outcome.response, outcome.error);
  return outcome.data as T;
}
