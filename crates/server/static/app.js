// Lamoda Tags explorer: asks the API for tags and renders them with their evidence.
// Pages: data-page="product" (GET /v1/products/{sku}), data-page="tag" (POST /v1/tags) and
// data-page="review" (GET /v1/reviews/queue, POST /v1/reviews).
"use strict";

const body = document.body;
const KEY = "lamodaTagsApiKey";

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  const key = localStorage.getItem(KEY);
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function askForKey() {
  const form = document.getElementById("key-form");
  if (!form) return;
  form.hidden = false;
  form.onsubmit = (e) => {
    e.preventDefault();
    localStorage.setItem(KEY, document.getElementById("api-key").value.trim());
    form.hidden = true;
    refresh();
  };
}

async function api(path, options) {
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401) askForKey();
  if (!response.ok) {
    const message = data && data.error ? data.error : response.status + " " + response.statusText;
    throw new Error(message);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function status(text, error) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.classList.toggle("error", !!error);
}

// Tags as chips; each review that supports a tag is marked with it. Hovering or focusing a
// chip highlights its evidence.
function render(prediction, threshold) {
  const list = document.getElementById("tags");
  list.replaceChildren();
  const reviews = document.querySelectorAll("#reviews li");
  reviews.forEach((li) => {
    li.classList.remove("evidence", "focus");
    const marks = li.querySelector(".marks");
    if (marks) marks.replaceChildren();
  });
  prediction.tags.forEach((t, k) => {
    const pct = Math.round(t.probability * 100);
    const chip = el("li", { class: "tag", tabindex: "0", "data-tag": t.tag },
      el("span", { class: "name" }, t.tag),
      el("span", { class: "bar" }, el("span", { style: "width:" + pct + "%" })),
      el("span", { class: "p" }, t.probability.toFixed(2)),
      el("span", { class: "mentions" }, t.mentions + (t.mentions === 1 ? " mention" : " mentions")));
    const ids = t.evidence.map((e) => e.review);
    const focus = (on) => ids.forEach((i) => {
      const li = document.getElementById("review-" + i);
      if (li) li.classList.toggle("focus", on);
    });
    chip.addEventListener("mouseenter", () => focus(true));
    chip.addEventListener("mouseleave", () => focus(false));
    chip.addEventListener("focus", () => focus(true));
    chip.addEventListener("blur", () => focus(false));
    list.append(chip);
    t.evidence.forEach((e) => {
      const li = document.getElementById("review-" + e.review);
      if (!li) return;
      li.classList.add("evidence");
      li.querySelector(".marks").append(
        el("span", { class: "mark mark-" + (k % 6), title: "score " + e.score.toFixed(2) },
          t.tag + " " + e.score.toFixed(2)));
    });
  });
  if (prediction.tags.length === 0) {
    list.append(el("li", { class: "none" },
      el("span", { class: "name" }, "No tag: no review clearly states a property of the pool")));
  }
  const shown = threshold === null ? "tuned threshold" : "threshold " + threshold.toFixed(2);
  const fallback = prediction.fallback ? " (fallback)" : "";
  const meaning = prediction.calibrated ? " · probability = chance a careful reader agrees" : "";
  const reranked = prediction.reranked ? " · re-ranked by the LLM" :
    prediction.rerank_error ? " · not re-ranked (" + prediction.rerank_error + "): our own tags" : "";
  status(prediction.tags.length + " tags · " + shown + " · adapter " + prediction.routed_to +
    fallback + " · " + prediction.reviews_read + " reviews read" + meaning + reranked,
    !!prediction.rerank_error);
}

// The LLM re-rank toggle (present when the server offers re-ranking).
function rerankAsked() {
  const toggle = document.getElementById("rerank-toggle");
  return !!(toggle && toggle.checked);
}

let refresh = () => {};

function productPage() {
  const sku = body.dataset.sku;
  const slider = document.getElementById("threshold");
  const value = document.getElementById("threshold-value");
  const mentions = document.getElementById("min-mentions");
  let moved = false;
  let timer = null;
  let seq = 0;
  refresh = async () => {
    const threshold = moved ? parseFloat(slider.value) : null;
    const q = new URLSearchParams();
    if (threshold !== null) q.set("threshold", threshold.toFixed(2));
    if (mentions.value !== "0") q.set("min_mentions", mentions.value);
    if (rerankAsked()) q.set("rerank", "true");
    const mine = ++seq;
    try {
      const data = await api("/v1/products/" + encodeURIComponent(sku) + "?" + q, { headers: headers() });
      if (mine === seq) render(data.prediction, threshold);
    } catch (e) {
      status(e.message, true);
    }
  };
  slider.addEventListener("input", () => {
    moved = true;
    value.textContent = parseFloat(slider.value).toFixed(2);
    clearTimeout(timer);
    timer = setTimeout(refresh, 120);
  });
  mentions.addEventListener("change", refresh);
  const rerank = document.getElementById("rerank-toggle");
  if (rerank) rerank.addEventListener("change", () => { status("Re-ranking…"); refresh(); });
  const toggle = document.getElementById("dataset-toggle");
  if (toggle) {
    toggle.addEventListener("change", () => {
      document.getElementById("dataset-tags").hidden = !toggle.checked;
    });
  }
  refresh();
}

function tagPage() {
  const form = document.getElementById("own-form");
  refresh = async () => {
    const reviews = document.getElementById("own-text").value
      .split("\n").map((r) => r.trim()).filter((r) => r.length > 0);
    if (reviews.length === 0) { status("Write at least one review.", true); return; }
    const list = document.getElementById("reviews");
    list.replaceChildren(...reviews.map((r, i) =>
      el("li", { id: "review-" + i }, el("p", { class: "text" }, r), el("div", { class: "marks" }))));
    status("Tagging…");
    try {
      const data = await api("/v1/tags", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify({ good_type: document.getElementById("own-good-type").value, reviews, rerank: rerankAsked() }),
      });
      render(data, null);
    } catch (e) {
      status(e.message, true);
    }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
}

// The review queue: one product at a time; each suggested tag is accepted or rejected,
// pool tags added, missing properties named; the reviewer's name, the products skipped
// and the ones judged here are kept in the browser.
function reviewPage() {
  const REVIEWER = "lamodaTagsReviewer";
  const DONE = "lamodaTagsReviewed";
  const SKIPPED = "lamodaTagsSkipped";
  const who = document.getElementById("reviewer");
  const category = document.getElementById("review-category");
  const section = document.getElementById("review-product");
  const tagList = document.getElementById("review-tags");
  const addSelect = document.getElementById("review-add");
  const addedList = document.getElementById("review-added");
  const missing = document.getElementById("review-missing");
  const load = (k) => { try { return JSON.parse(localStorage.getItem(k)) || []; } catch (_) { return []; } };
  const skipped = new Set(JSON.parse(sessionStorage.getItem(SKIPPED) || "[]"));
  let pools = null;
  let queue = [];
  let item = null;
  let verdicts = new Map();
  let added = [];
  let cursor = 0;
  who.value = localStorage.getItem(REVIEWER) || "";
  who.addEventListener("input", () => localStorage.setItem(REVIEWER, who.value.trim()));

  function renderDone() {
    const list = document.getElementById("review-done");
    list.replaceChildren(...load(DONE).map((d) =>
      el("li", { "data-sku": d.sku }, el("a", { href: "/products/" + encodeURIComponent(d.sku) }, d.sku),
        " · " + d.category + " · " + d.kept + " tags kept")));
  }

  function renderProgress(progress) {
    const list = document.getElementById("progress");
    list.replaceChildren(...progress.map((p) =>
      el("li", { "data-category": p.category },
        el("strong", {}, p.category), " " + p.done + " done · " + p.left + " left")));
  }

  function renderTags() {
    const tags = item.prediction.tags;
    tagList.replaceChildren(...tags.map((t, i) => {
      const v = verdicts.get(t.tag) || "";
      const accept = el("button", { type: "button", class: "accept", title: "Accept (a)" }, "✓");
      const reject = el("button", { type: "button", class: "reject", title: "Reject (r)" }, "✗");
      accept.addEventListener("click", () => { cursor = i; decide("accepted"); });
      reject.addEventListener("click", () => { cursor = i; decide("rejected"); });
      return el("li", { class: "tag " + v + (i === cursor ? " current" : ""), "data-tag": t.tag, "data-verdict": v },
        el("span", { class: "name" }, t.tag),
        el("span", { class: "p" }, t.probability.toFixed(2)),
        el("span", { class: "mentions" }, t.mentions + (t.mentions === 1 ? " mention" : " mentions")),
        el("span", { class: "verdict" }, accept, reject));
    }));
    if (tags.length === 0) {
      tagList.append(el("li", { class: "none" }, el("span", { class: "name" }, "No tag suggested: add what the reviews clearly state")));
    }
    addedList.replaceChildren(...added.map((t) => {
      const remove = el("button", { type: "button", class: "secondary", title: "Remove" }, "×");
      remove.addEventListener("click", () => { added = added.filter((a) => a !== t); renderTags(); });
      return el("li", { class: "tag added", "data-tag": t }, el("span", { class: "name" }, "+ " + t), remove);
    }));
    const suggested = new Set(tags.map((t) => t.tag));
    const pool = (pools && pools[item.category]) || [];
    addSelect.replaceChildren(el("option", { value: "" }, "—"),
      ...pool.filter((t) => !suggested.has(t) && !added.includes(t)).map((t) => el("option", { value: t }, t)));
  }

  function show() {
    item = queue.find((q) => !skipped.has(q.sku)) || null;
    verdicts = new Map();
    added = [];
    cursor = 0;
    missing.value = "";
    const reviews = document.getElementById("reviews");
    if (!item) {
      section.hidden = true;
      reviews.replaceChildren();
      status("Nothing left to review" + (category.value ? " in " + category.value : "") + ".");
      return;
    }
    section.hidden = false;
    section.dataset.sku = item.sku;
    document.getElementById("review-name").textContent = item.name || item.sku;
    document.getElementById("review-meta").textContent =
      item.sku + " · " + item.good_type + " → " + item.category + " · " + item.reason;
    reviews.replaceChildren(...item.reviews.map((r, i) =>
      el("li", { id: "review-" + i }, el("p", { class: "text" }, r), el("div", { class: "marks" }))));
    item.prediction.tags.forEach((t, k) => t.evidence.forEach((e) => {
      const li = document.getElementById("review-" + e.review);
      if (!li) return;
      li.classList.add("evidence");
      li.querySelector(".marks").append(el("span", { class: "mark mark-" + (k % 6) }, t.tag + " " + e.score.toFixed(2)));
    }));
    renderTags();
    status("Decide each suggested tag, then save.");
  }

  function decide(verdict, all) {
    if (!item) return;
    const tags = item.prediction.tags;
    if (all) {
      tags.forEach((t) => { if (!verdicts.has(t.tag)) verdicts.set(t.tag, verdict); });
    } else if (tags[cursor]) {
      verdicts.set(tags[cursor].tag, verdict);
      const next = tags.findIndex((t, i) => i > cursor && !verdicts.has(t.tag));
      if (next >= 0) cursor = next;
    }
    renderTags();
    const open = tags.filter((t) => !verdicts.has(t.tag)).length;
    status(open === 0 ? "Every tag decided: Enter saves and shows the next product." : open + " tags to decide.");
  }

  // Only the latest request's answer is shown: an earlier one (the page's first, for every
  // category, or one from before the last save) may come back later and be stale.
  let seq = 0;
  async function refill() {
    const q = new URLSearchParams({ limit: "10" });
    if (category.value) q.set("category", category.value);
    const mine = ++seq;
    try {
      const data = await api("/v1/reviews/queue?" + q, { headers: headers() });
      if (mine !== seq) return;
      queue = data.items;
      renderProgress(data.progress);
      show();
    } catch (e) {
      if (mine === seq) status(e.message, true);
    }
  }

  async function submit() {
    if (!item) return;
    const reviewer = who.value.trim();
    if (!reviewer) { status("Write your name first: each judgment is kept with its reviewer.", true); who.focus(); return; }
    const open = item.prediction.tags.filter((t) => !verdicts.has(t.tag));
    if (open.length > 0) { status("Accept or reject every suggested tag first (" + open.length + " left).", true); return; }
    const pick = (v) => [...verdicts].filter(([, x]) => x === v).map(([t]) => t);
    const judgment = {
      sku: item.sku, good_type: item.good_type, reviewer,
      accepted: pick("accepted"), rejected: pick("rejected"), added,
      missing: missing.value.split(/[;\n]/).map((m) => m.trim()).filter((m) => m.length > 0),
    };
    try {
      await api("/v1/reviews", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(judgment),
      });
    } catch (e) {
      status(e.message, true);
      return;
    }
    const done = load(DONE).filter((d) => d.sku !== item.sku);
    done.unshift({ sku: item.sku, category: item.category, kept: judgment.accepted.length + added.length });
    localStorage.setItem(DONE, JSON.stringify(done.slice(0, 20)));
    renderDone();
    status("Saved " + item.sku + ".");
    await refill();
  }

  function skip() {
    if (!item) return;
    skipped.add(item.sku);
    sessionStorage.setItem(SKIPPED, JSON.stringify([...skipped]));
    show();
    if (!item) refill();
  }

  document.getElementById("review-add-button").addEventListener("click", () => {
    if (addSelect.value && !added.includes(addSelect.value)) added.push(addSelect.value);
    renderTags();
  });
  document.getElementById("review-submit").addEventListener("click", submit);
  document.getElementById("review-skip").addEventListener("click", skip);
  document.getElementById("review-setup").addEventListener("submit", (e) => e.preventDefault());
  category.addEventListener("change", refill);
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (e.key === "Escape" && typing) { document.activeElement.blur(); return; }
    if (e.key === "Enter" && (!typing || document.activeElement === missing)) { e.preventDefault(); submit(); return; }
    if (typing || !item) return;
    const n = item.prediction.tags.length;
    if (e.key === "a") decide("accepted");
    else if (e.key === "r") decide("rejected");
    else if (e.key === "A") decide("accepted", true);
    else if (e.key === "R") decide("rejected", true);
    else if (e.key === "s") skip();
    else if ((e.key === "ArrowDown" || e.key === "j") && n > 0) { cursor = Math.min(n - 1, cursor + 1); renderTags(); }
    else if ((e.key === "ArrowUp" || e.key === "k") && n > 0) { cursor = Math.max(0, cursor - 1); renderTags(); }
    else return;
    e.preventDefault();
  });
  refresh = async () => {
    try {
      const data = await api("/v1/categories", { headers: headers() });
      pools = Object.fromEntries(data.categories.map((c) => [c.name, c.tags]));
    } catch (e) {
      status(e.message, true);
      return;
    }
    await refill();
  };
  renderDone();
  refresh();
}

if (body.dataset.page === "product") productPage();
if (body.dataset.page === "review") reviewPage();
if (body.dataset.page === "tag") tagPage();
