// Shared helpers for the productmatch UI. API data reaches the DOM through textContent only.
"use strict";

const PM = (() => {
  const TOKEN_KEY = "productmatch.adminToken";

  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  // The API's JSON errors carry `detail`: a string, or a list of {loc, msg} from validation.
  function detailText(body, fallback) {
    const detail = body && typeof body === "object" ? body.detail : undefined;
    if (typeof detail === "string" && detail) return detail;
    if (Array.isArray(detail) && detail.length) {
      return detail
        .map((d) => {
          const loc = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
          return loc ? `${loc}: ${d.msg}` : String(d.msg || JSON.stringify(d));
        })
        .join("\n");
    }
    if (detail !== undefined && detail !== null) return JSON.stringify(detail);
    return fallback;
  }

  function getToken() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function setToken(token) {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  // fetch() a JSON API route; returns the parsed body or throws ApiError with the API's detail.
  async function api(method, path, options = {}) {
    const headers = { Accept: "application/json" };
    const init = { method, headers };
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.json);
    } else if (options.form !== undefined) {
      init.body = options.form; // FormData: the browser sets the multipart boundary
    }
    if (options.admin) {
      const token = getToken();
      if (token) headers.Authorization = `Bearer ${token}`;
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, `the service did not answer (${err.message})`, null);
    }
    const text = await res.text();
    let body = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (_err) {
        body = null;
      }
    }
    if (!res.ok) {
      const fallback = `${res.status} ${res.statusText || "error"}`.trim();
      throw new ApiError(res.status, `${res.status}: ${detailText(body, fallback)}`, body);
    }
    return body;
  }

  // el("td", {className: "num"}, "text", childNode, ...): strings become text nodes, never HTML.
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);

  function show(node, text) {
    node.textContent = text;
    node.hidden = !text;
  }

  function showError(node, err) {
    show(node, err instanceof Error ? err.message : String(err));
  }

  function fmt(value, digits = 3) {
    if (value === undefined || value === null || value === "") return "";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
    return String(value);
  }

  function money(price, currency) {
    if (price === undefined || price === null) return "";
    return `${Number(price).toFixed(2)} ${currency || ""}`.trim();
  }

  function when(value) {
    if (!value) return "";
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
  }

  function compactJson(value) {
    if (value === undefined || value === null) return "";
    if (typeof value === "object" && !Array.isArray(value)) {
      return Object.entries(value)
        .map(([k, v]) => `${k}=${typeof v === "number" ? fmt(v) : JSON.stringify(v)}`)
        .join(", ");
    }
    return JSON.stringify(value);
  }

  function productLink(externalId) {
    return el("a", { href: `/ui/catalogue?id=${encodeURIComponent(externalId)}` }, externalId);
  }

  const FINISHED = new Set(["completed", "completed_with_errors", "failed"]);

  // Draw a job (GET /v1/jobs/{id} body) into `container`.
  function renderJob(container, job) {
    const p = job.progress || {};
    const progress = el("progress", {
      className: "job-progress",
      max: p.rows_total || 1,
      value: p.rows_total ? p.rows_done : FINISHED.has(job.state) ? 1 : 0,
      "aria-label": "job progress",
    });
    const fields = el(
      "dl",
      { className: "fields" },
      el("dt", {}, "Job id"), el("dd", { className: "job-id" }, job.id),
      el("dt", {}, "Kind"), el("dd", {}, job.kind),
      el("dt", {}, "State"), el("dd", {}, el("span", { className: `state state-${job.state}`, dataset: { state: job.state } }, job.state)),
      el("dt", {}, "Progress"),
      el("dd", {}, progress, " ", `${p.rows_done ?? 0}${p.rows_total ? ` / ${p.rows_total}` : ""} rows`,
        p.fraction !== null && p.fraction !== undefined ? ` (${Math.round(p.fraction * 100)}%)` : ""),
      el("dt", {}, "Rows"), el("dd", {}, `${job.rows_ok} ok, ${job.rows_unchanged} unchanged, ${job.rows_failed} failed`),
      el("dt", {}, "Message"), el("dd", { className: "job-message" }, job.message || ""),
      el("dt", {}, "Attempts"), el("dd", {}, String(job.attempts)),
      el("dt", {}, "Created"), el("dd", {}, when(job.created_at)),
      el("dt", {}, "Started"), el("dd", {}, when(job.started_at)),
      el("dt", {}, "Finished"), el("dd", {}, when(job.finished_at)),
      el("dt", {}, "Timings"), el("dd", {}, compactJson(job.timings)),
    );
    const parts = [fields];
    if (job.errors && job.errors.length) {
      const rows = job.errors.map((e) => el("tr", {}, el("td", { className: "num" }, String(e.row)), el("td", {}, e.field || ""), el("td", {}, e.message)));
      parts.push(
        el("h3", {}, `Row errors (${job.error_count}${job.errors_truncated ? ", first shown" : ""})`),
        el("table", { className: "data job-errors" },
          el("thead", {}, el("tr", {}, el("th", { className: "num" }, "Row"), el("th", {}, "Field"), el("th", {}, "Reason"))),
          el("tbody", {}, rows)),
      );
    }
    container.replaceChildren(...parts);
  }

  // Poll GET /v1/jobs/{id} into `container` until the job finishes; errors go to `errorNode`;
  // `onFinish(job)` (optional) runs once with the finished job.
  // Returns a stop() function; a newer poll on the same container stops the older one.
  function pollJob(jobId, container, errorNode, intervalMs = 700, onFinish = null) {
    if (container._stopPoll) container._stopPoll();
    let stopped = false;
    let timer = null;
    const stop = () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
    container._stopPoll = stop;
    const tick = async () => {
      if (stopped) return;
      try {
        const job = await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
        if (stopped) return;
        if (errorNode) show(errorNode, "");
        renderJob(container, job);
        if (FINISHED.has(job.state)) {
          if (onFinish) onFinish(job);
          return;
        }
      } catch (err) {
        if (errorNode) showError(errorNode, err);
        if (err.status === 404) return;
      }
      timer = setTimeout(tick, intervalMs);
    };
    tick();
    return stop;
  }

  // Wire a catalogue upload form (CSV with a header, or JSON Lines) to POST /v1/ingest.
  // `ids`: element ids {form, file, format, error, status}; `onAccepted(accepted, file)` gets the
  // 202 body ({job_id, state, status_url}) and follows the job (e.g. with pollJob).
  function ingestForm(ids, onAccepted) {
    $(ids.form).addEventListener("submit", async (event) => {
      event.preventDefault();
      show($(ids.error), "");
      show($(ids.status), "");
      const file = $(ids.file).files[0];
      if (!file) {
        show($(ids.error), "choose a file first");
        return;
      }
      const form = new FormData();
      form.append("file", file, file.name);
      if ($(ids.format).value) form.append("format", $(ids.format).value);
      try {
        const accepted = await api("POST", "/v1/ingest", { form });
        $(ids.status).replaceChildren(`Uploaded ${file.name}: job `, el("code", {}, accepted.job_id), ` ${accepted.state}.`);
        $(ids.status).hidden = false;
        onAccepted(accepted, file);
      } catch (err) {
        showError($(ids.error), err);
      }
    });
  }

  // Letters and digits, as the service's word splitter (rapidfuzz default_process) sees words.
  const WORD = /[\p{L}\p{N}]+/gu;
  const wordKey = (word) => String(word).toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "");

  // `text` as text nodes with every word found in `words` (Map: lower-case word -> {pair, note})
  // wrapped in <mark class="pair-word pN" title=note>; built with DOM nodes, never HTML.
  function highlightWords(text, words) {
    const nodes = [];
    const value = String(text ?? "");
    let last = 0;
    for (const m of value.matchAll(WORD)) {
      const hit = words.get(m[0].toLowerCase());
      if (!hit) continue;
      if (m.index > last) nodes.push(document.createTextNode(value.slice(last, m.index)));
      nodes.push(el("mark", { className: `pair-word p${hit.pair % 5}`, title: hit.note, dataset: { pair: String(hit.pair) } }, m[0]));
      last = m.index + m[0].length;
    }
    if (last < value.length || !nodes.length) nodes.push(document.createTextNode(value.slice(last)));
    return nodes;
  }

  return {
    api, ApiError, el, $, show, showError, fmt, money, when, compactJson, productLink, getToken, setToken,
    renderJob, pollJob, ingestForm, highlightWords, wordKey, FINISHED,
  };
})();
