"use strict";
// The fieldwork page: everything shown comes from the JSON API under
// api/v1/ (documented in docs/api.md); the page only lays it out. It
// refreshes every few seconds and says when the study-wide view is not
// caught up. No external assets.
const REFRESH_MS = 5000;
const PER_PAGE = 20;
const $ = (id) => document.getElementById(id);
const state = { studies: [], page: 1 };

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells, header) {
  const tr = el("tr");
  for (const c of cells) {
    const cell = el(header ? "th" : "td");
    if (c instanceof Node) cell.append(c);
    else if (typeof c === "number") { cell.textContent = String(c); cell.className = "num"; }
    else if (c && typeof c === "object") { cell.textContent = c.text ?? ""; cell.className = c.cls ?? ""; }
    else cell.textContent = c ?? "";
    tr.append(cell);
  }
  if (header) tr.querySelectorAll("th").forEach((th) => th.setAttribute("scope", "col"));
  return tr;
}
function fill(table, head, rows) {
  table.replaceChildren(row(head, true), ...rows);
}
const pct = (x, d = 1) => (x == null ? "–" : `${(x * 100).toFixed(d)} %`);
const num = (x) => ({ text: x == null ? "–" : String(x), cls: "num" });
function meter(share, full, label) {
  const m = el("div", undefined, "meter" + (full ? " full" : ""));
  m.setAttribute("role", "img");
  m.setAttribute("aria-label", label);
  const s = el("span");
  s.style.width = `${Math.min(100, Math.round(share * 100))}%`;
  m.append(s);
  return m;
}
function options(select, pairs, keep) {
  const first = select.options[0] && select.options[0].value === "" ? [select.options[0]] : [];
  const opts = pairs.map(([value, label]) => { const o = el("option", label); o.value = value; return o; });
  select.replaceChildren(...first, ...opts);
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}
async function api(path) {
  const r = await fetch(`api/v1/${path}`, { headers: { accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}
const study = () => encodeURIComponent($("study").value);

function showStatus(answers) {
  // Every answer is study-wide; it is behind when any part says so.
  const behind = answers.filter((a) => a && a.complete === false);
  const f = (answers.find((a) => a && a.freshness) || {}).freshness || {};
  const asOf = f.as_of ? ` · as of ${f.as_of.replace("T", " ").replace(/\.\d+Z$/, " UTC")}` : "";
  const s = $("status");
  if (behind.length) {
    const lag = Math.max(...behind.map((a) => (a.freshness && a.freshness.lag_records) || 0));
    s.textContent = `not caught up: ${lag} records not in yet${asOf}`;
    s.className = "status behind";
  } else {
    s.textContent = `whole study, up to date${asOf}`;
    s.className = "status ok";
  }
}

function renderProgress(all, seg, quotas) {
  const g = all.groups[0] || { interviews: 0, interviews_by_form: [] };
  $("total-interviews").textContent = g.interviews;
  $("progress-note").textContent =
    `· ${all.retries} retries and ${all.duplicate_respondents} duplicate respondents not counted`;
  fill($("by-form"), ["form", { text: "interviews", cls: "num" }],
    g.interviews_by_form.map(([form, n]) => row([form, n])));
  fill($("by-segment"), [seg.by || "segment", { text: "interviews", cls: "num" }],
    seg.groups.map((x) => row([x.label || x.segment, x.interviews])));
  const root = $("quotas");
  if (!quotas.quotas.length) { root.replaceChildren(el("p", "The study declares no quotas.", "muted")); return; }
  root.replaceChildren(...quotas.quotas.map((q) => {
    const wrap = el("div", undefined, "scroll");
    const t = el("table");
    fill(t, ["cell", { text: "achieved", cls: "num" }, { text: "target", cls: "num" }, "progress", "status"],
      q.cells.map((c) => {
        const name = c.values.join(" × ");
        const tr = row([c.labels.map((l, i) => l || c.values[i]).join(" × "), c.achieved, c.target,
          meter(c.progress, c.full, `${c.achieved} of ${c.target}`),
          c.closed ? "closed" : c.full ? "full (cap " + c.cap + ")" : `${c.remaining} to go`]);
        tr.dataset.quotaCell = `${q.name}/${name}`;
        return tr;
      }));
    t.prepend(el("caption", `${q.name} (${q.dimensions.join(" × ")}): ${q.achieved} of ${q.target}, ${q.full_cells} cells full`));
    wrap.append(t);
    return wrap;
  }));
}

// Days drawn in the per-day chart: the latest day and the ones before it.
const CHART_DAYS = 400;
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}
// The API's interviews per day as a figure (the latest day) and a bar per
// day, placed on a calendar axis so that days without interviews show as gaps.
function renderPerDay(fw) {
  const pd = fw.interviews_per_day || { days: [], undated: 0 };
  const last = pd.days[pd.days.length - 1];
  $("per-day").textContent = last ? `${last.interviews} on ${last.date} (latest day)` : "none yet";
  $("per-day").dataset.date = last ? last.date : "";
  $("per-day").dataset.interviews = last ? last.interviews : "";
  const notes = [`${pd.days.length} days with interviews`];
  if (pd.undated) notes.push(`${pd.undated} without a date`);
  const root = $("per-day-chart");
  if (!last) { $("per-day-note").textContent = pd.undated ? `· ${pd.undated} without a date` : ""; root.replaceChildren(); return; }
  const dayMs = 86400000;
  const end = Date.parse(last.date);
  const shown = pd.days.filter((d) => end - Date.parse(d.date) < CHART_DAYS * dayMs);
  if (shown.length < pd.days.length) notes.push(`${pd.days.length - shown.length} earlier days not drawn`);
  $("per-day-note").textContent = `· ${notes.join(" · ")}`;
  const start = Date.parse(shown[0].date);
  const span = Math.round((end - start) / dayMs) + 1;
  const max = Math.max(...shown.map((d) => d.interviews));
  const W = 600, H = 100, top = 4, base = 86;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Interviews per day from ${shown[0].date} to ${last.date}, at most ${max} a day` });
  const w = W / span;
  for (const d of shown) {
    const x = (Math.round((Date.parse(d.date) - start) / dayMs)) * w;
    const h = Math.max(1, ((base - top) * d.interviews) / max);
    const bar = svg("rect", { x: x.toFixed(2), y: (base - h).toFixed(2), width: Math.max(0.8, w * 0.85).toFixed(2), height: h.toFixed(2) });
    bar.dataset.date = d.date;
    bar.dataset.interviews = d.interviews;
    bar.append(svg("title", {}, `${d.date}: ${d.interviews}`));
    chart.append(bar);
  }
  chart.append(svg("text", { x: 0, y: H - 2 }, shown[0].date),
    svg("text", { x: W, y: H - 2, "text-anchor": "end" }, last.date),
    svg("text", { x: 2, y: 12 }, `max ${max}`));
  root.replaceChildren(chart);
}

const DISPOSITIONS = ["complete", "partial", "refusal", "non_contact", "other", "unknown_household", "unknown_other", "not_eligible"];
function renderRates(all, seg) {
  const g = all.groups[0];
  $("rr1").textContent = g ? pct(g.rates.rr1) : "–";
  $("rates-note").textContent = all.response_rate_target != null ? `· target ${pct(all.response_rate_target, 0)}` : "";
  const groups = [...all.groups.map((x) => ({ ...x, label: "all cases" })), ...seg.groups];
  fill($("rates-table"),
    ["group", ...["RR1", "RR3", "COOP1", "REF1"].map((t) => ({ text: t, cls: "num" })),
      { text: "cases", cls: "num" }, ...DISPOSITIONS.map((d) => ({ text: d.replace("_", " "), cls: "num" }))],
    groups.map((x) => row([x.label || x.segment, num(pct(x.rates.rr1)), num(pct(x.rates.rr3)),
      num(pct(x.rates.coop1)), num(pct(x.rates.ref1)), x.cases, ...DISPOSITIONS.map((d) => x.counts[d])])));
}

const MEASURES = ["speeding", "nonresponse", "dont_know", "straightlining", "extreme"];
function renderInterviewers(byInt) {
  fill($("interviewer-table"),
    ["interviewer", { text: "interviews", cls: "num" }, { text: "median duration", cls: "num" },
      ...MEASURES.map((m) => ({ text: m.replace("_", " "), cls: "num" })), "outlier marks"],
    byInt.groups.map((x) => {
      const q = x.quality || { measures: {}, outliers: [] };
      const marks = el("span");
      for (const o of q.outliers || []) marks.append(el("span", o.replace("_", " "), "tag out"));
      const cell = (m) => {
        const v = q.measures[m];
        return { text: v && v.rate != null ? pct(v.rate) + (v.outlier ? " ▲" : "") : "–", cls: "num" };
      };
      const tr = row([x.label || x.segment, x.counts.complete,
        num(q.median_duration_secs == null ? null : `${(q.median_duration_secs / 60).toFixed(1)} min`),
        ...MEASURES.map(cell), marks]);
      tr.dataset.interviewer = x.segment;
      return tr;
    }));
}

function flagLink(text, check, item) {
  const a = el("a", text);
  a.href = "#flags";
  a.addEventListener("click", () => {
    $("f-check").value = check;
    $("f-item").value = item || "";
    $("f-interviewer").value = "";
    state.page = 1;
    refreshFlags();
  });
  return a;
}
function renderQuality(q) {
  fill($("quality-table"), ["check", { text: "flags", cls: "num" }, "worst items"],
    q.checks.map((c) => {
      const items = el("span");
      for (const it of c.worst_items) {
        const link = flagLink(`${it.code} (${it.flags})`, c.check, it.code);
        link.title = it.text;
        items.append(link, document.createTextNode(" "));
      }
      const tr = row([flagLink(c.check.replaceAll("_", " "), c.check, ""), c.flags, items]);
      tr.dataset.check = c.check;
      return tr;
    }));
  options($("f-check"), q.checks.map((c) => [c.check, c.check.replaceAll("_", " ")]), $("f-check").value);
}

function renderFlags(p) {
  $("flags-total").textContent = p.total;
  const pages = Math.max(1, Math.ceil(p.total / p.per_page));
  $("flags-page").textContent = `· page ${p.page} of ${pages}`;
  $("prev").disabled = p.page <= 1;
  $("next").disabled = p.page >= pages;
  fill($("flag-table"), ["submission", "form", "interviewer", "received", "item", "reason"],
    p.flags.map((f) => row([f.submission_id, f.form, f.interviewer, f.received_at || "",
      f.checks.map((c) => c.code || c.item || "—").join(", "),
      f.checks.map((c) => c.check.replaceAll("_", " ")).join(", ")])));
}

function renderToplines(t) {
  const g = t.groups[0] || { items: [] };
  fill($("topline-table"), ["item", "question", { text: "n", cls: "num" }, { text: "low", cls: "num" },
    { text: "high", cls: "num" }, { text: "mean", cls: "num" }, "top answers"],
    g.items.map((it) => {
      const b = it.boxes;
      const top = it.suppressed ? `suppressed (n < ${t.min_cell_size})`
        : it.distribution.slice().sort((a, z) => z.share - a.share).slice(0, 3)
          .map((c) => `${c.label || c.value} ${pct(c.share, 0)}`).join(" · ");
      const tr = row([it.code, it.text, it.valid_n, num(b ? pct(b.low, 0) : ""), num(b ? pct(b.high, 0) : ""),
        num(it.mean == null ? "" : it.mean.toFixed(2)), top]);
      tr.dataset.code = it.code;
      return tr;
    }));
  options($("f-item"), g.items.map((it) => [it.code, it.code]), $("f-item").value);
}

async function refreshFlags() {
  const q = new URLSearchParams({ page: state.page, per_page: PER_PAGE });
  for (const [k, id] of [["check", "f-check"], ["interviewer", "f-interviewer"], ["item", "f-item"]]) {
    if ($(id).value) q.set(k, $(id).value);
  }
  const p = await api(`studies/${study()}/flags?${q}`);
  renderFlags(p);
  return p;
}

async function refresh() {
  if (!$("study").value) return;
  const seg = encodeURIComponent($("segment").value);
  try {
    const [all, bySeg, quotas, fw, fwSeg, fwInt, quality] = await Promise.all([
      api(`studies/${study()}/toplines`),
      api(`studies/${study()}/toplines?by=${seg}`),
      api(`studies/${study()}/quotas`),
      api(`studies/${study()}/fieldwork`),
      api(`studies/${study()}/fieldwork?by=${seg}`),
      api(`studies/${study()}/fieldwork?by=interviewer`),
      api(`studies/${study()}/quality`),
    ]);
    renderProgress(all, bySeg, quotas);
    renderPerDay(fw);
    renderRates(fw, fwSeg);
    renderInterviewers(fwInt);
    options($("f-interviewer"), fwInt.groups.map((g) => [g.segment, g.label || g.segment]), $("f-interviewer").value);
    renderQuality(quality);
    renderToplines(all);
    const flags = await refreshFlags();
    showStatus([all, quotas, fw, quality, flags]);
    document.body.dataset.loaded = "true";
  } catch (e) {
    $("status").textContent = `cannot reach the service (${e.message})`;
    $("status").className = "status behind";
  }
}

async function start() {
  state.studies = (await api("studies")).studies;
  options($("study"), state.studies.map((s) => [s.study, s.title ? `${s.study} — ${s.title}` : s.study]), "");
  const fillSegments = () => {
    const s = state.studies.find((x) => x.study === $("study").value);
    const dims = (s ? s.dimensions : []).filter((d) => d !== "interviewer");
    options($("segment"), dims.map((d) => [d, d]), $("segment").value);
  };
  fillSegments();
  $("study").addEventListener("change", () => { fillSegments(); state.page = 1; refresh(); });
  $("segment").addEventListener("change", refresh);
  for (const id of ["f-check", "f-interviewer", "f-item"]) {
    $(id).addEventListener("change", () => { state.page = 1; refreshFlags(); });
  }
  $("prev").addEventListener("click", () => { state.page = Math.max(1, state.page - 1); refreshFlags(); });
  $("next").addEventListener("click", () => { state.page += 1; refreshFlags(); });
  await refresh();
  setInterval(refresh, REFRESH_MS);
}
start();
