// Calls to the gateway's admin API with the admin key.
//
// The key lives in this module's variable only: never in storage, a cookie or a URL,
// never logged. Reloading the page forgets it. Because the browser sends nothing on its
// own (no cookie), another site cannot make it call the API for us: no CSRF surface.

let adminKey = null;
let onAuthLost = () => {};

export function signIn(key) {
  adminKey = key;
}

export function signOut() {
  adminKey = null;
}

export function isSignedIn() {
  return adminKey !== null;
}

// Called with the server's message when a call is refused with 401 or 403 mid-session.
export function whenAuthLost(callback) {
  onAuthLost = callback;
}

// One call. Resolves to {ok, status, body, error, headers, ms}; never rejects for an
// HTTP error (the page shows those), only for a network failure, which it reports as
// status 0 with a typed-looking error so the page can show it the same way.
export async function call(method, path, { json, body, contentType } = {}) {
  const headers = { Authorization: `Bearer ${adminKey}` };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  else if (contentType) headers["Content-Type"] = contentType;
  const started = performance.now();
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: json !== undefined ? JSON.stringify(json) : body,
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
  } catch (exc) {
    return {
      ok: false, status: 0, body: null, headers: new Headers(), ms: performance.now() - started,
      error: { code: "network_error", message: `the gateway did not answer: ${exc.message}` },
    };
  }
  const text = await res.text();
  const ms = performance.now() - started;
  let parsed = text;
  if ((res.headers.get("content-type") || "").includes("application/json")) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  const error = !res.ok ? (parsed && parsed.error) || { message: String(text) } : null;
  const outcome = { ok: res.ok, status: res.status, body: parsed, error, headers: res.headers, ms };
  if ((res.status === 401 || res.status === 403) && adminKey !== null) {
    adminKey = null;
    onAuthLost(`HTTP ${res.status}: ${error?.message ?? "refused"}`);
  }
  return outcome;
}
