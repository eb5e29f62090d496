// Jobs: look up GET /v1/jobs/{id} (optionally following it), upload a file to POST /v1/ingest.
"use strict";

(() => {
  const { api, $, show, showError, renderJob, pollJob, ingestForm } = PM;

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

  ingestForm({ form: "ingest-form", file: "ingest-file", format: "ingest-format", error: "ingest-error", status: "ingest-status" }, (accepted) =>
    showJob(accepted.job_id, true),
  );

  const wanted = new URLSearchParams(window.location.search).get("id");
  if (wanted) showJob(wanted, true);
})();
