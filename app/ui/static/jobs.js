// Jobs: look up GET /v1/jobs/{id} (optionally following it), upload a file to POST /v1/ingest.
"use strict";

(() => {
  const { api, el, $, show, showError, renderJob, pollJob } = PM;

  async function showJob(jobId, follow) {
    show($("job-error"), "");
    $("job-id").value = jobId;
    const url = new URL(window.location.href);
    url.searchParams.set("id", jobId);
    window.history.replaceState(null, "", url);
    if (follow) {
      pollJob(jobId, $("job-view"), $("job-error"));
      return;
    }
    if ($("job-view")._stopPoll) $("job-view")._stopPoll();
    try {
      renderJob($("job-view"), await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`));
    } catch (err) {
      $("job-view").replaceChildren();
      showError($("job-error"), err);
    }
  }

  $("job-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const jobId = $("job-id").value.trim();
    if (jobId) showJob(jobId, $("job-follow").checked);
  });

  $("ingest-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show($("ingest-error"), "");
    show($("ingest-status"), "");
    const file = $("ingest-file").files[0];
    if (!file) {
      show($("ingest-error"), "choose a file first");
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    if ($("ingest-format").value) form.append("format", $("ingest-format").value);
    try {
      const accepted = await api("POST", "/v1/ingest", { form });
      $("ingest-status").replaceChildren(document.createTextNode(`Uploaded ${file.name}: job `), el("code", {}, accepted.job_id), document.createTextNode(` ${accepted.state}.`));
      $("ingest-status").hidden = false;
      showJob(accepted.job_id, true);
    } catch (err) {
      showError($("ingest-error"), err);
    }
  });

  const wanted = new URLSearchParams(window.location.search).get("id");
  if (wanted) showJob(wanted, true);
})();
