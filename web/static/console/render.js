// How values are shown: elements built with text only (never HTML from data),
// money in the account's currency, times in the reader's zone.

/** An element with attributes (on* and innerHTML refused) and children. */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") || name === "innerHTML") throw new Error(`refused: ${name}`);
    if (name === "className") element.className = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Replace an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

const formats = new Map();

function currencyFormat(currency) {
  if (!formats.has(currency)) {
    let format;
    try {
      format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    } catch {
      format = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2 });
    }
    formats.set(currency, format);
  }
  return formats.get(currency);
}

/** Minor units (cents) as money of the currency: 123456 USD is "$1,234.56". */
export function money(minorUnits, currency) {
  const format = currencyFormat(currency);
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(minorUnits / 10 ** digits);
}

/** Money as an element that also says the exact minor units. */
export function moneyElement(minorUnits, currency, tag = "span") {
  return el(tag, { title: `${minorUnits} minor units (${currency})` }, money(minorUnits, currency));
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** An RFC 3339 time as the reader's local time. */
export function when(timestamp) {
  return timeFormat.format(new Date(timestamp));
}

/** A <time> element for an RFC 3339 time. */
export function timeElement(timestamp) {
  if (!timestamp) return el("span", { className: "muted" }, "never");
  return el("time", { datetime: timestamp }, when(timestamp));
}

export function accountLink(accountId) {
  return el("a", { href: `/accounts/${encodeURIComponent(accountId)}`, className: "mono" }, accountId);
}

export function transferLink(transferId, text) {
  return el(
    "a",
    { href: `/transfers/${encodeURIComponent(transferId)}`, className: "mono", title: transferId },
    text || `${transferId.slice(0, 8)}…`,
  );
}

const BADGES = {
  posted: "ok",
  passed: "ok",
  open: "ok",
  pending: "warn",
  skipped: "warn",
  voided: "",
  expired: "",
  closed: "",
  failed: "bad",
};

export function badge(text, kind = BADGES[text] ?? "") {
  return el("span", { className: `badge ${kind}`.trim() }, text);
}

/** An event's data as short "name: value" text, ids linked. */
export function dataSummary(data, currency) {
  const parts = [];
  for (const [name, value] of Object.entries(data || {})) {
    if (value === null || value === "" || (typeof value === "object" && !Object.keys(value).length)) continue;
    if (parts.length) parts.push(" · ");
    if (name.endsWith("transfer_id")) parts.push(`${name}: `, transferLink(value));
    else if (name.endsWith("account_id")) parts.push(`${name}: `, accountLink(value));
    else if (name.endsWith("_in_cents") && currency) parts.push(`${name.replace("_in_cents", "")}: `, moneyElement(value, currency));
    else parts.push(`${name}: ${typeof value === "object" ? JSON.stringify(value) : value}`);
  }
  return parts;
}

/** Show an error (an ApiError's message) in an alert element. */
export function showError(element, error) {
  element.hidden = false;
  element.textContent = error.message || String(error);
}
