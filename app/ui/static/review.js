// Review queue: GET /v1/review; "match" / "no match" per candidate -> POST /v1/feedback.
"use strict";

(() => {
  const { api, el, $, show, showError, fmt, money, when, compactJson, productLink } = PM;
  const REVIEWER_KEY = "productmatch.reviewer";

  function offerSummary(offer) {
    const parts = [];
    for (const key of ["brand", "category"]) if (offer[key]) parts.push(`${key}: ${offer[key]}`);
    if (offer.price !== null && offer.price !== undefined) parts.push(`price: ${money(offer.price, offer.currency)}`);
    return parts.join(" · ");
  }

  async function label(item, card, candidate, verdict, buttons) {
    show($("review-error"), "");
    const reviewer = $("reviewer").value.trim();
    localStorage.setItem(REVIEWER_KEY, reviewer);
    const body = { review_id: item.id, product_external_id: candidate.external_id, label: verdict };
    if (reviewer) body.reviewer = reviewer;
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const saved = await api("POST", "/v1/feedback", { json: body });
      card.remove();
      show($("review-status"), `Labelled "${item.offer.title || ""}" / ${saved.product_external_id} as ${saved.label === "match" ? "match" : "no match"}${saved.reviewer ? ` (by ${saved.reviewer})` : ""}.`);
      $("review-empty").hidden = $("review-items").children.length > 0;
    } catch (err) {
      buttons.forEach((b) => { b.disabled = false; });
      showError($("review-error"), err);
    }
  }

  function itemCard(item) {
    const card = el("article", { className: "review-item", dataset: { reviewId: item.id } });
    const buttons = [];
    const rows = (item.candidates || []).map((c) => {
      const yes = el("button", { type: "button", className: "small good", onclick: () => label(item, card, c, "match", buttons) }, "match");
      const no = el("button", { type: "button", className: "small bad", onclick: () => label(item, card, c, "no_match", buttons) }, "no match");
      yes.setAttribute("aria-label", `match ${c.external_id}`);
      no.setAttribute("aria-label", `no match ${c.external_id}`);
      buttons.push(yes, no);
      return el(
        "tr",
        { className: "candidate", dataset: { externalId: c.external_id } },
        el("td", {}, productLink(c.external_id)),
        el("td", {}, c.title || ""),
        el("td", { className: "num" }, fmt(c.score, 4)),
        el("td", { className: "num" }, fmt(c.retrieval_score, 4)),
        el("td", {}, yes, " ", no),
      );
    });
    card.append(
      el("h2", { className: "offer-title" }, item.offer.title || "(no title)"),
      el("p", { className: "meta" }, offerSummary(item.offer)),
      el("p", { className: "meta" },
        `queued ${when(item.created_at)} · top score ${fmt(item.top_score, 4)}`,
        item.offer_external_id ? ` · offer id ${item.offer_external_id}` : "",
        Object.keys(item.model_versions || {}).length ? ` · models ${compactJson(item.model_versions)}` : ""),
      rows.length
        ? el("table", { className: "data" },
          el("thead", {}, el("tr", {}, el("th", {}, "Product"), el("th", {}, "Title"), el("th", { className: "num" }, "Score"), el("th", { className: "num" }, "Retrieval"), el("th", {}, "Label"))),
          el("tbody", {}, rows))
        : el("p", { className: "muted" }, "no candidates"),
    );
    return card;
  }

  async function load() {
    show($("review-error"), "");
    const limit = Number($("review-limit").value) || 50;
    try {
      const body = await api("GET", `/v1/review?limit=${encodeURIComponent(limit)}`);
      $("review-items").replaceChildren(...body.items.map(itemCard));
      $("review-empty").hidden = body.items.length > 0;
    } catch (err) {
      showError($("review-error"), err);
    }
  }

  $("reviewer").value = localStorage.getItem(REVIEWER_KEY) || "";
  $("review-form").addEventListener("submit", (event) => {
    event.preventDefault();
    show($("review-status"), "");
    load();
  });
  load();
})();
