// Find accounts: by owner email (GET /api/accounts?owner_email=, paged) or by id.
import { ApiError, getJson, start } from "./api.js";
import { accountLink, badge, el, moneyElement } from "./render.js";

const form = document.getElementById("search-form");
const input = document.getElementById("q");
const status = document.getElementById("search-status");
const table = document.getElementById("results");
const rows = table.querySelector("tbody");
const more = document.getElementById("more-results");
let nextPage = null;

function row(account) {
  return el(
    "tr",
    {},
    el("td", {}, accountLink(account.account_id)),
    el("td", {}, account.account_owner_email),
    el("td", {}, account.currency),
    el("td", { className: "num" }, moneyElement(account.balance_in_cents, account.currency)),
    el("td", { className: "num" }, moneyElement(account.available_in_cents, account.currency)),
    el("td", {}, badge(account.closed ? "closed" : "open")),
  );
}

function show(accounts, append) {
  if (!append) rows.replaceChildren();
  rows.append(...accounts.map(row));
  table.hidden = rows.children.length === 0;
}

async function byEmail(email, cursor) {
  const query = new URLSearchParams({ owner_email: email, limit: "50" });
  if (cursor) query.set("cursor", cursor);
  const { body } = await getJson(`/api/accounts?${query}`);
  show(body.accounts, Boolean(cursor));
  nextPage = body.next_cursor ? () => byEmail(email, body.next_cursor) : null;
  more.hidden = !nextPage;
  const count = rows.children.length;
  status.textContent = count
    ? `${count} account${count === 1 ? "" : "s"} of ${email}${nextPage ? " so far" : ""}.`
    : `No accounts of ${email}.`;
}

async function byId(accountId) {
  nextPage = null;
  more.hidden = true;
  try {
    const { body } = await getJson(`/api/accounts/${encodeURIComponent(accountId)}`);
    show([body], false);
    status.textContent = `Account ${body.account_id} found.`;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    show([], false);
    status.textContent = `There is no account ${accountId}.`;
  }
}

async function search(term) {
  status.textContent = "Searching…";
  try {
    if (term.includes("@")) await byEmail(term);
    else await byId(term);
  } catch (error) {
    show([], false);
    status.textContent = error.message;
  }
}

function main() {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const term = input.value.trim();
    if (!term) return;
    history.replaceState(null, "", `?q=${encodeURIComponent(term)}`);
    search(term);
  });
  more.addEventListener("click", () => nextPage && nextPage().catch((error) => (status.textContent = error.message)));
  const term = new URLSearchParams(location.search).get("q");
  if (term) {
    input.value = term;
    search(term.trim());
  }
}

start(main);
