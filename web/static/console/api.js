// Talking to /api: the bearer token (kept in sessionStorage only), JSON reads,
// and the event stream read from a fetch() body, so it can carry the token.

const TOKEN_KEY = "bank.apiToken";
const tokenRequired = document.body.dataset.tokenRequired === "true";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

function headers(extra) {
  const all = { Accept: "application/json", ...extra };
  const bearer = token();
  if (bearer) all.Authorization = `Bearer ${bearer}`;
  return all;
}

/** GET a JSON answer from /api: {body, headers}; an ApiError otherwise. */
export async function getJson(path, { signal } = {}) {
  let response;
  try {
    response = await fetch(path, { headers: headers(), signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", "The bank did not answer; is it running?");
  }
  const body = await response.json().catch(() => null);
  if (response.ok) return { body, headers: response.headers };
  if (response.status === 401) askForToken(token() ? "That token was refused." : "");
  const error = (body && body.error) || {};
  throw new ApiError(
    response.status,
    error.code || `http_${response.status}`,
    error.message || `The bank answered HTTP ${response.status}.`,
    error.details,
  );
}

/** Open a GET whose body is read as it comes (Server-Sent Events). */
export async function openStream(path, { lastEventId, signal } = {}) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  const response = await fetch(path, { headers: headers(extra), signal, cache: "no-store" });
  if (response.ok) return response;
  const body = await response.json().catch(() => null);
  if (response.status === 401) askForToken(token() ? "That token was refused." : "");
  const error = (body && body.error) || {};
  const failure = new ApiError(
    response.status,
    error.code || `http_${response.status}`,
    error.message || `The bank answered HTTP ${response.status}.`,
    error.details,
  );
  failure.retryAfter = Number(response.headers.get("Retry-After")) || 0;
  throw failure;
}

/** Server-Sent Events from a body: {id, type, data} per event, {retry} per retry field. */
export async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  let type = "";
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // A lone "\r" at the end may be the first half of "\r\n": wait for more.
      const lineEnd = /\r\n|\n|\r(?!$)/;
      let found;
      while ((found = lineEnd.exec(buffer))) {
        const line = buffer.slice(0, found.index);
        buffer = buffer.slice(found.index + found[0].length);
        if (line === "") {
          if (data.length) yield { id, type: type || "message", data: data.join("\n") };
          data = [];
          type = "";
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: the heartbeat
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") data.push(text);
        else if (field === "event") type = text;
        else if (field === "id" && !text.includes("\0")) id = text;
        else if (field === "retry" && /^[0-9]+$/.test(text)) yield { retry: Number(text) };
      }
    }
  } finally {
    reader.releaseLock();
  }
}

let started = false;
let pageMain = null;

/** Show the token form instead of the page (with why, if anything went wrong). */
export function askForToken(problem) {
  const gate = document.getElementById("token-gate");
  document.getElementById("page").hidden = true;
  gate.hidden = false;
  document.getElementById("token-error").textContent = problem || "";
  document.getElementById("token").focus();
}

function showForget() {
  document.getElementById("forget-token").hidden = !token();
}

/** Run the page's main() once a token is there, if the bank wants one. */
export function start(main) {
  pageMain = main;
  const form = document.getElementById("token-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    if (started) {
      window.location.reload();
      return;
    }
    document.getElementById("token-gate").hidden = true;
    document.getElementById("page").hidden = false;
    showForget();
    run();
  });
  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    window.location.reload();
  });
  showForget();
  if (tokenRequired && !token()) {
    askForToken("");
    return;
  }
  run();
}

function run() {
  started = true;
  Promise.resolve(pageMain()).catch((error) => {
    if (error instanceof ApiError && error.status === 401) return;
    console.error(error);
  });
}
