// The live leaderboard: polls the ranking about once a second while the tab is visible, shows how each
// video moved since the previous refresh, and one video's details on demand; a tab shows a past range instead
// (range.js). No framework: the DOM is small,
// and every video id reaches it as text (textContent), never as markup.
"use strict";

const WINDOWS = ["minute", "hour", "day", "all"];
// The tabs: the live windows, then the past range view (range.js).
const VIEWS = [...WINDOWS, "range"];
const KS = [10, 20, 50, 100, 1000];
const POLL_MS = 1000;
// A ranking older than this by the server's clock, or no answer for this long, is shown as stale.
const STALE_MS = 5000;
const CAPTIONS = {
  minute: "Most viewed in the last minute",
  hour: "Most viewed in the last hour",
  day: "Most viewed in the last day",
  all: "Most viewed of all time",
  range: "Most viewed in a past range",
};
const WINDOW_NAMES = { minute: "Last minute", hour: "Last hour", day: "Last day", all: "All time" };

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat();
const clock = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});
const hourClock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

const state = {
  window: "hour",
  k: 10,
  video: null,
  // videoId -> rank at the previous refresh of this window and k; null right after a change of either.
  previous: null,
  timer: 0,
  controller: null,
  // performance.now() of the last good answer, and how old that ranking was by the server's clock.
  lastOk: 0,
  serverAge: null,
};

// ---- the URL: ?window=W&k=K#video=ID, or the range's ?from=&to=&k= (or ?range=PRESET&k=), so a view can be
// shared and the test can open one directly ----

function readUrl() {
  const query = new URLSearchParams(location.search);
  const w = query.get("window");
  if (readRangeUrl(query)) state.window = "range";
  else if (WINDOWS.includes(w)) state.window = w;
  const k = Number(query.get("k"));
  if (KS.includes(k)) state.k = k;
  state.video = videoFromHash();
}

function videoFromHash() {
  const hash = new URLSearchParams(location.hash.slice(1));
  return hash.get("video") || null;
}

function writeUrl() {
  const hash = state.video ? "#" + new URLSearchParams({ video: state.video }) : "";
  const query = state.window === "range" ? rangeQuery(state.k) : `window=${state.window}&k=${state.k}`;
  history.replaceState(null, "", `?${query}${hash}`);
}

// ---- fetching ----

// The body of an answer as JSON, or null when it is not JSON (a proxy's HTML error page, say).
async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// The API's own words for a refusal ({"error": "..."}), else the status.
function failure(response, body) {
  const said = body && typeof body.error === "string" ? body.error : response.statusText;
  return new Error(`${response.status}${said ? ": " + said : ""}`);
}

async function getJson(path, signal) {
  const response = await fetch(path, { signal, cache: "no-store", headers: { accept: "application/json" } });
  const body = await readJson(response);
  if (!response.ok) throw failure(response, body);
  if (body === null) throw new Error("the answer was not JSON");
  return { response, body };
}

// ---- the ranking ----

async function refresh() {
  clearTimeout(state.timer);
  state.timer = 0;
  if (state.window === "range") {
    // A past range does not change: read once, not polled.
    await refreshRange();
    showLive();
    if (state.video) loadCounts(state.video);
    return;
  }
  // A newer request (a tab or k changed) replaces one in flight, so answers never land out of order.
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  try {
    const { response, body } = await getJson(`/v1/topk?window=${state.window}&k=${state.k}`, controller.signal);
    if (!Array.isArray(body)) throw new Error("the ranking was not a list");
    renderRanking(body);
    showAsOf(response);
    showError("");
    state.lastOk = performance.now();
  } catch (e) {
    if (e.name === "AbortError") return;
    showError(`Could not load the ranking: ${e.message}`);
  } finally {
    if (state.controller === controller) {
      state.controller = null;
      schedule();
    }
  }
  showLive();
  if (state.video) loadCounts(state.video);
}

// The next poll, only while someone can see the page; visibilitychange restarts it.
function schedule() {
  clearTimeout(state.timer);
  state.timer = document.visibilityState === "hidden" ? 0 : setTimeout(refresh, POLL_MS);
}

function renderRanking(ranking) {
  const rows = $("rows");
  // Rows are updated in place and a focused video keeps the focus, wherever it moved.
  const focused = rows.contains(document.activeElement) ? document.activeElement.dataset.video : null;
  while (rows.rows.length > ranking.length) rows.deleteRow(-1);
  const current = new Map();
  ranking.forEach((entry, i) => {
    const rank = i + 1;
    current.set(entry.videoId, rank);
    const tr = rows.rows[i] || addRow(rows);
    const [rankCell, videoCell, viewsCell, moveCell] = tr.cells;
    rankCell.textContent = rank;
    const button = videoCell.firstChild;
    button.textContent = entry.videoId;
    button.dataset.video = entry.videoId;
    button.setAttribute("aria-expanded", String(entry.videoId === state.video));
    viewsCell.textContent = numbers.format(entry.views);
    showMovement(moveCell, state.previous, entry.videoId, rank);
    tr.classList.toggle("selected", entry.videoId === state.video);
  });
  state.previous = current;
  $("empty").hidden = ranking.length > 0;
  if (focused) focusRow(focused);
}

function addRow(rows) {
  const tr = rows.insertRow();
  for (const cls of ["num rank", "video", "num", "num move"]) {
    const td = tr.insertCell();
    td.className = cls;
  }
  const button = document.createElement("button");
  button.type = "button";
  button.className = "video-link";
  button.setAttribute("aria-controls", "detail");
  tr.cells[1].append(button);
  return tr;
}

function focusRow(video) {
  for (const button of $("rows").querySelectorAll("button")) {
    if (button.dataset.video === video) return button.focus();
  }
}

// ▲n / ▼n / new / –, with words for screen readers (the arrows are hidden from them).
function showMovement(cell, previous, video, rank) {
  let shown = "–";
  let said = "no change";
  let kind = "same";
  if (previous === null) {
    said = "";
  } else if (!previous.has(video)) {
    shown = "new";
    said = "new in the ranking";
    kind = "new";
  } else {
    const moved = previous.get(video) - rank;
    if (moved > 0) [shown, said, kind] = [`▲${moved}`, `up ${moved}`, "up"];
    if (moved < 0) [shown, said, kind] = [`▼${-moved}`, `down ${-moved}`, "down"];
  }
  const visible = document.createElement("span");
  visible.setAttribute("aria-hidden", "true");
  visible.textContent = shown;
  const words = document.createElement("span");
  words.className = "sr-only";
  words.textContent = said;
  cell.replaceChildren(visible, words);
  cell.dataset.move = kind;
}

// ---- status: as-of time, live or stale, errors ----

function showAsOf(response) {
  // Topk-As-Of is when the ranking was read; without it the time of this answer stands in.
  const header = response.headers.get("Topk-As-Of");
  const parsed = header ? new Date(header) : null;
  const asOf = parsed && !isNaN(parsed) ? parsed : new Date();
  const served = new Date(response.headers.get("Date") || NaN);
  // Both times by the server's clock, so a skewed client clock cannot make a fresh ranking look stale.
  state.serverAge = parsed && !isNaN(parsed) && !isNaN(served) ? served - asOf : null;
  const time = document.createElement("time");
  time.dateTime = asOf.toISOString();
  time.textContent = clock.format(asOf);
  $("asof").replaceChildren("as of ", time);
}

function showLive() {
  if (state.window === "range") {
    $("live").dataset.state = "past";
    $("live").textContent = "history";
    return;
  }
  const fresh = state.lastOk > 0
    && performance.now() - state.lastOk < STALE_MS
    // The Date header has whole seconds, hence the extra second.
    && (state.serverAge === null || state.serverAge < STALE_MS + 1000);
  const badge = $("live");
  badge.dataset.state = fresh ? "live" : "stale";
  badge.textContent = fresh ? "live" : "stale";
}

function showError(message) {
  $("error").textContent = message;
}

// ---- the controls ----

function selectWindow(w, focus) {
  state.window = w;
  state.previous = null;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const selected = tab.dataset.window === w;
    tab.setAttribute("aria-selected", String(selected));
    // One tab stop for the whole list; the arrow keys move within it.
    tab.tabIndex = selected ? 0 : -1;
    if (selected && focus) tab.focus();
  }
  $("board").setAttribute("aria-labelledby", `tab-${w}`);
  $("caption").textContent = CAPTIONS[w];
  $("range-form").hidden = w !== "range";
  $("ranking").classList.toggle("past", w === "range");
  $("empty").textContent = w === "range" ? "No views in this range." : "No views in this window yet.";
  if (w !== "range") $("range-note").textContent = "";
}

function changeView() {
  $("rows").replaceChildren();
  $("empty").hidden = true;
  writeUrl();
  refresh();
}

function onTabKey(event) {
  const i = VIEWS.indexOf(state.window);
  const next = {
    ArrowRight: (i + 1) % VIEWS.length,
    ArrowLeft: (i + VIEWS.length - 1) % VIEWS.length,
    Home: 0,
    End: VIEWS.length - 1,
  }[event.key];
  if (next === undefined) return;
  event.preventDefault();
  selectWindow(VIEWS[next], true);
  changeView();
}

// ---- one video's details ----

function openVideo(video, focus) {
  state.video = video;
  writeUrl();
  $("detail").hidden = false;
  $("detail-id").textContent = video;
  $("detail-rows").replaceChildren();
  $("detail-error").textContent = "";
  $("hourly-chart").replaceChildren();
  $("hourly-summary").textContent = "Loading…";
  for (const button of $("rows").querySelectorAll("button")) {
    button.setAttribute("aria-expanded", String(button.dataset.video === video));
    button.closest("tr").classList.toggle("selected", button.dataset.video === video);
  }
  if (focus) $("detail-title").focus();
  loadCounts(video);
  loadHourly(video);
}

function closeVideo() {
  const video = state.video;
  state.video = null;
  writeUrl();
  $("detail").hidden = true;
  for (const tr of $("rows").rows) tr.classList.remove("selected");
  if (video) focusRow(video);
}

const videoPath = (video) => `/v1/videos/${encodeURIComponent(video)}`;

async function loadCounts(video) {
  try {
    const { body } = await getJson(videoPath(video));
    if (state.video !== video) return;
    renderCounts(body);
    $("detail-error").textContent = "";
  } catch (e) {
    if (state.video === video) $("detail-error").textContent = `Could not load the counts: ${e.message}`;
  }
}

function renderCounts(body) {
  // `rank` is newer than the counts: without it the column is hidden; null means not in the top 1000.
  const ranks = body.rank && typeof body.rank === "object" ? body.rank : null;
  $("detail-counts").classList.toggle("no-rank", ranks === null);
  $("detail-caption").textContent = ranks === null ? "Views per window" : "Views and rank per window";
  const rows = WINDOWS.map((w) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = WINDOW_NAMES[w];
    const views = document.createElement("td");
    views.className = "num";
    views.textContent = typeof body[w] === "number" ? numbers.format(body[w]) : "–";
    const rank = document.createElement("td");
    rank.className = "num rank-col";
    const r = ranks ? ranks[w] : null;
    rank.textContent = typeof r === "number" ? `#${numbers.format(r)}` : "–";
    if (typeof r !== "number") rank.title = "not in the top 1000";
    tr.append(th, views, rank);
    return tr;
  });
  $("detail-rows").replaceChildren(...rows);
}

async function loadHourly(video) {
  try {
    const { body } = await getJson(`${videoPath(video)}/hourly`);
    if (state.video !== video) return;
    if (!Array.isArray(body.hours)) throw new Error("no hours in the answer");
    drawHourly(body.hours);
  } catch {
    if (state.video !== video) return;
    $("hourly-chart").replaceChildren();
    $("hourly-summary").textContent = "History unavailable.";
  }
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

// A bar per hour, oldest first. The summary under it is the text alternative (the figure's description),
// and each bar has its own title for a pointer.
function drawHourly(hours) {
  const width = 240;
  const height = 64;
  const step = width / Math.max(hours.length, 1);
  const max = Math.max(1, ...hours.map((h) => h.views));
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height + 14}`,
    role: "img",
    "aria-labelledby": "hourly-caption hourly-summary",
    class: "chart",
  });
  hours.forEach((h, i) => {
    const barHeight = h.views > 0 ? Math.max(1, (h.views / max) * height) : 0;
    const bar = svg("rect", {
      x: (i * step + 1).toFixed(2),
      y: (height - barHeight).toFixed(2),
      width: Math.max(step - 2, 1).toFixed(2),
      height: barHeight.toFixed(2),
      class: "bar",
    });
    const title = svg("title", {});
    title.textContent = `${hourClock.format(new Date(h.hour))}: ${numbers.format(h.views)} views`;
    bar.append(title);
    chart.append(bar);
  });
  chart.append(svg("line", { x1: 0, y1: height + 0.5, x2: width, y2: height + 0.5, class: "axis" }));
  if (hours.length > 0) {
    const first = svg("text", { x: 0, y: height + 12, class: "label" });
    first.textContent = hourClock.format(new Date(hours[0].hour));
    const last = svg("text", { x: width, y: height + 12, class: "label end" });
    last.textContent = hourClock.format(new Date(hours[hours.length - 1].hour));
    chart.append(first, last);
  }
  $("hourly-chart").replaceChildren(chart);
  const total = hours.reduce((sum, h) => sum + h.views, 0);
  const busiest = hours.reduce((best, h) => (best === null || h.views > best.views ? h : best), null);
  $("hourly-summary").textContent = total === 0
    ? "No views in the last 24 hours."
    : `${numbers.format(total)} views in the last 24 hours; busiest hour ${hourClock.format(new Date(busiest.hour))} `
      + `with ${numbers.format(busiest.views)}.`;
}

// ---- start ----

function start() {
  readUrl();
  selectWindow(state.window, false);
  // defaultSelected, not value: it is the attribute, so the chosen k shows in the DOM (and a form reset).
  for (const option of $("k").options) option.defaultSelected = Number(option.value) === state.k;
  writeUrl();

  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => {
      if (tab.dataset.window === state.window) return;
      selectWindow(tab.dataset.window, false);
      changeView();
    });
    tab.addEventListener("keydown", onTabKey);
  }
  $("k").addEventListener("change", () => {
    state.k = Number($("k").value);
    state.previous = null;
    changeView();
  });
  $("rows").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-video]");
    if (button) openVideo(button.dataset.video, true);
  });
  $("detail-close").addEventListener("click", closeVideo);
  wireRangeForm(changeView);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.video) closeVideo();
  });
  window.addEventListener("hashchange", () => {
    const video = videoFromHash();
    if (video && video !== state.video) openVideo(video, false);
    if (!video && state.video) closeVideo();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
    else clearTimeout(state.timer);
  });
  // The live badge turns stale on its own when answers stop coming.
  setInterval(showLive, POLL_MS);

  if (state.video) openVideo(state.video, false);
  refresh();
}

start();
