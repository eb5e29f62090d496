// Models: list versions with their metrics side by side, the active matcher's precision/recall
// against threshold (inline SVG built with DOM calls), promote, roll back, retrain (admin bearer
// token kept in sessionStorage).
"use strict";

(() => {
  const { api, el, $, show, showError, fmt, when, getToken, setToken, pollJob } = PM;
  const SVG_NS = "http://www.w3.org/2000/svg";

  function tokenState() {
    $("token-state").textContent = getToken()
      ? "A token is set for this tab (session storage only)."
      : "No token set: admin calls will be refused. Kept in this tab's session storage only.";
  }

  function followJob(accepted) {
    $("model-job-panel").hidden = false;
    show($("model-job-error"), "");
    $("model-job").replaceChildren(el("p", {}, "Job ", el("code", { className: "job-id" }, accepted.job_id), ` ${accepted.state}`));
    pollJob(accepted.job_id, $("model-job"), $("model-job-error"));
  }

  function failed(err) {
    $("model-job-panel").hidden = false;
    $("model-job").replaceChildren();
    showError($("model-job-error"), err);
  }

  async function promote(version) {
    try {
      followJob(await api("POST", `/v1/admin/models/${encodeURIComponent(version)}/promote`, { admin: true }));
    } catch (err) {
      failed(err);
    }
  }

  // Scalar metrics by dotted key ({held_out: {f1: 0.9}} -> "held_out.f1"); lists and nulls are left out.
  function flatMetrics(metrics, prefix = "", out = new Map(), depth = 0) {
    for (const [key, value] of Object.entries(metrics || {})) {
      const name = prefix ? `${prefix}.${key}` : key;
      if (value === null || value === undefined || Array.isArray(value)) continue;
      if (typeof value === "object") {
        if (depth < 2) flatMetrics(value, name, out, depth + 1);
      } else {
        out.set(name, value);
      }
    }
    return out;
  }

  function metricCell(value, key) {
    const data = { metric: key };
    if (value === undefined) return el("td", { className: "muted", dataset: data }, "–");
    if (typeof value === "number") return el("td", { className: "num", dataset: data }, fmt(value, 4));
    if (typeof value === "boolean") return el("td", { dataset: data }, value ? "yes" : "no");
    return el("td", { className: "text", dataset: data }, String(value));
  }

  function renderMetrics(versions) {
    const flat = versions.map((v) => flatMetrics(v.metrics));
    const keys = [];
    for (const m of flat) for (const key of m.keys()) if (!keys.includes(key)) keys.push(key);
    $("metrics-head").replaceChildren(
      el("th", {}, "Version"), el("th", {}, "Kind"), el("th", {}, "Status"),
      ...keys.map((key) => el("th", { className: "num", scope: "col", dataset: { metric: key } }, key)),
    );
    $("metrics-rows").replaceChildren(
      ...versions.map((v, i) =>
        el("tr", { className: `metrics-row${v.status === "active" ? " active" : ""}`, dataset: { version: v.version } },
          el("th", { scope: "row" }, el("code", {}, v.version)),
          el("td", {}, v.kind),
          el("td", {}, v.status),
          ...keys.map((key) => metricCell(flat[i].get(key), key))),
      ),
    );
    $("metrics-panel").hidden = versions.length === 0;
  }

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  // Precision and recall against threshold as an inline SVG line chart (no library).
  function prChart(curve) {
    const W = 640, H = 350, L = 52, R = 130, T = 26, B = 46;
    const x = (t) => L + t * (W - L - R);
    const y = (v) => T + (1 - v) * (H - T - B);
    const parts = [svg("title", { id: "pr-chart-title" }, `Precision and recall against threshold, ${curve.version}`)];
    for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
      parts.push(
        svg("line", { class: "grid", x1: x(0), x2: x(1), y1: y(tick), y2: y(tick) }),
        svg("line", { class: "grid", x1: x(tick), x2: x(tick), y1: y(0), y2: y(1) }),
        svg("text", { class: "tick", x: L - 8, y: y(tick) + 4, "text-anchor": "end" }, tick.toFixed(2)),
        svg("text", { class: "tick", x: x(tick), y: y(0) + 18, "text-anchor": "middle" }, tick.toFixed(2)),
      );
    }
    parts.push(
      svg("line", { class: "axis", x1: x(0), x2: x(1), y1: y(0), y2: y(0) }),
      svg("line", { class: "axis", x1: x(0), x2: x(0), y1: y(0), y2: y(1) }),
      svg("text", { class: "axis-title", x: x(0.5), y: H - 6, "text-anchor": "middle" }, "decision threshold (calibrated probability)"),
    );
    const line = (key) => curve.points.map((p) => `${x(p.threshold).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    parts.push(
      svg("polyline", { class: "pr-line pr-precision", points: line("precision") }, svg("title", {}, "precision")),
      svg("polyline", { class: "pr-line pr-recall", points: line("recall") }, svg("title", {}, "recall")),
    );
    const t = Math.max(0, Math.min(1, curve.threshold));
    parts.push(
      svg("line", { class: "pr-threshold", x1: x(t), x2: x(t), y1: y(0), y2: y(1) }, svg("title", {}, `decision threshold ${fmt(curve.threshold, 4)}`)),
      svg("text", { class: "tick pr-threshold-label", x: x(t), y: T - 8, "text-anchor": "middle" }, `threshold ${fmt(curve.threshold, 3)}`),
    );
    const lx = x(1) + 16;
    parts.push(
      svg("line", { class: "pr-line pr-precision", x1: lx, x2: lx + 22, y1: y(0.9), y2: y(0.9) }),
      svg("text", { class: "legend", x: lx + 28, y: y(0.9) + 4 }, "precision"),
      svg("line", { class: "pr-line pr-recall", x1: lx, x2: lx + 22, y1: y(0.78), y2: y(0.78) }),
      svg("text", { class: "legend", x: lx + 28, y: y(0.78) + 4 }, "recall"),
      svg("line", { class: "pr-threshold", x1: lx + 11, x2: lx + 11, y1: y(0.7), y2: y(0.58) }),
      svg("text", { class: "legend", x: lx + 28, y: y(0.64) + 4 }, "threshold"),
    );
    return svg("svg", { id: "pr-chart-svg", class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "pr-chart-title" }, parts);
  }

  async function loadCurve(versions) {
    const active = versions.find((v) => v.kind === "matcher" && v.status === "active");
    $("pr-panel").hidden = !active;
    $("pr-chart").replaceChildren();
    show($("pr-error"), "");
    if (!active) return;
    $("pr-version").textContent = `(${active.version})`;
    try {
      const curve = await api("GET", `/v1/admin/models/${encodeURIComponent(active.version)}/pr-curve`, { admin: true });
      $("pr-chart").replaceChildren(prChart(curve));
    } catch (err) {
      showError($("pr-error"), err);
    }
  }

  async function loadVersions() {
    show($("models-error"), "");
    const kind = $("versions-kind").value;
    try {
      const body = await api("GET", `/v1/admin/models${kind ? `?kind=${encodeURIComponent(kind)}` : ""}`, { admin: true });
      const rows = body.versions.map((v) =>
        el(
          "tr",
          { className: "version", dataset: { version: v.version } },
          el("td", {}, el("code", {}, v.version)),
          el("td", {}, v.kind),
          el("td", {}, el("span", { className: `state state-${v.status === "active" ? "completed" : "queued"}` }, v.status)),
          el("td", {}, when(v.created_at)),
          el("td", {}, when(v.promoted_at)),
          el("td", {}, el("button", { type: "button", className: "small", disabled: v.status === "active", onclick: () => promote(v.version) }, "Promote")),
        ),
      );
      $("version-rows").replaceChildren(...rows);
      $("versions-empty").hidden = rows.length > 0;
      renderMetrics(body.versions);
      loadCurve(body.versions);
    } catch (err) {
      $("version-rows").replaceChildren();
      $("versions-empty").hidden = true;
      $("metrics-panel").hidden = true;
      $("pr-panel").hidden = true;
      showError($("models-error"), err);
    }
  }

  $("admin-token").value = getToken();
  tokenState();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("admin-token").value.trim());
    tokenState();
    loadVersions();
  });
  $("forget-token").addEventListener("click", () => {
    setToken("");
    $("admin-token").value = "";
    tokenState();
  });
  $("versions-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadVersions();
  });
  $("rollback-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const kind = $("rollback-kind").value;
    try {
      followJob(await api("POST", `/v1/admin/models/rollback?kind=${encodeURIComponent(kind)}`, { admin: true }));
    } catch (err) {
      failed(err);
    }
  });
  $("retrain-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const sources = $("retrain-feedback").checked ? ["feedback"] : [];
    for (const name of $("retrain-sources").value.split(",")) {
      const trimmed = name.trim();
      if (trimmed && !sources.includes(trimmed)) sources.push(trimmed);
    }
    const body = {
      target: $("retrain-target").value,
      sources,
      epochs: Number($("retrain-epochs").value),
      seed: Number($("retrain-seed").value),
      arch: $("retrain-arch").value,
      noise: $("retrain-noise").value,
      pseudo_labels: $("retrain-pseudo").checked,
      promote: $("retrain-promote").value,
    };
    try {
      followJob(await api("POST", "/v1/admin/retrain", { json: body, admin: true }));
    } catch (err) {
      failed(err);
    }
  });
  if (getToken()) loadVersions();
})();
