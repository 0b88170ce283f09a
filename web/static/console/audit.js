// The audit: GET /api/audit runs every check of `bank audit`; each is shown
// with its result and the first violations it found.
import { getJson, start } from "./api.js";
import { accountLink, badge, el, fill, moneyElement, transferLink } from "./render.js";

const $ = (id) => document.getElementById(id);
const status = $("audit-status");
const runButton = $("audit-run");

function result(check) {
  if (!check.ran) return badge("skipped");
  if (check.passed) return badge("passed");
  return badge(`failed (${check.violation_count})`, "bad");
}

function violation(found) {
  const where = [];
  if (found.account_id) where.push("account ", accountLink(found.account_id));
  if (found.version !== null) where.push(` version ${found.version}`);
  if (found.transfer_id) where.push(where.length ? ", transfer " : "transfer ", transferLink(found.transfer_id));
  return el("li", {}, found.message, where.length ? el("span", { className: "muted" }, " (", ...where, ")") : null);
}

function show(report) {
  $("audit-result").hidden = false;
  fill(
    $("audit-verdict"),
    report.passed ? badge("passed") : badge("failed"),
    report.passed ? " No violations found." : " The audit found violations.",
  );
  const figures = [
    ["Accounts", report.accounts],
    ["Account events", report.account_events],
    ["Transfers", report.transfers],
    ["Transfer events", report.transfer_events],
  ];
  fill(
    $("audit-figures"),
    figures.map(([name, value]) => el("div", {}, el("dt", {}, name), el("dd", {}, value.toLocaleString()))),
  );
  fill(
    $("audit-checks").querySelector("tbody"),
    report.checks.map((check) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, check.name),
        el("td", {}, result(check)),
        el("td", {}, check.examined),
        el("td", {}, check.description),
      ),
    ),
  );
  fill(
    $("audit-currencies").querySelector("tbody"),
    report.currencies.map((totals) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, totals.currency),
        el("td", { className: "num" }, moneyElement(totals.balance_in_cents, totals.currency)),
        el("td", { className: "num" }, moneyElement(totals.deposits_in_cents, totals.currency)),
        el("td", { className: "num" }, moneyElement(totals.withdrawals_in_cents, totals.currency)),
      ),
    ),
  );
  fill(
    $("audit-violations"),
    report.checks
      .filter((check) => check.violation_count > 0)
      .map((check) => [
        el("h3", {}, `Violations of “${check.name}”`),
        check.violations.length < check.violation_count
          ? el("p", { className: "hint" }, `The first ${check.violations.length} of ${check.violation_count}.`)
          : null,
        el("ul", { className: "violations" }, check.violations.map(violation)),
      ]),
  );
}

async function run() {
  runButton.disabled = true;
  status.textContent = "Running the audit…";
  const started = performance.now();
  try {
    const { body } = await getJson("/api/audit");
    show(body);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    status.textContent = `Audit finished in ${seconds} s: ${body.passed ? "passed" : "failed"}.`;
  } catch (error) {
    status.textContent = error.message;
  } finally {
    runButton.disabled = false;
  }
}

function main() {
  runButton.addEventListener("click", run);
  return run();
}

start(main);
