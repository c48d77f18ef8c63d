// What went wrong, in plain words, from an API error answer (or a network failure).
import type { ApiError } from "./client";

const LEAD: Record<number, string> = {
  400: "The request could not be read.",
  401: "Your sign-in has expired. Sign in again.",
  404: "It is not there any more (or it is not yours).",
  409: "That cannot be done now.",
  413: "This image is too large.",
  415: "This file cannot be used.",
  422: "This cannot be used.",
  429: "Slow down a little.",
};

function serverMessage(body: unknown): string | null {
  const error = (body as Partial<ApiError> | undefined)?.error;
  return typeof error?.message === "string" ? error.message : null;
}

function limit(body: unknown): string | null {
  const max = (body as Partial<ApiError> | undefined)?.error?.details?.["maxBytes"];
  return typeof max === "number" ? ` The limit is ${(max / 1_000_000).toFixed(0)} MB.` : null;
}

/** One sentence or two for the person in front of the page. */
export function explain(response: Response | undefined, body: unknown): string {
  if (!response) return "The server could not be reached. Check your connection and try again.";
  const lead = LEAD[response.status] ?? `Something went wrong (HTTP ${response.status}).`;
  const message = serverMessage(body);
  let text = message && response.status !== 401 ? `${lead} ${message}` : lead;
  if (response.status === 413) text += limit(body) ?? "";
  const after = response.headers.get("Retry-After");
  if (response.status === 429 && after) text += ` Try again in ${after} s.`;
  return text;
}
