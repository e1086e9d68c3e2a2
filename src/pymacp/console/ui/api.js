// Talking to the console: JSON requests with the API key, and live SSE streams.
//
// The key lives in sessionStorage (this tab only) and travels as `Authorization: Bearer`.
// EventSource cannot send headers, so before opening a stream the UI trades the key for
// an SSE ticket: an HttpOnly, SameSite=Strict cookie that only the stream routes accept.

const KEY = "pymacp-console-api-key";

export class AuthRequired extends Error {}

export class ApiFailure extends Error {
  constructor(body, status) {
    super((body && body.message) || `HTTP ${status}`);
    this.body = body;
    this.status = status;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 401) throw new AuthRequired("an API key is needed");
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiFailure(parsed, response.status);
  return parsed;
}

// A self-healing EventSource. `events` maps SSE event names to handlers; `resume()` returns
// the seq to continue after when the stream has to be reopened by hand (the browser's own
// reconnects carry Last-Event-ID by themselves).
export function live(path, { events, resume, onState, onAuth }) {
  let source = null;
  let closed = false;
  let attempt = 0;
  let timer = null;

  const state = (value) => onState && onState(value);

  async function open() {
    if (closed) return;
    state("connecting");
    try {
      await api("/auth/sse-ticket", { method: "POST" });
    } catch (error) {
      if (error instanceof AuthRequired) {
        state("locked");
        if (onAuth) onAuth();
        return;
      }
      retry();
      return;
    }
    if (closed) return;
    const url = new URL(path, window.location.origin);
    const after = resume ? resume() : 0;
    if (after > 0) url.searchParams.set("afterSeq", String(after));
    source = new EventSource(url.toString());
    source.onopen = () => {
      attempt = 0;
      state("live");
    };
    source.onerror = () => {
      if (closed) return;
      state("reconnecting");
      // CLOSED means the browser gave up (e.g. the ticket expired): start over by hand.
      if (source && source.readyState === EventSource.CLOSED) retry();
    };
    for (const [name, handler] of Object.entries(events)) {
      source.addEventListener(name, (message) => {
        if (name === "end") {
          closed = true;
          source.close();
          state("ended");
        }
        handler(JSON.parse(message.data), message);
      });
    }
  }

  function retry() {
    if (source) source.close();
    source = null;
    if (closed) return;
    const delay = Math.min(500 * 2 ** attempt, 10000);
    attempt += 1;
    timer = setTimeout(open, delay);
  }

  open();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (source) source.close();
    },
  };
}
