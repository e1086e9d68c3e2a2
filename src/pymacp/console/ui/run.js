// One run, live: GET /runs/{id}/stream sends a snapshot, every event once (by seq), `run`
// when the record changes and `end` when the run is over. Events are kept by seq, so a
// reopened stream (afterSeq = the last seq seen) can never duplicate or skip one.

import { api, live, ApiFailure, AuthRequired } from "./api.js";
import { h, fill, badge, time, dateTime, json, empty, short } from "./dom.js";
import { renderParticipants, renderModePanel, renderOutcome } from "./panels.js";

export function runPage(main, runId, { onState, onAuth }) {
  const state = { run: null, view: null, events: [], lastSeq: 0, ended: false };
  const header = h("section", { class: "panel", "data-testid": "run-header" }, empty("Loading run…"));
  const people = h("section", { class: "panel" });
  const mode = h("section", { class: "panel" });
  const outcome = h("section", { class: "panel" });
  const projection = h("section", { class: "panel" });
  const timeline = h("ol", { class: "timeline", "data-testid": "timeline", reversed: false });
  const count = h("span", { class: "muted", "data-testid": "event-count" }, "0 events");
  fill(main,
    h("p", {}, h("a", { href: "#/" }, "← all runs")),
    header,
    h("div", { class: "columns" }, h("div", {}, people, mode), h("div", {}, outcome, projection)),
    h("section", { class: "panel" }, h("div", { class: "row" }, h("h2", {}, "Timeline"), h("span", { class: "spacer" }), count), timeline),
  );

  function renderAll() {
    if (!state.run) return;
    renderHeader(header, state, runId);
    fill(people, h("h2", {}, "Participants"), renderParticipants(state.run, state.events));
    fill(mode, ...renderModePanel(state.run, state.events));
    fill(outcome, ...renderOutcome(state.run, state.events).flat());
    fill(projection,
      h("details", {}, h("summary", {}, "Projection (GET /runs/{id}/view)"), state.view && Object.keys(state.view).length ? json(state.view) : empty("empty")),
    );
    count.textContent = `${state.events.length} events`;
  }

  let pending = false;
  function schedule() {
    // Many events can arrive in one burst; render once per frame.
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      renderAll();
    });
  }

  const handle = {
    stream: null,
    closed: false,
    close() {
      this.closed = true;
      if (this.stream) this.stream.close();
    },
  };
  // Read the run once first: a wrong id gets a message instead of a stream retried forever.
  api(`/runs/${encodeURIComponent(runId)}`)
    .then(() => {
      if (!handle.closed) handle.stream = follow();
    })
    .catch((error) => {
      if (error instanceof AuthRequired) onAuth();
      else fill(header, h("p", { class: "error", "data-testid": "run-error" }, error.message));
    });
  return handle;

  function follow() {
    return live(`/runs/${encodeURIComponent(runId)}/stream`, {
      onState,
      onAuth,
      resume: () => state.lastSeq,
      events: {
        snapshot: (data) => {
          state.run = data.run;
          state.view = data.view;
          schedule();
        },
        event: (event) => {
          if (event.seq <= state.lastSeq) return;
          state.events.push(event);
          state.lastSeq = event.seq;
          timeline.append(renderEvent(event));
          schedule();
        },
        run: (run) => {
          state.run = run;
          schedule();
        },
        end: (data) => {
          state.run = data.run;
          state.ended = true;
          schedule();
        },
      },
    });
  }
}

function renderHeader(header, state, runId) {
  const run = state.run;
  const cancel = h(
    "button",
    {
      type: "button",
      class: "danger",
      disabled: ["completed", "failed", "cancelled"].includes(run.status),
      onclick: async (e) => {
        if (!window.confirm("Cancel this run? The console uses the run's cancel callback or, if delegated, CancelSession.")) return;
        e.target.disabled = true;
        try {
          await api(`/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST", body: { reason: "cancelled from the console UI" } });
        } catch (error) {
          window.alert(error instanceof ApiFailure ? error.message : String(error));
          e.target.disabled = false;
        }
      },
    },
    "Cancel run",
  );
  fill(header,
    h("div", { class: "row" }, h("h1", {}, "Run ", h("span", { class: "mono" }, short(run.runId))), badge(run.status), h("span", { class: "spacer" }), cancel),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "run id"), h("dd", { class: "mono" }, run.runId),
      h("dt", {}, "session"), h("dd", { class: "mono", "data-testid": "session-id" }, run.sessionId),
      h("dt", {}, "session state"), h("dd", { "data-testid": "session-state" }, run.sessionState || "—"),
      h("dt", {}, "mode"), h("dd", {}, run.modeName || "—"),
      h("dt", {}, "source"), h("dd", {}, run.source),
      h("dt", {}, "created"), h("dd", {}, dateTime(run.createdAtMs)),
      h("dt", {}, "ended"), h("dd", {}, dateTime(run.endedAtMs)),
      h("dt", {}, "tags"), h("dd", {}, (run.tags || []).join(", ") || "—"),
    ),
    run.error ? h("p", { class: "error" }, run.error) : null,
  );
}

function renderEvent(event) {
  const data = event.data || {};
  const payload = data.payload !== undefined ? data.payload : data.payload_b64 !== undefined ? { payload_b64: data.payload_b64 } : data;
  return h(
    "li",
    { class: `event kind-${event.ordinal === null ? "console" : "envelope"}`, "data-testid": "timeline-item", "data-seq": event.seq, "data-type": event.type },
    h(
      "details",
      {},
      h(
        "summary",
        {},
        h("span", { class: "seq" }, `#${event.seq}`),
        h("span", { class: "when" }, time(event.timestampMs)),
        h("span", { class: "type" }, event.type),
        event.sender ? h("span", { class: "sender" }, event.sender) : null,
        event.messageType ? h("span", { class: "muted" }, event.messageType) : null,
        h("span", { class: "gist" }, gist(event, payload)),
      ),
      json(payload),
    ),
  );
}

// One line that says what happened, from the payload's plain fields.
function gist(event, payload) {
  const data = event.data || {};
  if (event.type === "run.status.changed") return `${data.from} → ${data.to}${data.reason ? ": " + data.reason : ""}`;
  const fields = Object.entries(payload || {})
    .filter(([, v]) => (typeof v === "string" && v !== "") || typeof v === "number" || typeof v === "boolean")
    .slice(0, 4)
    .map(([k, v]) => `${k}=${v}`);
  const text = fields.join(" · ");
  return text.length > 140 ? text.slice(0, 139) + "…" : text;
}
