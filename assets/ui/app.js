// The interim Pryx page: sessions, a chat that streams, approvals and deep-link views over
// the JSON-RPC API at /rpc. The Leptos Control Center (issue 9) replaces it.
// Everything from the agent or the model is inserted as text, never as HTML.
"use strict";

const TOKEN_KEY = "pryx.token";
const state = { ws: null, nextId: 1, calls: new Map(), subs: new Map(), everConnected: false, sessions: [] };

function token() {
  // The desktop window injects it (never in a URL); a browser asks once per tab.
  const injected = window.__PRYX__ && window.__PRYX__.token;
  return injected || sessionStorage.getItem(TOKEN_KEY);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// ---- JSON-RPC over one WebSocket ----

function call(method, params = []) {
  return new Promise((resolve, reject) => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return reject(new Error("not connected to the agent"));
    const id = state.nextId++;
    state.calls.set(id, { resolve, reject });
    state.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
  });
}

async function subscribe(method, params, onItem) {
  const id = await call(method, params);
  state.subs.set(String(id), onItem);
  return id;
}

function connect() {
  const t = token();
  if (!t) return askForToken();
  const ws = new WebSocket(`ws://${location.host}/rpc`, ["pryx", "pryx.token." + t]);
  state.ws = ws;
  ws.onopen = async () => {
    if (state.everConnected) showBanner("Reconnected to the agent (it restarted).", 6000);
    state.everConnected = true;
    await subscribe("activity.subscribe", [], showActivity);
    await subscribe("approvals.subscribe", [], () => { if (location.hash.startsWith("#/approve/")) route(); });
    await subscribe("events.subscribe", [null], onTurnEvent);
    await refreshSessions();
    route();
  };
  ws.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.id !== undefined && state.calls.has(data.id)) {
      const { resolve, reject } = state.calls.get(data.id);
      state.calls.delete(data.id);
      if (data.error) reject(new Error(data.error.message));
      else resolve(data.result);
    } else if (data.params && data.params.subscription !== undefined) {
      const handler = state.subs.get(String(data.params.subscription));
      if (handler) handler(data.params.result);
    }
  };
  ws.onclose = () => {
    for (const { reject } of state.calls.values()) reject(new Error("the connection to the agent closed"));
    state.calls.clear();
    state.subs.clear();
    setStatus("Reconnecting to the agent…", "err");
    setTimeout(connect, 500);
  };
}

function askForToken() {
  setStatus("Not connected", "err");
  const input = el("input", { type: "password", placeholder: "token", "aria-label": "token" });
  const form = el("form", { class: "card", onsubmit: (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    connect();
  } }, el("p", {}, "Paste the token from <data-dir>/token to connect to your agent."), input, " ",
     el("button", { class: "primary" }, "Connect"));
  view("Connect", form);
}

// ---- status ----

const STATES = {
  idle: ["Ready", "ok"],
  thinking: ["Thinking…", "busy"],
  waiting_for_approval: ["Waiting for your approval", "wait"],
  error: ["Error", "err"],
  paused: ["Paused", "busy"],
};

function showActivity(activity) {
  const [text, kind] = STATES[activity.state] || ["", ""];
  setStatus(activity.state === "error" && activity.last_error ? `Error: ${activity.last_error}` : text, kind);
}

function setStatus(text, kind) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = "status " + kind;
}

function showBanner(text, ms) {
  const banner = document.getElementById("banner");
  banner.textContent = text;
  banner.hidden = false;
  setTimeout(() => { banner.hidden = true; }, ms);
}

// ---- views ----

function view(title, ...children) {
  document.title = title === "Pryx" ? "Pryx" : `${title} — Pryx`;
  document.getElementById("view").replaceChildren(...children);
}

async function refreshSessions() {
  state.sessions = await call("session.list");
  const list = document.getElementById("sessions");
  list.replaceChildren(...state.sessions.map((s) => el("li", {},
    el("a", { href: `#/session/${encodeURIComponent(s.id)}`, "data-id": s.id }, s.title,
      s.channel !== "local" ? el("span", { class: "badge" }, s.channel) : ""))));
  markCurrent();
}

function markCurrent() {
  for (const a of document.querySelectorAll("#sessions a")) {
    a.classList.toggle("current", location.hash === `#/session/${encodeURIComponent(a.dataset.id)}`);
  }
}

function composer(sessionId, text = "") {
  const input = el("textarea", { placeholder: "Message Pryx (Enter to send, Shift+Enter for a new line)", "aria-label": "message" });
  input.value = text;
  const send = async () => {
    const message = input.value;
    if (!message.trim()) return;
    try {
      let id = sessionId;
      if (!id) id = (await call("session.create", [null])).id;
      await call("message.send", [id, message]);
      input.value = "";
      if (!sessionId) location.hash = `#/session/${encodeURIComponent(id)}`;
      else await showSession(id);
    } catch (e) {
      showBanner(`Not sent: ${e.message}`, 8000);
    }
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
  });
  setTimeout(() => input.focus(), 0);
  return el("form", { class: "composer", onsubmit: (e) => { e.preventDefault(); send(); } },
    input, el("button", { class: "primary" }, "Send"));
}

function messageNode(m) {
  const node = el("div", { class: `msg ${m.role}`, "data-id": m.id });
  node.textContent = m.role === "tool" ? `tool result: ${m.content}` : m.content;
  if (m.error) node.append(el("div", { class: "error" }, m.error));
  return node;
}

let shownSession = null;

async function showSession(id) {
  let detail;
  try {
    detail = await call("session.get", [id]);
  } catch (e) {
    shownSession = null;
    return view("Not found", el("p", { class: "empty" }, `This conversation does not exist (${e.message}).`));
  }
  // Keep what the user is typing when the view is redrawn.
  const typing = shownSession === id ? document.querySelector("form.composer textarea")?.value || "" : "";
  shownSession = id;
  const messages = el("div", { class: "messages", id: "messages" }, ...detail.messages.map(messageNode));
  view(detail.session.title, messages, composer(id, typing));
  messages.scrollTop = messages.scrollHeight;
  markCurrent();
}

function onTurnEvent(envelope) {
  if (envelope.session_id !== shownSession) return;
  const messages = document.getElementById("messages");
  if (!messages) return;
  if (envelope.type === "delta") {
    let live = messages.querySelector(`[data-turn="${CSS.escape(envelope.turn_id)}"]`);
    if (!live) {
      live = el("div", { class: "msg assistant", "data-turn": envelope.turn_id });
      messages.append(live);
    }
    live.textContent += envelope.text;
    messages.scrollTop = messages.scrollHeight;
  } else if (envelope.type === "done" || envelope.type === "error" || envelope.type === "tool_result") {
    showSession(envelope.session_id);
    refreshSessions();
  }
}

async function showApproval(id) {
  const pending = await call("approval.list", [true]);
  const approval = pending.find((a) => a.id === id);
  if (!approval) return view("Approval", el("p", { class: "empty" }, "There is no such approval request."));
  const answer = (decision) => async () => {
    try { await call("approval.answer", [id, decision, null, "ui"]); } catch (e) { showBanner(e.message, 8000); }
    showApproval(id);
  };
  const card = el("div", { class: "card" },
    el("h2", {}, `Allow ${approval.tool}?`),
    el("p", {}, approval.summary),
    el("pre", {}, approval.arguments),
    el("p", {}, `Status: ${approval.status}`));
  if (approval.status === "pending") {
    card.append(el("div", { class: "actions" },
      el("button", { class: "primary", onclick: answer("allow_once") }, "Allow once"),
      el("button", { onclick: answer("allow_for_session") }, "Allow for session"),
      el("button", { onclick: answer("deny") }, "Deny")));
  }
  view(`Approval: ${approval.tool}`, card);
}

async function route() {
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  refreshSessions().catch(() => {});
  try {
    if (parts[0] === "session" && parts[1]) return await showSession(parts[1]);
    if (parts[0] === "approve" && parts[1]) { shownSession = null; return await showApproval(parts[1]); }
    shownSession = null;
    // `new?text=…` (a pryx://new link) prefills the composer; nothing is sent without the user.
    const text = parts[0] === "new" ? new URLSearchParams(query || "").get("text") || "" : "";
    view("New chat",
      el("div", { class: "messages" }, el("p", { class: "empty" }, "Ask your agent anything.")), composer(null, text));
  } finally {
    markCurrent();
  }
}

window.addEventListener("hashchange", () => { if (state.ws && state.ws.readyState === WebSocket.OPEN) route(); });
window.addEventListener("DOMContentLoaded", () => {
  connect();
  // Tell the desktop shell the first frame is on screen (it measures time to first paint).
  requestAnimationFrame(() => requestAnimationFrame(() => {
    if (window.ipc) window.ipc.postMessage("painted");
  }));
});
