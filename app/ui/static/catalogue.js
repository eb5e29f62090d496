// Catalogue: keyset-paged list (GET /v1/products), lookup by external id (GET /v1/products/{id}),
// file upload (POST /v1/ingest) with the ingestion job followed (GET /v1/jobs/{id}) to its end.
"use strict";

(() => {
  const { api, el, $, show, showError, money, when, pollJob, ingestForm } = PM;
  const state = { cursors: [null], page: 0, next: null, params: {} };

  function showProduct(p) {
    $("product-title").textContent = p.title;
    const rows = [
      ["External id", p.external_id],
      ["Brand", p.brand],
      ["Category", p.category],
      ["Price", money(p.price, p.currency)],
      ["Description", p.description],
      ["Source", p.source],
      ["Created", when(p.created_at)],
      ["Updated", when(p.updated_at)],
      ["Content hash", p.content_hash],
    ];
    const nodes = [];
    for (const [label, value] of rows) nodes.push(el("dt", {}, label), el("dd", {}, value || ""));
    const images = (p.image_urls || []).map((url) => el("li", {}, url));
    nodes.push(el("dt", {}, "Images"), el("dd", {}, images.length ? el("ul", {}, images) : ""));
    const attrs = p.attributes && Object.keys(p.attributes).length ? el("pre", {}, JSON.stringify(p.attributes, null, 2)) : "";
    nodes.push(el("dt", {}, "Attributes"), el("dd", {}, attrs));
    $("product-fields").replaceChildren(...nodes);
    $("product-detail").hidden = false;
  }

  async function lookup(externalId) {
    show($("lookup-error"), "");
    $("lookup-id").value = externalId;
    try {
      showProduct(await api("GET", `/v1/products/${encodeURIComponent(externalId)}`));
    } catch (err) {
      $("product-detail").hidden = true;
      showError($("lookup-error"), err);
    }
  }

  async function loadPage() {
    show($("list-error"), "");
    const params = new URLSearchParams({ limit: state.params.limit });
    if (state.params.query) params.set("query", state.params.query);
    if (state.params.brand) params.set("brand", state.params.brand);
    const cursor = state.cursors[state.page];
    if (cursor) params.set("cursor", cursor);
    let body;
    try {
      body = await api("GET", `/v1/products?${params}`);
    } catch (err) {
      showError($("list-error"), err);
      return;
    }
    const rows = body.items.map((p) =>
      el(
        "tr",
        {},
        el("td", {}, el("button", { type: "button", className: "link", onclick: () => lookup(p.external_id) }, p.external_id)),
        el("td", {}, p.title),
        el("td", {}, p.brand || ""),
        el("td", {}, p.category || ""),
        el("td", { className: "num" }, money(p.price, p.currency)),
      ),
    );
    $("product-rows").replaceChildren(...rows);
    $("list-empty").hidden = rows.length > 0;
    state.next = body.next_cursor;
    $("next-page").disabled = !state.next;
    $("prev-page").disabled = state.page === 0;
    $("first-page").disabled = state.page === 0;
    $("page-info").textContent = `page ${state.page + 1} · ${rows.length} product${rows.length === 1 ? "" : "s"}`;
  }

  $("list-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.params = { query: $("list-query").value.trim(), brand: $("list-brand").value.trim(), limit: $("list-limit").value };
    state.cursors = [null];
    state.page = 0;
    loadPage();
  });
  $("next-page").addEventListener("click", () => {
    if (!state.next) return;
    state.cursors[state.page + 1] = state.next;
    state.page += 1;
    loadPage();
  });
  $("prev-page").addEventListener("click", () => {
    if (state.page === 0) return;
    state.page -= 1;
    loadPage();
  });
  $("first-page").addEventListener("click", () => {
    state.page = 0;
    loadPage();
  });
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("lookup-id").value.trim();
    if (id) lookup(id);
  });

  ingestForm(
    { form: "cat-ingest-form", file: "cat-ingest-file", format: "cat-ingest-format", error: "cat-ingest-error", status: "cat-ingest-status" },
    (accepted) => {
      // The job view shows the <progress> bar while it runs and the row errors when it ends;
      // the product list reloads (same page, same filters) so the new rows show up.
      pollJob(accepted.job_id, $("cat-ingest-job"), $("cat-ingest-error"), 300, () => loadPage());
    },
  );

  state.params = { query: "", brand: "", limit: $("list-limit").value };
  loadPage();
  const wanted = new URLSearchParams(window.location.search).get("id");
  if (wanted) lookup(wanted);
})();
