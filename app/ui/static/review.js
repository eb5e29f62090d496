// Review queue: GET /v1/review; "match" / "no match" per candidate -> POST /v1/feedback.
// One item is current (focused) at a time; keyboard: a / y match, r / n no match, j / k or the
// arrow keys move between candidates, ] / [ between items, Esc leaves a text field. After a
// label the item leaves and the next one becomes current.
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

  const cards = () => Array.from($("review-items").querySelectorAll("article.review-item"));
  const currentCard = () => $("review-items").querySelector("article.review-item.current");
  const candidateRows = (card) => Array.from(card.querySelectorAll("tr.candidate"));

  function selectCandidate(card, index) {
    const rows = candidateRows(card);
    if (!rows.length) return;
    const i = Math.max(0, Math.min(rows.length - 1, index));
    card._selected = i;
    rows.forEach((row, j) => {
      row.classList.toggle("selected", j === i);
      row.setAttribute("aria-selected", j === i ? "true" : "false");
    });
    if (card.classList.contains("current")) rows[i].scrollIntoView({ block: "nearest" });
  }

  // Make `card` the current item; `focus` moves the keyboard focus onto it.
  function setCurrent(card, focus) {
    for (const other of cards()) {
      if (other === card) continue;
      other.classList.remove("current");
      other.tabIndex = -1;
    }
    if (!card) return;
    card.classList.add("current");
    card.tabIndex = 0;
    selectCandidate(card, card._selected || 0);
    if (focus) {
      card.focus({ preventScroll: true });
      card.scrollIntoView({ block: "nearest" });
    }
    const all = cards();
    $("review-position").textContent = `item ${all.indexOf(card) + 1} of ${all.length}`;
  }

  function afterRemoval(next) {
    const remaining = cards().length;
    if (next && next.isConnected) {
      setCurrent(next, true);
    } else if (remaining) {
      setCurrent(cards()[0], true);
    } else {
      $("review-position").textContent = "";
      load(); // the page showed every item it loaded: ask the queue for more
    }
  }

  async function label(item, card, candidate, verdict) {
    if (card.dataset.busy) return;
    show($("review-error"), "");
    const reviewer = $("reviewer").value.trim();
    localStorage.setItem(REVIEWER_KEY, reviewer);
    const body = { review_id: item.id, product_external_id: candidate.external_id, label: verdict };
    if (reviewer) body.reviewer = reviewer;
    const buttons = Array.from(card.querySelectorAll("button"));
    card.dataset.busy = "1";
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const saved = await api("POST", "/v1/feedback", { json: body });
      const next = card.nextElementSibling || card.previousElementSibling;
      const wasCurrent = card.classList.contains("current");
      card.remove();
      show($("review-status"), `Labelled "${item.offer.title || ""}" / ${saved.product_external_id} as ${saved.label === "match" ? "match" : "no match"}${saved.reviewer ? ` (by ${saved.reviewer})` : ""}.`);
      $("review-empty").hidden = cards().length > 0;
      if (wasCurrent || !currentCard()) afterRemoval(next);
      else setCurrent(currentCard(), false);
    } catch (err) {
      delete card.dataset.busy;
      buttons.forEach((b) => { b.disabled = false; });
      showError($("review-error"), err);
    }
  }

  function itemCard(item) {
    const card = el("article", { className: "review-item", tabIndex: -1, dataset: { reviewId: item.id } });
    card.setAttribute("aria-label", `review item: ${item.offer.title || "(no title)"}`);
    card._item = item;
    const rows = (item.candidates || []).map((c, i) => {
      const yes = el("button", { type: "button", className: "small good", onclick: () => label(item, card, c, "match") }, "match");
      const no = el("button", { type: "button", className: "small bad", onclick: () => label(item, card, c, "no_match") }, "no match");
      yes.setAttribute("aria-label", `match ${c.external_id}`);
      no.setAttribute("aria-label", `no match ${c.external_id}`);
      const row = el(
        "tr",
        { className: "candidate", dataset: { externalId: c.external_id } },
        el("td", {}, productLink(c.external_id)),
        el("td", {}, c.title || ""),
        el("td", { className: "num" }, fmt(c.score, 4)),
        el("td", { className: "num" }, fmt(c.retrieval_score, 4)),
        el("td", {}, yes, " ", no),
      );
      row._candidate = c;
      row.addEventListener("click", () => selectCandidate(card, i));
      return row;
    });
    card.addEventListener("focusin", () => {
      if (!card.classList.contains("current")) setCurrent(card, false);
    });
    card.addEventListener("click", () => {
      if (!card.classList.contains("current")) setCurrent(card, false);
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
          el("thead", {}, el("tr", {}, el("th", {}, "Product"), el("th", {}, "Title"), el("th", { className: "num" }, "Reranker score"), el("th", { className: "num" }, "Retrieval (cosine)"), el("th", {}, "Label"))),
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
      const first = cards()[0];
      const typing = document.activeElement && document.activeElement.matches("input, select, textarea");
      if (first) setCurrent(first, !typing);
      else $("review-position").textContent = "";
    } catch (err) {
      showError($("review-error"), err);
    }
  }

  function moveItem(card, step) {
    const all = cards();
    const next = all[all.indexOf(card) + step];
    if (next) setCurrent(next, true);
  }

  const KEYS = {
    a: "match", y: "match", r: "no_match", n: "no_match",
    j: "down", ArrowDown: "down", k: "up", ArrowUp: "up", "]": "next-item", "[": "previous-item",
  };

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof Element && target.matches("input, select, textarea, [contenteditable]")) {
      if (event.key === "Escape" && currentCard()) {
        target.blur();
        setCurrent(currentCard(), true);
      }
      return; // typing in a field is never a shortcut
    }
    const action = KEYS[event.key] || KEYS[event.key.toLowerCase()];
    const card = currentCard();
    if (!action || !card) return;
    event.preventDefault();
    const rows = candidateRows(card);
    const selected = card._selected || 0;
    if (action === "down") selectCandidate(card, selected + 1);
    else if (action === "up") selectCandidate(card, selected - 1);
    else if (action === "next-item") moveItem(card, 1);
    else if (action === "previous-item") moveItem(card, -1);
    else if (rows[selected]) label(card._item, card, rows[selected]._candidate, action);
    if (!card.contains(document.activeElement) && card.isConnected) card.focus({ preventScroll: true });
  });

  $("reviewer").value = localStorage.getItem(REVIEWER_KEY) || "";
  $("review-form").addEventListener("submit", (event) => {
    event.preventDefault();
    show($("review-status"), "");
    load();
  });
  load();
})();
