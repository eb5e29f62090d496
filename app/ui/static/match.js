// Match tester: POST /v1/match with an offer, k, filters and explain; show candidates and decision.
"use strict";

(() => {
  const { api, el, $, show, showError, fmt, money, compactJson, productLink } = PM;

  function optional(id) {
    const value = $(id).value.trim();
    return value === "" ? undefined : value;
  }

  function requestBody() {
    const offer = { title: $("m-title").value.trim() };
    for (const [field, id] of [["brand", "m-brand"], ["category", "m-category"], ["currency", "m-currency"], ["description", "m-description"]]) {
      const value = optional(id);
      if (value !== undefined) offer[field] = value;
    }
    const price = optional("m-price");
    if (price !== undefined) offer.price = Number(price);
    const body = { offer, top_k: Number($("m-k").value || 5), explain: $("m-explain").checked };
    const filters = {};
    const fb = optional("m-filter-brand");
    const fc = optional("m-filter-category");
    if (fb !== undefined) filters.brand = fb;
    if (fc !== undefined) filters.category = fc;
    if (Object.keys(filters).length) body.filters = filters;
    return body;
  }

  function explanationRow(candidate) {
    const pairs = (candidate.explanation || []).map((p) =>
      el(
        "li",
        { className: "pair" },
        `${p.offer_word} ↔ ${p.product_word} (${fmt(p.similarity, 2)}${p.weight !== null && p.weight !== undefined ? `, weight ${fmt(p.weight, 2)}` : ""})`,
      ),
    );
    const content = pairs.length ? el("ul", { className: "pairs" }, pairs) : el("span", { className: "muted" }, "no word pairs");
    return el("tr", { className: "explain" }, el("td", {}), el("td", { colSpan: 7 }, el("span", { className: "muted" }, "word pairs: "), content));
  }

  function render(res) {
    const decision = $("decision");
    decision.textContent = res.decision;
    decision.className = `decision decision-${res.decision}`;
    let note = "";
    if (res.decision === "match" && res.match) note = `→ ${res.match.external_id}`;
    if (res.decision === "review") note = "queued for a person in the review queue";
    $("decision-note").textContent = note;
    $("thresholds").textContent = compactJson(res.thresholds);
    $("model-versions").textContent = compactJson(res.model_versions);
    $("index-version").textContent = String(res.index_version);
    $("timings").textContent = compactJson(res.timings_ms);
    const rows = [];
    res.candidates.forEach((c, i) => {
      rows.push(
        el(
          "tr",
          { className: "candidate" },
          el("td", {}, String(i + 1)),
          el("td", {}, productLink(c.external_id)),
          el("td", {}, c.title),
          el("td", {}, c.brand || ""),
          el("td", { className: "num" }, money(c.price, c.currency)),
          el("td", { className: "num score" }, fmt(c.score, 4)),
          el("td", { className: "num" }, fmt(c.retrieval_score, 4)),
          el("td", { className: "num" }, fmt(c.lexical_score, 4)),
        ),
      );
      if (c.explanation) rows.push(explanationRow(c));
    });
    $("candidate-rows").replaceChildren(...rows);
    $("no-candidates").hidden = res.candidates.length > 0;
    $("match-result").hidden = false;
  }

  $("match-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show($("match-error"), "");
    const button = $("m-submit");
    button.disabled = true;
    try {
      render(await api("POST", "/v1/match", { json: requestBody() }));
    } catch (err) {
      $("match-result").hidden = true;
      showError($("match-error"), err);
    } finally {
      button.disabled = false;
    }
  });
})();
