// The live feed: /api/events/stream read with fetch() (so it can carry the
// bearer token, which EventSource cannot), resumed with Last-Event-ID.
import { ApiError, getJson, openStream, serverSentEvents, start } from "./api.js";
import { accountLink, dataSummary, el, showError, timeElement } from "./render.js";

const MAX_ROWS = 500;
const $ = (id) => document.getElementById(id);
const status = $("feed-status");
const rows = $("feed-events").querySelector("tbody");
const pauseButton = $("feed-pause");

let following = null; // the AbortController of the stream being read
let paused = false;
let received = 0;
let held = []; // events that came while paused

function render(event) {
  return el(
    "tr",
    { className: "fresh", "data-position": event.position },
    el("td", {}, timeElement(event.timestamp)),
    el("td", {}, event.type),
    el("td", {}, event.account_id ? accountLink(event.account_id) : el("span", { className: "muted" }, "(a transfer)")),
    el("td", { className: "data" }, dataSummary(event.data)),
    el("td", { className: "position mono" }, event.position),
  );
}

function show(events) {
  rows.prepend(...events.reverse().map(render));
  while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove();
}

function counted() {
  $("feed-count").textContent = `(${received} received${paused ? `, ${held.length} waiting` : ""})`;
}

function sleep(milliseconds, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, milliseconds);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function startingPoint(choice) {
  if (choice !== "now") return null;
  // The log's head, as the health check reports it: follow what comes next.
  const { body } = await getJson("/api/health");
  return body.projection ? body.projection.head : null;
}

async function follow(query, after, controller) {
  const signal = controller.signal;
  let lastEventId = null;
  let retry = 1000;
  while (!signal.aborted) {
    const params = new URLSearchParams(query);
    if (after && !lastEventId) params.set("after", after);
    try {
      const response = await openStream(`/api/events/stream?${params}`, { lastEventId, signal });
      status.textContent = "Following the feed: new events appear at the top.";
      for await (const item of serverSentEvents(response.body)) {
        if (item.retry !== undefined) {
          retry = item.retry;
          continue;
        }
        lastEventId = item.id;
        const event = JSON.parse(item.data);
        received += 1;
        if (paused) held.push(event);
        else show([event]);
        counted();
      }
      if (!signal.aborted) status.textContent = "The stream ended; resuming where it stopped…";
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status === 401) return;
      if (error instanceof ApiError && error.status === 422) {
        status.textContent = error.message;
        return;
      }
      status.textContent = `${error.message || "The connection was lost."} Retrying…`;
      if (error.retryAfter) await sleep(error.retryAfter * 1000, signal);
    }
    await sleep(retry, signal);
  }
}

async function restart() {
  if (following) following.abort();
  const controller = new AbortController();
  following = controller;
  rows.replaceChildren();
  received = 0;
  held = [];
  counted();
  const query = {};
  if ($("feed-type").value) query.type = $("feed-type").value;
  if ($("feed-account").value.trim()) query.account_id = $("feed-account").value.trim();
  status.textContent = "Connecting…";
  const after = await startingPoint($("feed-start").value);
  if (!controller.signal.aborted) await follow(query, after, controller);
}

function main() {
  $("feed-form").addEventListener("submit", (event) => {
    event.preventDefault();
    restart().catch((error) => showError(status, error));
  });
  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      show(held);
      held = [];
    }
    counted();
  });
  return restart();
}

start(main);
