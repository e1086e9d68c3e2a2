// The run page's panels, folded from the run's events. Each event carries the decoded
// envelope (`data.payload`, protobuf field names), so the panels need nothing else. A
// later vote by the same voter replaces the earlier one, as in the modes themselves.

import { h, json, empty, time, badge } from "./dom.js";

const payloadOf = (event) => (event.data && event.data.payload) || {};

export function participants(run, events) {
  const seen = new Map();
  for (const id of run.participants || []) seen.set(id, { id, role: "", messages: 0, last: null });
  for (const event of events) {
    if (!event.sender || event.ordinal === null) continue;
    const role = event.type === "session.started" ? "initiator" : "not declared";
    const entry = seen.get(event.sender) || { id: event.sender, role, messages: 0, last: null };
    entry.messages += 1;
    entry.last = event;
    seen.set(event.sender, entry);
  }
  return [...seen.values()];
}

export function renderParticipants(run, events) {
  const rows = participants(run, events);
  if (!rows.length) return empty("No participants known yet.");
  return h(
    "table",
    { class: "grid", "data-testid": "participants" },
    h("thead", {}, h("tr", {}, h("th", {}, "participant"), h("th", {}, "messages"), h("th", {}, "last message"))),
    h(
      "tbody",
      {},
      rows.map((p) =>
        h(
          "tr",
          {},
          h("td", {}, p.id, p.role ? h("span", { class: "muted" }, ` (${p.role})`) : null),
          h("td", { class: "num" }, p.messages),
          h("td", {}, p.last ? `${p.last.messageType} at ${time(p.last.timestampMs)}` : "—"),
        ),
      ),
    ),
  );
}

function tally(ballots) {
  const counts = {};
  for (const choice of ballots.values()) counts[choice] = (counts[choice] || 0) + 1;
  return counts;
}

function tallyText(counts) {
  const parts = Object.entries(counts).map(([choice, n]) => `${choice} ${n}`);
  return parts.length ? parts.join(" · ") : "no votes";
}

function decision(events) {
  const proposals = new Map();
  const get = (id) => {
    if (!proposals.has(id)) proposals.set(id, { id, option: "", by: "", evaluations: [], objections: [], votes: new Map() });
    return proposals.get(id);
  };
  for (const event of events) {
    const p = payloadOf(event);
    if (event.type === "proposal.submitted") Object.assign(get(p.proposal_id), { option: p.option, by: event.sender });
    else if (event.type === "evaluation.submitted") get(p.proposal_id).evaluations.push({ by: event.sender, ...p });
    else if (event.type === "objection.raised") get(p.proposal_id).objections.push({ by: event.sender, ...p });
    else if (event.type === "vote.cast") get(p.proposal_id).votes.set(event.sender, String(p.vote || "").toLowerCase());
  }
  if (!proposals.size) return empty("No proposals yet.");
  return h(
    "table",
    { class: "grid" },
    h("thead", {}, h("tr", {}, ["proposal", "option", "by", "evaluations", "objections", "votes"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      [...proposals.values()].map((p) =>
        h(
          "tr",
          { "data-testid": "proposal" },
          h("td", {}, p.id),
          h("td", {}, p.option),
          h("td", {}, p.by),
          h("td", {}, p.evaluations.map((e) => `${e.by}: ${e.recommendation} (${e.confidence ?? "?"})`).join(", ") || "—"),
          h("td", {}, p.objections.map((o) => `${o.by}: ${o.reason}`).join(", ") || "—"),
          h("td", { "data-testid": "tally" }, tallyText(tally(p.votes))),
        ),
      ),
    ),
  );
}

function proposalMode(events) {
  const proposals = new Map();
  for (const event of events) {
    const p = payloadOf(event);
    const id = p.proposal_id;
    if (event.type === "proposal.submitted") {
      proposals.set(id, {
        id,
        title: p.title || p.summary || "",
        by: event.sender,
        counters: p.supersedes_proposal_id || "",
        state: "open",
        accepts: [],
      });
    } else if (proposals.has(id)) {
      const entry = proposals.get(id);
      if (event.type === "proposal.accepted") entry.accepts.push(event.sender);
      else if (event.type === "proposal.rejected") entry.state = p.terminal ? "rejected (terminal)" : "rejected";
      else if (event.type === "proposal.withdrawn") entry.state = "withdrawn";
    }
  }
  if (!proposals.size) return empty("No proposals yet.");
  return h(
    "table",
    { class: "grid" },
    h("thead", {}, h("tr", {}, ["proposal", "title", "by", "counters", "state", "accepted by"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      [...proposals.values()].map((p) =>
        h("tr", { "data-testid": "proposal" }, [p.id, p.title, p.by, p.counters || "—", p.state, p.accepts.join(", ") || "—"].map((t) => h("td", {}, t))),
      ),
    ),
  );
}

function quorum(events) {
  const requests = new Map();
  for (const event of events) {
    const p = payloadOf(event);
    if (event.type === "approval.requested") {
      requests.set(p.request_id, { id: p.request_id, action: p.action, required: p.required_approvals, ballots: new Map() });
    } else if (event.type === "ballot.cast" && requests.has(p.request_id)) {
      requests.get(p.request_id).ballots.set(event.sender, event.messageType.toLowerCase());
    }
  }
  if (!requests.size) return empty("No approval requests yet.");
  return [...requests.values()].map((r) => {
    const counts = tally(r.ballots);
    const approvals = counts.approve || 0;
    return h(
      "div",
      { class: "card", "data-testid": "quorum" },
      h("strong", {}, `${r.id}: ${r.action}`),
      h("p", {}, `${approvals} of ${r.required} approvals · ${tallyText(counts)}`),
      h("progress", { max: r.required || 1, value: Math.min(approvals, r.required || 1) }),
    );
  });
}

function task(events) {
  const tasks = new Map();
  for (const event of events) {
    const p = payloadOf(event);
    const id = p.task_id;
    if (event.type === "task.requested") {
      tasks.set(id, { id, title: p.title, assignee: p.requested_assignee || "", state: "requested", progress: 0, note: "" });
      continue;
    }
    const t = tasks.get(id);
    if (!t) continue;
    if (event.type === "task.accepted") Object.assign(t, { state: "accepted", assignee: p.assignee || event.sender });
    else if (event.type === "task.rejected") t.state = "rejected";
    else if (event.type === "task.updated") Object.assign(t, { state: p.status || "in progress", progress: p.progress || t.progress, note: p.message || "" });
    else if (event.type === "task.completed") Object.assign(t, { state: "completed", progress: 1, note: p.summary || "" });
    else if (event.type === "task.failed") Object.assign(t, { state: "failed", note: `${p.error_code || ""} ${p.reason || ""}`.trim() });
  }
  if (!tasks.size) return empty("No tasks yet.");
  return [...tasks.values()].map((t) => {
    const fraction = t.progress > 1 ? t.progress / 100 : t.progress;
    return h(
      "div",
      { class: "card", "data-testid": "task" },
      h("strong", {}, `${t.id}: ${t.title}`),
      h("p", {}, `${t.state} · assignee ${t.assignee || "—"}${t.note ? " · " + t.note : ""}`),
      h("progress", { max: 1, value: Math.max(0, Math.min(1, fraction || 0)) }),
    );
  });
}

function handoff(events) {
  const offers = new Map();
  for (const event of events) {
    const p = payloadOf(event);
    if (event.type === "handoff.offered") offers.set(p.handoff_id, { id: p.handoff_id, to: p.target_participant, scope: p.scope, state: "offered", context: 0 });
    const offer = offers.get(p.handoff_id);
    if (!offer) continue;
    if (event.type === "handoff.context") offer.context += 1;
    else if (event.type === "handoff.accepted") offer.state = `accepted by ${p.accepted_by || event.sender}`;
    else if (event.type === "handoff.declined") offer.state = `declined by ${p.declined_by || event.sender}`;
  }
  if (!offers.size) return empty("No handoff offers yet.");
  return [...offers.values()].map((o) =>
    h("div", { class: "card", "data-testid": "handoff" }, h("strong", {}, `${o.id} → ${o.to}`), h("p", {}, `${o.scope || ""} · ${o.state} · ${o.context} context message(s)`)),
  );
}

function contributions(events) {
  const rows = events.filter((e) => e.type === "contribution.submitted");
  if (!rows.length) return empty("No contributions yet.");
  return h("ul", { class: "plain" }, rows.map((e) => h("li", {}, `${e.sender}: `, json(payloadOf(e)))));
}

const MODE_PANELS = {
  "macp.mode.decision.v1": ["Decision", decision],
  "macp.mode.proposal.v1": ["Proposals", proposalMode],
  "macp.mode.quorum.v1": ["Quorum", quorum],
  "macp.mode.task.v1": ["Tasks", task],
  "macp.mode.handoff.v1": ["Handoff", handoff],
  "ext.multi_round.v1": ["Rounds", contributions],
};

export function renderModePanel(run, events) {
  const [title, render] = MODE_PANELS[run.modeName] || ["Mode", () => empty(`No panel for ${run.modeName || "an unknown mode"}; see the timeline.`)];
  return [h("h2", {}, title, h("span", { class: "muted" }, ` ${run.modeName || ""}`)), h("div", { "data-testid": "mode-panel" }, render(events))];
}

export function renderOutcome(run, events) {
  const commitment = [...events].reverse().find((e) => e.type === "commitment.made");
  const denials = events.filter((e) => e.type === "policy.denied");
  const receipts = events.filter((e) => e.type === "receipt.checked");
  const parts = [];
  if (commitment) {
    const p = payloadOf(commitment);
    const positive = p.outcome_positive;
    parts.push(
      h(
        "div",
        { class: `card outcome ${positive === false ? "negative" : "positive"}`, "data-testid": "commitment" },
        h("strong", {}, p.action || "commitment"),
        h("p", {}, p.reason || ""),
        h(
          "dl",
          {},
          h("dt", {}, "by"), h("dd", {}, commitment.sender),
          h("dt", {}, "outcome"), h("dd", {}, positive === false ? "negative" : "positive"),
          h("dt", {}, "authority"), h("dd", {}, p.authority_scope || "—"),
          h("dt", {}, "policy"), h("dd", {}, p.policy_version || "—"),
          h("dt", {}, "hash"), h("dd", { class: "mono" }, commitment.data._commitment_hash || "—"),
        ),
      ),
    );
  } else {
    parts.push(empty(run.status === "running" ? "No commitment yet." : "No commitment."));
  }
  for (const denial of denials) {
    parts.push(h("div", { class: "card negative", "data-testid": "policy-denied" }, h("strong", {}, "policy denied"), json(denial.data)));
  }
  for (const receipt of receipts) {
    const r = receipt.data || {};
    parts.push(
      h(
        "div",
        { class: `card ${r.verdict === "attested" ? "positive" : "negative"}`, "data-testid": "receipt" },
        h("strong", {}, `receipt: ${r.verdict || "checked"}`),
        h("p", {}, [r.integrity && `integrity ${r.integrity}`, r.issuer && `issued by ${r.issuer}`].filter(Boolean).join(" · ")),
        h("details", {}, h("summary", {}, "details"), json(r)),
      ),
    );
  }
  if (run.error) parts.push(h("p", { class: "error" }, run.error));
  return [h("h2", {}, "Policy & commitment ", badge(run.status)), parts];
}
