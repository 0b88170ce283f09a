// The balance over time as an inline SVG step chart, drawn from statement lines.
import { money, when } from "./render.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 720;
const HEIGHT = 220;
const MARGIN = { left: 86, right: 18, top: 14, bottom: 34 };

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Round steps for an axis from low to high: about four of them. */
function ticks(low, high) {
  const span = high - low || 1;
  const rough = span / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) || power * 10;
  const found = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step / 1e6; value += step) found.push(value);
  return found;
}

/**
 * Draw the points ({version, time, balance}, oldest first) into the container;
 * `marker` is a version to mark (the time-travel choice), or null.
 */
export function drawBalanceChart(container, points, currency, marker) {
  container.replaceChildren();
  if (!points.length) return;
  const times = points.map((point) => point.time);
  const start = times[0];
  const end = Math.max(times[times.length - 1], start + 1);
  const balances = points.map((point) => point.balance);
  let low = Math.min(0, ...balances);
  let high = Math.max(0, ...balances);
  if (low === high) high = low + 100;
  const axis = ticks(low, high);
  low = Math.min(low, axis[0]);
  high = Math.max(high, axis[axis.length - 1]);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (time) => MARGIN.left + ((time - start) / (end - start)) * plotWidth;
  const y = (balance) => MARGIN.top + (1 - (balance - low) / (high - low)) * plotHeight;

  const first = points[0];
  const last = points[points.length - 1];
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-labelledby": "chart-svg-title chart-svg-desc",
  });
  chart.append(
    svg("title", { id: "chart-svg-title" }, "Balance over time"),
    svg(
      "desc",
      { id: "chart-svg-desc" },
      `${points.length} statement lines from ${when(first.timestamp)} to ${when(last.timestamp)}: ` +
        `from ${money(first.balance, currency)} to ${money(last.balance, currency)}, ` +
        `lowest ${money(Math.min(...balances), currency)}, highest ${money(Math.max(...balances), currency)}.`,
    ),
  );
  for (const value of axis) {
    chart.append(
      svg("line", { class: value === 0 ? "zero" : "grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(value), y2: y(value) }),
      svg("text", { x: MARGIN.left - 8, y: y(value) + 4, "text-anchor": "end" }, money(value, currency)),
    );
  }
  let path = `M ${x(first.time)} ${y(first.balance)}`;
  for (const point of points.slice(1)) path += ` H ${x(point.time)} V ${y(point.balance)}`;
  path += ` H ${WIDTH - MARGIN.right}`;
  const baseline = y(Math.max(low, Math.min(0, high)));
  chart.append(
    svg("path", { class: "area", d: `${path} V ${baseline} H ${x(first.time)} Z` }),
    svg("path", { class: "line", d: path }),
    svg("text", { x: MARGIN.left, y: HEIGHT - 10 }, when(first.timestamp)),
    svg("text", { x: WIDTH - MARGIN.right, y: HEIGHT - 10, "text-anchor": "end" }, when(last.timestamp)),
  );
  const marked = marker === null ? null : points.filter((point) => point.version <= marker).pop();
  if (marked) {
    const at = x(marked.time);
    chart.append(
      svg("line", { class: "marker", x1: at, x2: at, y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom }),
      svg(
        "text",
        { class: "marker-label", x: Math.min(at + 6, WIDTH - MARGIN.right - 40), y: MARGIN.top + 12 },
        `v${marker}`,
      ),
    );
  }
  container.append(chart);
}
