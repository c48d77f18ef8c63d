// Who is signed in. Two ways in:
// - development: the gateway marks the page with <meta name="vidgen-sign-in" content="dev">
//   and the "Sign in as" form mints a token through POST /api/dev/token (kept in
//   localStorage, so a reload stays signed in);
// - embedded (production): the embedding app hands the token over, either by
//   `window.parent.postMessage({type: "vidgen:token", token}, origin)` from the page that
//   frames this one, or by calling `window.vidgenStudio.signIn(token)`. The page announces
//   itself with {type: "vidgen:ready"} and asks again with {type: "vidgen:token-expired"}.
import { api, setToken, whenUnauthorized } from "./api/client";
import { explain } from "./api/problems";
import { byId } from "./dom";

const STORE_KEY = "vidgen.devToken";

export interface Session {
  user: string;
}

type Listener = (session: Session | null) => void;

function subject(jwt: string): string {
  try {
    const payload = jwt.split(".")[1] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === "string" ? sub : "?";
  } catch {
    return "?";
  }
}

export function devSignInAvailable(): boolean {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="vidgen-sign-in"]');
  return meta ? meta.content === "dev" : import.meta.env.DEV;
}

export function startAuth(onChange: Listener): void {
  const dev = devSignInAvailable();
  const who = byId("who");
  const signOut = byId<HTMLButtonElement>("sign-out");
  const panel = byId("sign-in");
  const wait = byId("embedded-wait");

  const apply = (jwt: string | null): void => {
    setToken(jwt);
    const session = jwt ? { user: subject(jwt) } : null;
    who.textContent = session ? `Signed in as ${session.user}` : "Not signed in";
    signOut.hidden = !(session && dev);
    panel.hidden = !dev || session !== null;
    wait.hidden = dev || session !== null;
    onChange(session);
  };

  whenUnauthorized(() => {
    if (dev) localStorage.removeItem(STORE_KEY);
    else window.parent.postMessage({ type: "vidgen:token-expired" }, "*");
    apply(null);
    if (dev) byId("sign-in-error").textContent = "Your sign-in has expired. Sign in again.";
  });

  (window as unknown as { vidgenStudio: object }).vidgenStudio = {
    signIn: (jwt: string) => apply(jwt),
  };

  if (dev) {
    const form = byId<HTMLFormElement>("sign-in-form");
    const input = byId<HTMLInputElement>("user");
    const error = byId("sign-in-error");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const userId = input.value.trim();
      if (!input.checkValidity() || !userId) {
        error.textContent = "A user name is 1 to 128 letters, digits or . _ @ : | + -";
        input.focus();
        return;
      }
      try {
        const { data, error: body, response } = await api.POST("/api/dev/token", {
          body: { userId },
        });
        if (!data) {
          error.textContent = explain(response, body);
          return;
        }
        localStorage.setItem(STORE_KEY, data.token);
        apply(data.token);
        byId<HTMLInputElement>("image").focus();
      } catch {
        error.textContent = explain(undefined, null);
      }
    });
    signOut.addEventListener("click", () => {
      localStorage.removeItem(STORE_KEY);
      apply(null);
      input.focus();
    });
    apply(localStorage.getItem(STORE_KEY));
  } else {
    window.addEventListener("message", (event: MessageEvent) => {
      // Only the page that frames this one (which CSP frame-ancestors restricts) may sign in.
      if (event.source !== window.parent || window.parent === window) return;
      const data = event.data as { type?: unknown; token?: unknown } | null;
      if (data?.type === "vidgen:token" && typeof data.token === "string") apply(data.token);
    });
    apply(null);
    if (window.parent !== window) window.parent.postMessage({ type: "vidgen:ready" }, "*");
  }
}
