// The "past range" view: the most viewed videos between two moments, from history (GET /v1/topk/range), not
// polled. The moments come from the form (local time), from a preset ("yesterday", "last 7 days": kept as
// such in the URL, so a link to one stays current) or from the URL (?from=&to=, RFC 3339 times or dates),
// and the caption says which range the API summed: where history keeps only hours or days it is widened to
// them. Loaded before app.js, whose helpers ($, state, getJson, renderRanking...) it calls once both are in.
"use strict";

const PRESETS = ["yesterday", "last-7-days"];
const DAY_MS = 86400000;
const moment = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});

// from and to: Dates; preset: one of PRESETS while the range is one.
const range = { from: null, to: null, preset: null };

// Reads ?range=PRESET or ?from=&to= into `range`; whether the URL asks for a range at all.
function readRangeUrl(query) {
  const preset = query.get("range");
  if (PRESETS.includes(preset)) {
    usePreset(preset);
    return true;
  }
  const from = parseMoment(query.get("from"));
  const to = parseMoment(query.get("to"));
  if (!from || !to) return false;
  Object.assign(range, { from, to, preset: null });
  return true;
}

// A date (midnight UTC, as the API reads it) or an RFC 3339 time; null for anything else.
function parseMoment(raw) {
  if (!raw) return null;
  const parsed = new Date(/^\d{4}-\d{2}-\d{2}$/.test(raw) ? `${raw}T00:00:00Z` : raw);
  return isNaN(parsed) ? null : parsed;
}

function usePreset(preset) {
  Object.assign(range, presetMoments(preset, new Date()), { preset });
}

// Yesterday from local midnight to local midnight; the last 7 days up to the current minute.
function presetMoments(preset, now) {
  if (preset === "yesterday") {
    const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate());
    return { from: new Date(midnight.getFullYear(), midnight.getMonth(), midnight.getDate() - 1), to: midnight };
  }
  const to = new Date(Math.floor(now.getTime() / 60000) * 60000);
  return { from: new Date(to.getTime() - 7 * DAY_MS), to };
}

// The query string of the view, as the URL keeps it.
function rangeQuery(k) {
  if (!range.from) usePreset("last-7-days");
  const params = range.preset
    ? { range: range.preset, k }
    : { from: range.from.toISOString(), to: range.to.toISOString(), k };
  return new URLSearchParams(params).toString();
}

// `YYYY-MM-DDTHH:MM` in local time, what a datetime-local input holds.
function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
    + `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

async function refreshRange() {
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  if (!range.from) usePreset("last-7-days");
  if (range.preset) usePreset(range.preset);
  for (const [id, at] of [["range-from", range.from], ["range-to", range.to]]) {
    // The attribute too, so the moments show in the DOM (and a form reset keeps them).
    $(id).defaultValue = localInput(at);
    $(id).value = localInput(at);
  }
  const query = new URLSearchParams({ from: range.from.toISOString(), to: range.to.toISOString(), k: state.k });
  try {
    const { body } = await getJson(`/v1/topk/range?${query}`, controller.signal);
    if (!body || !Array.isArray(body.videos)) throw new Error("the answer had no videos");
    state.previous = null;
    renderRanking(body.videos);
    describeRange(body);
    showError("");
  } catch (e) {
    if (e.name === "AbortError") return;
    $("range-note").textContent = "";
    showError(`Could not load the range: ${e.message}`);
  } finally {
    if (state.controller === controller) state.controller = null;
  }
}

// The caption names the range summed; the note says how finely, and how far history goes.
function describeRange(body) {
  const from = new Date(body.from);
  const to = new Date(body.to);
  $("caption").textContent = `Most viewed from ${moment.format(from)} to ${moment.format(to)}`;
  const notes = [];
  if (body.resolution !== "minute") {
    notes.push(`History there is kept per ${body.resolution}: the range was widened to whole ${body.resolution}s.`);
  }
  if (body.historyThrough) {
    const through = new Date(new Date(body.historyThrough).getTime() + 60000);
    if (to > through) notes.push(`History goes up to ${moment.format(through)}; later views are not in it yet.`);
  } else {
    notes.push("No history has been written yet.");
  }
  $("range-note").textContent = notes.join(" ");
  $("empty").textContent = "No views in this range.";
}

// The form and the presets: each change of range is a new view (the URL, then the ranking).
function wireRangeForm(changed) {
  $("range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const from = new Date($("range-from").value);
    const to = new Date($("range-to").value);
    if (isNaN(from) || isNaN(to) || to <= from) {
      showError("Pick a start before the end.");
      return;
    }
    Object.assign(range, { from, to, preset: null });
    changed();
  });
  for (const button of document.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => {
      usePreset(button.dataset.preset);
      changed();
    });
  }
}
