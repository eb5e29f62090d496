// Models: list versions, promote, roll back, retrain (admin bearer token kept in sessionStorage).
"use strict";

(() => {
  const { api, el, $, show, showError, when, compactJson, getToken, setToken, pollJob } = PM;

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
          el("td", {}, compactJson(v.metrics)),
          el("td", {}, when(v.created_at)),
          el("td", {}, when(v.promoted_at)),
          el("td", {}, el("button", { type: "button", className: "small", disabled: v.status === "active", onclick: () => promote(v.version) }, "Promote")),
        ),
      );
      $("version-rows").replaceChildren(...rows);
      $("versions-empty").hidden = rows.length > 0;
    } catch (err) {
      $("version-rows").replaceChildren();
      $("versions-empty").hidden = true;
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
