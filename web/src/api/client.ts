// The API client: openapi-fetch over the types generated from the gateway's /openapi.json
// (src/api/schema.d.ts, `npm run gen:api`). Every call is typed by path, method and body.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Generation = components["schemas"]["GenerationView"];
export type Status = components["schemas"]["Status"];
export type ModelInfo = components["schemas"]["ModelInfo"];
export type Catalog = components["schemas"]["ModelCatalog"];
export type ApiError = components["schemas"]["ErrorResponse"];

/** Where the API is: this origin, or VITE_VIDGEN_API under the Vite dev server. */
export const API_BASE: string =
  import.meta.env.VITE_VIDGEN_API ?? (import.meta.env.DEV ? "http://127.0.0.1:8000" : "");

export const TERMINAL: ReadonlySet<Status> = new Set(["completed", "failed", "cancelled"]);

let bearer: string | null = null;
let onUnauthorized: () => void = () => {};

export function setToken(token: string | null): void {
  bearer = token;
}

export function token(): string | null {
  return bearer;
}

export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

const auth: Middleware = {
  onRequest({ request }) {
    if (bearer) request.headers.set("Authorization", `Bearer ${bearer}`);
    return request;
  },
  onResponse({ response, request }) {
    if (response.status === 401 && request.headers.has("Authorization")) onUnauthorized();
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: API_BASE });
api.use(auth);

/** The URL of a generation's live stream (EventSource cannot send headers: token in query). */
export function streamUrl(generationId: string): string {
  const query = bearer ? `?access_token=${encodeURIComponent(bearer)}` : "";
  return `${API_BASE}/api/videos/${encodeURIComponent(generationId)}/events${query}`;
}
