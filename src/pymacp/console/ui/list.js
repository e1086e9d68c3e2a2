// The run list, kept live by GET /runs/stream (a `runs` frame whenever the list changes).

import { live } from "./api.js";
import { h, fill, badge, short, dateTime, empty } from "./dom.js";

const STATUSES = ["", "queued", "starting", "running", "suspended", "completed", "failed", "cancelled"];

export function listPage(main, { onState, onAuth }) {
  const params = new URLSearchParams(window.location.hash.split("?")[1] || "");
  const status = params.get("status") || "";
  const select = h(
    "select",
    {
      "data-testid": "status-filter",
      onchange: (e) => {
        window.location.hash = e.target.value ? `#/?status=${e.target.value}` : "#/";
      },
    },
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s || "all statuses")),
  );
  const body = h("div", { class: "table-wrap" }, empty("Loading runs…"));
  fill(main,
    h("section", { class: "panel" }, h("div", { class: "row" }, h("h1", {}, "Runs"), h("span", { class: "spacer" }), h("label", {}, "status ", select)), body),
  );

  const path = status ? `/runs/stream?status=${encodeURIComponent(status)}` : "/runs/stream";
  return live(path, {
    onState,
    onAuth,
    events: {
      runs: (page) => render(body, page.data),
    },
  });
}

function render(body, runs) {
  if (!runs.length) {
    fill(body, empty("No runs yet. Submit one with POST /runs, or start a session on the runtime: discovery picks it up."));
    return;
  }
  fill(
    body,
    h(
      "table",
      { class: "grid runs", "data-testid": "runs-table" },
      h("thead", {}, h("tr", {}, ["status", "run", "session", "mode", "participants", "source", "events", "updated"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        runs.map((run) =>
          h(
            "tr",
            {
              class: "clickable",
              "data-testid": "run-row",
              "data-run-id": run.runId,
              "data-session-id": run.sessionId,
              onclick: () => {
                window.location.hash = `#/runs/${run.runId}`;
              },
            },
            h("td", {}, badge(run.status)),
            h("td", { class: "mono" }, h("a", { href: `#/runs/${run.runId}` }, short(run.runId))),
            h("td", { class: "mono", title: run.sessionId }, short(run.sessionId)),
            h("td", {}, (run.modeName || "—").replace(/^macp\.mode\./, "")),
            h("td", {}, (run.participants || []).join(", ") || "—"),
            h("td", {}, run.source),
            h("td", { class: "num", "data-testid": "run-events" }, run.lastSeq),
            h("td", {}, dateTime(run.updatedAtMs)),
          ),
        ),
      ),
    ),
  );
}
