/**
 * The API's one error shape, `{"error": {"code", "message"}}`, as a typed exception.
 *
 * Every failed call of the client library rejects with an `ApiError`: HTTP errors
 * carry the server's status, code and message; a request that never got an answer
 * (network down, CORS, aborted) is status 0, code `network_error`.
 */

export interface ApiErrorBody {
  error: { code: string; message: string; [key: string]: unknown };
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds to wait before retrying, from `Retry-After` (429, 503), else null. */
  readonly retryAfter: number | null;

  constructor(status: number, code: string, message: string, retryAfter: number | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** The error as the API spells it. */
  toJSON(): ApiErrorBody {
    return { error: { code: this.code, message: this.message } };
  }

  static network(cause: unknown): ApiError {
    const text = cause instanceof Error ? cause.message : String(cause);
    return new ApiError(0, "network_error", `the API could not be reached: ${text}`);
  }

  /** From a failed response and its (already parsed) body, whatever the body is. */
  static fromResponse(response: Response, body: unknown): ApiError {
    const retry = Number(response.headers.get("Retry-After"));
    const retryAfter = Number.isFinite(retry) && retry > 0 ? retry : null;
    if (isErrorBody(body)) {
      return new ApiError(response.status, body.error.code, body.error.message, retryAfter);
    }
    // Not our shape (a proxy's page, an empty body): keep the status, say so.
    const text = response.statusText || "request failed";
    return new ApiError(response.status, `http_${response.status}`, text, retryAfter);
  }
}

export function isErrorBody(body: unknown): body is ApiErrorBody {
  if (typeof body !== "object" || body === null || !("error" in body)) return false;
  const error = (body as { error: unknown }).error;
  return (
    typeof error === "object" &&
    error !== null &&
    typeof (error as { code?: unknown }).code === "string" &&
    typeof (error as { message?: unknown }).message === "string"
  );
}

/** Any thrown value as an ApiError (ApiErrors pass through). */
export function asApiError(cause: unknown): ApiError {
  return cause instanceof ApiError ? cause : ApiError.network(cause);
}
