// Lamoda Tags explorer: asks the API for tags and renders them with their evidence.
// Pages: data-page="product" (GET /v1/products/{sku}) and data-page="tag" (POST /v1/tags).
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
  status(prediction.tags.length + " tags · " + shown + " · adapter " + prediction.routed_to +
    fallback + " · " + prediction.reviews_read + " reviews read" + meaning);
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
        body: JSON.stringify({ good_type: document.getElementById("own-good-type").value, reviews }),
      });
      render(data, null);
    } catch (e) {
      status(e.message, true);
    }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
}

if (body.dataset.page === "product") productPage();
if (body.dataset.page === "tag") tagPage();
