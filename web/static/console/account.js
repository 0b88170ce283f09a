// One account: its figures now or at a past version or moment (time travel),
// a balance chart from its statement, pending holds, statement and events.
import { ApiError, getJson, start } from "./api.js";
import { drawBalanceChart } from "./chart.js";
import {
  accountLink,
  badge,
  dataSummary,
  el,
  fill,
  moneyElement,
  showError,
  timeElement,
  transferLink,
  when,
} from "./render.js";

const PAGE_SIZE = 20;
const CHART_PAGE_SIZE = 1000;
const CHART_MAX_PAGES = 5;

const accountId = document.getElementById("account").dataset.accountId;
const base = `/api/accounts/${encodeURIComponent(accountId)}`;
const $ = (id) => document.getElementById(id);
const errorBox = $("account-error");
const range = $("tt-version");
const number = $("tt-version-number");
const moment = $("tt-moment");
const ttStatus = $("tt-status");

let latest = null; // the account now
let shown = null; // the version shown when in the past, else null
let lines = new Map(); // statement line by version (for the chart and the status)
let chartPoints = [];
let currency = "USD";
let request = 0; // drops answers to superseded time-travel requests

function figures(account, past) {
  $("figures").classList.toggle("past", past);
  fill($("f-balance"), moneyElement(account.balance_in_cents, account.currency));
  fill($("f-available"), moneyElement(account.available_in_cents, account.currency));
  fill($("f-pending-debits"), moneyElement(account.pending_debits_in_cents, account.currency));
  fill($("f-pending-credits"), moneyElement(account.pending_credits_in_cents, account.currency));
  fill($("f-overdraft"), moneyElement(account.overdraft_limit_in_cents, account.currency));
  fill($("f-version"), past ? `${account.version} of ${latest.version}` : String(account.version));
  fill(
    $("account-meta"),
    `Owner ${account.account_owner_email} · ${account.currency} · `,
    badge(account.closed ? "closed" : "open"),
  );
}

function setVersionControls(version) {
  range.value = String(version);
  number.value = String(version);
}

function describe(version) {
  const line = lines.get(version);
  return line ? `, after its ${line.kind.replaceAll("_", " ")} of ${when(line.timestamp)}` : "";
}

function mark(version) {
  drawBalanceChart($("chart"), chartPoints, currency, version);
  for (const row of document.querySelectorAll("#events tbody tr")) {
    row.classList.toggle("selected", version !== null && Number(row.dataset.version) === version);
  }
}

function remember(query) {
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
}

async function showNow() {
  const ticket = ++request;
  const { body } = await getJson(base);
  if (ticket !== request) return;
  latest = body;
  currency = body.currency;
  shown = null;
  range.max = number.max = String(body.version);
  range.disabled = number.disabled = false;
  setVersionControls(body.version);
  figures(body, false);
  ttStatus.textContent = `Showing the account now: version ${body.version}.`;
  mark(null);
  remember("");
}

async function showVersion(version) {
  if (!Number.isInteger(version) || version < 1) return;
  if (version >= latest.version) {
    await showNow();
    return;
  }
  const ticket = ++request;
  const { body } = await getJson(`${base}?version=${version}`);
  if (ticket !== request) return;
  shown = body.version;
  setVersionControls(body.version);
  figures(body, true);
  ttStatus.textContent = `Showing version ${body.version} of ${latest.version}${describe(body.version)}.`;
  mark(body.version);
  remember(`version=${body.version}`);
}

async function showMoment(asOf) {
  const ticket = ++request;
  try {
    const { body } = await getJson(`${base}?as_of=${encodeURIComponent(asOf)}`);
    if (ticket !== request) return;
    shown = body.version;
    setVersionControls(body.version);
    figures(body, body.version !== latest.version);
    ttStatus.textContent = `Showing the account as it was at ${when(asOf)}: version ${body.version} of ${latest.version}.`;
    mark(body.version);
    remember(`as_of=${encodeURIComponent(asOf)}`);
  } catch (error) {
    if (ticket !== request) return;
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    ttStatus.textContent = `The account did not exist yet at ${when(asOf)}.`;
  }
}

function localInputValue(timestamp) {
  const date = new Date(timestamp);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}

async function loadChart() {
  const found = [];
  let cursor = null;
  let truncated = false;
  for (let pageNumber = 0; pageNumber < CHART_MAX_PAGES; pageNumber += 1) {
    const query = new URLSearchParams({ limit: String(CHART_PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    const { body } = await getJson(`${base}/statement?${query}`);
    found.push(...body.lines);
    cursor = body.next_cursor;
    if (!cursor) break;
    truncated = pageNumber === CHART_MAX_PAGES - 1;
  }
  lines = new Map(found.map((line) => [line.version, line]));
  chartPoints = found.map((line) => ({
    version: line.version,
    time: Date.parse(line.timestamp),
    timestamp: line.timestamp,
    balance: line.balance_after_in_cents,
  }));
  $("chart-note").textContent = truncated
    ? `The first ${found.length} statement lines; the statement below has them all.`
    : `${found.length} statement line${found.length === 1 ? "" : "s"}; the dashed line marks the version shown.`;
  mark(shown);
  if (shown !== null) ttStatus.textContent = `Showing version ${shown} of ${latest.version}${describe(shown)}.`;
}

async function loadHolds() {
  const { body } = await getJson(`${base}/transfers?status=pending&limit=100`);
  const rows = body.transfers.map((transfer) => {
    const outgoing = transfer.from_account_id === accountId;
    const other = outgoing ? transfer.to_account_id : transfer.from_account_id;
    return el(
      "tr",
      {},
      el("td", {}, transferLink(transfer.transfer_id)),
      el("td", {}, outgoing ? "out (debit)" : "in (credit)"),
      el("td", {}, accountLink(other)),
      el("td", { className: "num" }, moneyElement(transfer.amount_in_cents, transfer.currency)),
      el("td", {}, timeElement(transfer.created_at)),
      el("td", {}, timeElement(transfer.expires_at)),
    );
  });
  fill($("holds").querySelector("tbody"), rows);
  $("holds").hidden = rows.length === 0;
  $("holds-empty").hidden = rows.length !== 0;
}

/** A table paged forward by a cursor, with a stack of cursors to go back. */
function pager(name, load) {
  const previous = $(`${name}-prev`);
  const next = $(`${name}-next`);
  const label = $(`${name}-page`);
  const cursors = [];
  let current = null;
  let following = null;
  async function open(cursor) {
    const answer = await load(cursor);
    current = cursor;
    following = answer.next;
    previous.disabled = cursors.length === 0;
    next.disabled = !following;
    label.textContent = `Page ${cursors.length + 1}`;
  }
  previous.addEventListener("click", () => {
    if (!cursors.length) return;
    open(cursors.pop()).catch((error) => showError(errorBox, error));
  });
  next.addEventListener("click", () => {
    if (!following) return;
    cursors.push(current);
    open(following).catch((error) => showError(errorBox, error));
  });
  return open;
}

async function statementPage(cursor) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (cursor) query.set("cursor", cursor);
  const { body } = await getJson(`${base}/statement?${query}`);
  const rows = body.lines.map((line) =>
    el(
      "tr",
      {},
      el("td", { className: "num" }, line.version),
      el("td", {}, timeElement(line.timestamp)),
      el("td", {}, line.kind.replaceAll("_", " ")),
      el("td", { className: "num" }, moneyElement(line.amount_in_cents, currency)),
      el("td", { className: "num" }, moneyElement(line.balance_after_in_cents, currency)),
      el("td", {}, line.counterparty_account_id ? accountLink(line.counterparty_account_id) : ""),
      el("td", {}, line.transfer_id ? transferLink(line.transfer_id) : ""),
      el("td", {}, line.reference || ""),
    ),
  );
  fill($("statement").querySelector("tbody"), rows);
  return { next: body.next_cursor };
}

async function eventsPage(afterVersion) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), after_version: afterVersion || "0" });
  const { body, headers } = await getJson(`${base}/events?${query}`);
  const rows = body.map((event) => {
    const travel = el("button", { type: "button", className: "quiet" }, `Show version ${event.version}`);
    travel.addEventListener("click", () => showVersion(event.version).catch((error) => showError(errorBox, error)));
    const row = el(
      "tr",
      { "data-version": event.version },
      el("td", { className: "num" }, event.version),
      el("td", {}, timeElement(event.timestamp)),
      el("td", {}, event.type),
      el("td", { className: "data" }, dataSummary(event.data, currency)),
      el("td", {}, travel),
    );
    row.classList.toggle("selected", shown === event.version);
    return row;
  });
  fill($("events").querySelector("tbody"), rows);
  const more = headers.get("Link") && body.length;
  return { next: more ? String(body[body.length - 1].version) : null };
}

let debounce = null;

function wireTimeTravel() {
  range.addEventListener("input", () => {
    number.value = range.value;
    clearTimeout(debounce);
    debounce = setTimeout(() => showVersion(Number(range.value)).catch((error) => showError(errorBox, error)), 120);
  });
  const pickVersion = () => {
    const version = Math.min(Math.max(1, Math.round(Number(number.value)) || 1), latest.version);
    showVersion(version).catch((error) => showError(errorBox, error));
  };
  number.addEventListener("change", pickVersion);
  $("tt-version-form").addEventListener("submit", (event) => {
    event.preventDefault();
    pickVersion();
  });
  $("tt-moment-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!moment.value) {
      ttStatus.textContent = "Pick a date and time first.";
      moment.focus();
      return;
    }
    showMoment(new Date(moment.value).toISOString()).catch((error) => showError(errorBox, error));
  });
  $("tt-now").addEventListener("click", () => showNow().catch((error) => showError(errorBox, error)));
}

async function main() {
  const asked = new URLSearchParams(location.search);
  wireTimeTravel();
  try {
    await showNow();
  } catch (error) {
    showError(errorBox, error);
    if (error instanceof ApiError && error.status === 404) {
      fill($("account-meta"), "No such account.");
    }
    return;
  }
  moment.value = localInputValue(Date.now());
  const reads = [
    loadChart(),
    loadHolds(),
    pager("statement", statementPage)(null),
    pager("events", eventsPage)(null),
  ];
  if (asked.get("version")) reads.push(showVersion(Number(asked.get("version"))));
  else if (asked.get("as_of")) reads.push(showMoment(asked.get("as_of")));
  const results = await Promise.allSettled(reads);
  const failed = results.find((result) => result.status === "rejected");
  if (failed) showError(errorBox, failed.reason);
}

start(main);
