// One transfer: its status now (GET /api/transfers/<id>) and its history, read
// from the payer's statement (placed, posted, voided, expired) and the payer's
// transfers (the reversals, which name it in reverses_transfer_id).
import { getJson, start } from "./api.js";
import { accountLink, badge, el, fill, moneyElement, showError, timeElement, transferLink } from "./render.js";

const PAGE_SIZE = 1000;
const MAX_PAGES = 5;
// The accounts' events of a transfer are recorded with it, a moment apart.
const SLACK_MILLISECONDS = 60_000;

const transferId = document.getElementById("transfer").dataset.transferId;
const $ = (id) => document.getElementById(id);

/** Every item of a paged read (at most MAX_PAGES pages), and whether it stopped short. */
async function allPages(path, key, query) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const params = new URLSearchParams({ ...query, limit: String(PAGE_SIZE) });
    if (cursor) params.set("cursor", cursor);
    const { body } = await getJson(`${path}?${params}`);
    items.push(...body[key]);
    cursor = body.next_cursor;
    if (!cursor) return { items, complete: true };
  }
  return { items, complete: false };
}

function entry(timestamp, ...text) {
  return { timestamp, node: el("li", {}, el("span", { className: "when" }, timeElement(timestamp)), ...text) };
}

function historyOf(transfer, lines, reversals) {
  const currency = transfer.currency;
  const held = lines.some((line) => line.kind === "hold_out");
  const entries = [];
  for (const line of lines) {
    const amount = moneyElement(Math.abs(line.amount_in_cents), currency);
    if (line.kind === "hold_out") {
      entries.push(entry(line.timestamp, "Hold placed: ", moneyElement(transfer.amount_in_cents, currency), " reserved"));
    } else if (line.kind === "transfer_out") {
      entries.push(entry(line.timestamp, held ? "Posted: " : "Moved at once: ", amount, " moved"));
    } else if (line.kind === "hold_voided") {
      entries.push(entry(line.timestamp, "Voided: the hold was released"));
    } else if (line.kind === "hold_expired") {
      entries.push(entry(line.timestamp, "Expired: the hold lapsed"));
    }
  }
  for (const reversal of reversals) {
    entries.push(
      entry(
        reversal.created_at,
        "Reversed: ",
        moneyElement(reversal.amount_in_cents, currency),
        " moved back by transfer ",
        transferLink(reversal.transfer_id),
      ),
    );
  }
  if (!entries.length) entries.push(entry(transfer.created_at, "Created"));
  entries.sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
  return entries.map((item) => item.node);
}

function figures(transfer) {
  const currency = transfer.currency;
  fill($("transfer-status"), badge(transfer.status));
  fill($("t-amount"), moneyElement(transfer.amount_in_cents, currency));
  fill($("t-posted"), moneyElement(transfer.posted_amount_in_cents, currency));
  fill($("t-reversed"), moneyElement(transfer.reversed_amount_in_cents, currency));
  fill($("t-from"), accountLink(transfer.from_account_id));
  fill($("t-to"), accountLink(transfer.to_account_id));
  fill($("t-created"), timeElement(transfer.created_at));
  fill($("t-expires"), timeElement(transfer.expires_at));
  if (transfer.reverses_transfer_id) {
    fill($("transfer-reverses"), "· reverses ", transferLink(transfer.reverses_transfer_id, transfer.reverses_transfer_id));
  }
  const pairs = Object.entries(transfer.metadata || {}).flatMap(([key, value]) => [el("dt", {}, key), el("dd", {}, value)]);
  fill($("metadata"), pairs);
  $("metadata-empty").hidden = pairs.length > 0;
}

async function main() {
  let transfer;
  try {
    ({ body: transfer } = await getJson(`/api/transfers/${encodeURIComponent(transferId)}`));
  } catch (error) {
    showError($("transfer-error"), error);
    return;
  }
  figures(transfer);
  const payer = `/api/accounts/${encodeURIComponent(transfer.from_account_id)}`;
  const since = new Date(Date.parse(transfer.created_at) - SLACK_MILLISECONDS).toISOString();
  try {
    const [statement, transfers] = await Promise.all([
      allPages(`${payer}/statement`, "lines", { from: since }),
      allPages(`${payer}/transfers`, "transfers", {}),
    ]);
    const lines = statement.items.filter((line) => line.transfer_id === transferId);
    const reversals = transfers.items.filter((item) => item.reverses_transfer_id === transferId);
    fill($("history"), historyOf(transfer, lines, reversals));
    $("history-note").textContent =
      statement.complete && transfers.complete ? "" : "The payer's history is long: only its first pages were read.";
    fill(
      $("reversals").querySelector("tbody"),
      reversals.map((reversal) =>
        el(
          "tr",
          {},
          el("td", {}, transferLink(reversal.transfer_id)),
          el("td", { className: "num" }, moneyElement(reversal.amount_in_cents, reversal.currency)),
          el("td", {}, timeElement(reversal.created_at)),
          el("td", {}, Object.entries(reversal.metadata || {}).map(([k, v]) => `${k}: ${v}`).join(", ")),
        ),
      ),
    );
    $("reversals").hidden = reversals.length === 0;
    $("reversals-empty").hidden = reversals.length > 0;
  } catch (error) {
    showError($("transfer-error"), error);
  }
}

start(main);
