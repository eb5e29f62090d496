// Match tester: POST /v1/match with an offer, k, filters and explain; show candidates with both
// stage scores (blocker cosine, reranker score), the decision, and the explanation's word pairs
// highlighted (<mark>) in the offer and candidate titles.
"use strict";

(() => {
  const { api, el, $, show, showError, fmt, money, compactJson, productLink, highlightWords, wordKey } = PM;

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

  // Offer-side and product-side lookups (lower-case word -> pair number and note) of a candidate's
  // word pairs: pair N is drawn in colour N on both sides. Pairs of dissimilar words (similarity 0)
  // are listed but not marked: they matched nothing.
  function pairWords(explanation) {
    const offer = new Map();
    const product = new Map();
    (explanation || []).forEach((p, i) => {
      if (!(p.similarity > 0)) return;
      const note = `${p.offer_word} ↔ ${p.product_word} (similarity ${fmt(p.similarity, 2)})`;
      const a = wordKey(p.offer_word);
      const b = wordKey(p.product_word);
      if (a && !offer.has(a)) offer.set(a, { pair: i, note });
      if (b && !product.has(b)) product.set(b, { pair: i, note });
    });
    return { offer, product };
  }

  function explanationRow(candidate, offerTitle, words) {
    const pairs = (candidate.explanation || []).map((p, i) =>
      el(
        "li",
        { className: "pair" },
        el("mark", { className: `pair-word p${i % 5}${p.similarity > 0 ? "" : " unmatched"}` }, p.offer_word),
        " ↔ ",
        el("mark", { className: `pair-word p${i % 5}${p.similarity > 0 ? "" : " unmatched"}` }, p.product_word),
        ` (${fmt(p.similarity, 2)}${p.weight !== null && p.weight !== undefined ? `, weight ${fmt(p.weight, 2)}` : ""})`,
      ),
    );
    const content = pairs.length ? el("ul", { className: "pairs" }, pairs) : el("span", { className: "muted" }, "no word pairs");
    return el(
      "tr",
      { className: "explain" },
      el("td", {}),
      el(
        "td",
        { colSpan: 7 },
        el("div", { className: "offer-highlight" }, el("span", { className: "muted" }, "offer: "), highlightWords(offerTitle, words.offer)),
        el("div", {}, el("span", { className: "muted" }, "word pairs: "), content),
      ),
    );
  }

  function render(res, offerTitle) {
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
    $("scorer-name").textContent = res.model_versions.scorer || "";
    const rows = [];
    res.candidates.forEach((c, i) => {
      const words = pairWords(c.explanation);
      rows.push(
        el(
          "tr",
          { className: "candidate", dataset: { externalId: c.external_id } },
          el("td", {}, String(i + 1)),
          el("td", {}, productLink(c.external_id)),
          el("td", { className: "title" }, c.explanation ? highlightWords(c.title, words.product) : c.title),
          el("td", {}, c.brand || ""),
          el("td", { className: "num" }, money(c.price, c.currency)),
          el("td", { className: "num retrieval", title: "stage 1: blocker (bi-encoder) cosine" }, fmt(c.retrieval_score, 4)),
          el("td", { className: "num score", title: "stage 2: reranker score, compared with the thresholds" }, fmt(c.score, 4)),
          el("td", { className: "num lexical" }, fmt(c.lexical_score, 4)),
        ),
      );
      if (c.explanation) rows.push(explanationRow(c, offerTitle, words));
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
      const body = requestBody();
      render(await api("POST", "/v1/match", { json: body }), body.offer.title);
    } catch (err) {
      $("match-result").hidden = true;
      showError($("match-error"), err);
    } finally {
      button.disabled = false;
    }
  });
})();
