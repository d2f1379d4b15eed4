// Tacit web page: the analyst and compliance views over the JSON API. No framework, no
// build step, nothing from another origin. The token lives in this tab's sessionStorage
// and is sent only in the Authorization header.
"use strict";

(() => {
  const TOKEN_KEY = "tacit.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const VALUE_KEYS = new Set(["value", "ci95", "ci95_halfwidth", "difference", "difference_ci95", "lift", "lift_ci95", "sessions", "sessions_ci95", "steps", "numerator", "denominator"]);
  const FUNNEL_CELLS = 12; // funnels drawn at most; the table lists every cell
  const ERROR_WORDS = {
    unauthorized: "This token was not accepted.",
    forbidden: "Not allowed.",
    budget_exhausted: "Not enough privacy budget left.",
    invalid_query: "This question cannot be asked as it is.",
    too_many_requests: "Too many requests right now.",
    unavailable: "The service is busy.",
    network: "The service did not answer.",
  };
  const COMPONENT_WORDS = {
    count: "count",
    numerator: "numerator",
    denominator: "denominator",
    sum: "sum",
    histogram: "each histogram bin",
    levels: "each count of sessions by steps reached",
  };

  const state = {
    token: null,
    role: null,
    catalogue: null,
    budget: null,
    preview: null,
    previewSeq: 0,
    previewTimer: 0,
    auditAfter: 0,
  };

  const $ = (id) => document.getElementById(id);

  // --- the API ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, { method = "GET", body } = {}) {
    const headers = { Authorization: `Bearer ${state.token}` };
    const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "network", "Is it running and reachable from this page?");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const error = data && data.error ? data.error : {};
      throw new ApiError(
        response.status,
        error.code || `http_${response.status}`,
        error.message || `The service answered ${response.status} ${response.statusText}.`,
      );
    }
    return data;
  }

  function showError(node, err) {
    const lead = ERROR_WORDS[err.code];
    node.textContent = lead ? `${lead} ${err.message}` : err.message || String(err);
    node.hidden = false;
  }

  function hideError(node) {
    node.hidden = true;
    node.textContent = "";
  }

  // --- small helpers ---------------------------------------------------------------------

  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function s(tag, attrs = {}, parent = null) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, String(value));
    }
    if (parent) parent.append(node);
    return node;
  }

  const unitSymbol = () => (state.catalogue && state.catalogue.unit === "rho" ? "ρ" : "ε");

  function amount(x) {
    return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(4)));
  }

  function formatValue(v, unit) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (unit === "ratio") return `${(v * 100).toFixed(1)} %`;
    if (unit === "ms") return v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
    if (Math.abs(v) >= 100) return Math.round(v).toLocaleString("en");
    return String(Number(v.toPrecision(3)));
  }

  function isoDay(d) {
    return d.toISOString().slice(0, 10);
  }

  function addDays(day, n) {
    const d = new Date(`${day}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + n);
    return isoDay(d);
  }

  function shortDay(day) {
    const d = new Date(`${day}T00:00:00Z`);
    return d.toLocaleDateString("en", { month: "short", day: "numeric", timeZone: "UTC" });
  }

  function daysBetween(start, end) {
    const out = [];
    for (let d = start; d <= end && out.length < 400; d = addDays(d, 1)) out.push(d);
    return out;
  }

  // --- signing in and out ------------------------------------------------------------------

  async function signIn(token) {
    state.token = token;
    try {
      state.catalogue = await api("/v1/metrics");
      state.role = "analyst";
    } catch (err) {
      if (err.status !== 403) throw err;
      try {
        await api("/v1/audit?limit=1");
        state.role = "compliance";
      } catch (inner) {
        if (inner.status === 403) {
          throw new ApiError(403, "forbidden", "This page needs an analyst or a compliance token; this one is neither (an ingest token?).");
        }
        throw inner;
      }
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("session").hidden = false;
    $("session-who").textContent = `Signed in with ${state.role === "analyst" ? "an analyst" : "a compliance or admin"} token`;
    $("views").hidden = false;
    $("tab-analyst").hidden = state.role !== "analyst";
    $("tab-compliance").textContent = state.role === "analyst" ? "Policy" : "Compliance";
    await showView(state.role);
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    // A fresh page forgets everything this one held.
    window.location.replace("/ui");
  }

  async function showView(view) {
    for (const name of ["analyst", "compliance"]) {
      $(name).hidden = name !== view;
      const tab = $(`tab-${name}`);
      if (name === view) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    if (view === "analyst" && !$("metric").options.length) await initAnalyst();
    if (view === "compliance" && !$("policy-sha").textContent) await initCompliance();
  }

  // --- analyst: the form -------------------------------------------------------------------

  function currentMetric() {
    const name = $("metric").value;
    return state.catalogue.metrics.find((m) => m.name === name);
  }

  async function initAnalyst() {
    const cat = state.catalogue;
    const select = $("metric");
    for (const m of cat.metrics) {
      const option = h("option", { value: m.name, text: m.granted ? m.title : `${m.title} (not granted to you)` });
      option.disabled = !m.granted;
      select.append(option);
    }
    const first = cat.metrics.find((m) => m.granted);
    if (first) select.value = first.name;
    $("unit-symbol").textContent = unitSymbol();
    const max = cat.max_per_query;
    const initial = Math.min(0.5, max);
    for (const id of ["budget-amount", "budget-range"]) {
      $(id).max = String(max);
      $(id).min = id === "budget-range" ? String(Math.min(0.05, max)) : "0.01";
      $(id).value = String(initial);
    }
    await loadBudget();
    const days = Object.keys(state.budget.remaining).sort();
    const last = days[days.length - 1] || isoDay(new Date());
    const oldest = days[0] || last;
    for (const id of ["start", "end"]) {
      $(id).min = oldest;
      $(id).max = last;
    }
    $("end").value = last;
    $("start").value = addDays(last, -6) < oldest ? oldest : addDays(last, -6);
    renderMetric();
    renderBudget();
    schedulePreview(0);
  }

  function renderMetric() {
    const m = currentMetric();
    if (!m) return;
    $("metric-description").textContent = m.description;
    const box = $("group-by");
    const previously = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
    const keep = previously.size ? previously : new Set(["day"]);
    box.replaceChildren();
    for (const dim of m.group_by) {
      const input = h("input", { type: "checkbox", value: dim, id: `gb-${dim}` });
      input.checked = keep.has(dim);
      box.append(h("label", { className: "chip", for: `gb-${dim}` }, input, h("span", { text: dim.replace("_", " ") })));
    }
    renderFilters(m);
    renderCompare(m);
    $("totals-field").hidden = !["count", "rate", "sum", "funnel"].includes(m.kind);
  }

  // Rates and means can compare each key of a dimension with a baseline key.
  function renderCompare(m) {
    const select = $("compare");
    const before = select.value;
    select.replaceChildren(h("option", { value: "", text: "No comparison" }));
    const comparable = m.kind === "rate" || m.kind === "mean";
    $("compare-field").hidden = !comparable;
    if (!comparable) return;
    for (const [dim, keys] of Object.entries(m.keys || {})) {
      for (const key of keys) {
        if (key === "other") continue;
        select.append(h("option", { value: `${dim}=${key}`, text: `each ${dim.replace("_", " ")} against ${key}` }));
      }
    }
    if ([...select.options].some((o) => o.value === before)) select.value = before;
  }

  function chosenCompare() {
    const value = $("compare").closest(".field").hidden ? "" : $("compare").value;
    if (!value) return null;
    const at = value.indexOf("=");
    return { dimension: value.slice(0, at), baseline: value.slice(at + 1) };
  }

  // A row of ticked keys per dimension (the catalogue's public keys); a value unticked
  // stays unticked when the next metric has the same dimension.
  function renderFilters(m) {
    const box = $("filters");
    const unticked = new Set([...box.querySelectorAll("input:not(:checked)")].map((i) => `${i.dataset.dim}:${i.value}`));
    box.replaceChildren();
    box.closest("fieldset").hidden = !Object.keys(m.keys || {}).length;
    for (const [dim, keys] of Object.entries(m.keys || {})) {
      const words = dim.replace("_", " ");
      const chips = h("div", { className: "chips", role: "group", "aria-label": words });
      keys.forEach((key, i) => {
        const input = h("input", { type: "checkbox", value: String(key), id: `f-${dim}-${i}` });
        input.dataset.dim = dim;
        input.checked = !unticked.has(`${dim}:${key}`);
        chips.append(h("label", { className: "chip", for: input.id }, input, h("span", { text: String(key) })));
      });
      box.append(h("div", { className: "filter" }, h("span", { className: "filter-dim", text: words }), chips));
    }
  }

  function chosenFilters() {
    const filters = {};
    for (const row of $("filters").querySelectorAll(".filter")) {
      const inputs = [...row.querySelectorAll("input")];
      const kept = inputs.filter((i) => i.checked).map((i) => i.value);
      if (kept.length < inputs.length) filters[inputs[0].dataset.dim] = kept;
    }
    return filters;
  }

  function queryBody() {
    const m = currentMetric();
    const checked = new Set([...$("group-by").querySelectorAll("input:checked")].map((i) => i.value));
    const body = {
      metric: m ? m.name : "",
      start: $("start").value,
      end: $("end").value,
      group_by: (m ? m.group_by : []).filter((d) => checked.has(d)),
    };
    const filters = chosenFilters();
    if (Object.keys(filters).length) body.filters = filters;
    const compare = chosenCompare();
    if (compare) {
      body.compare = compare;
      // A comparison is between the keys of a grouped dimension: group by it.
      if (!body.group_by.includes(compare.dimension)) body.group_by.push(compare.dimension);
    }
    if (!$("totals-field").hidden && $("totals").checked) body.totals = true;
    body[state.catalogue.unit === "rho" ? "rho" : "epsilon"] = Number($("budget-amount").value);
    return body;
  }

  function localProblem(body) {
    if (!body.metric) return "Pick a metric.";
    if (!body.start || !body.end) return "Pick the first and the last day.";
    if (body.start > body.end) return "The first day must be on or before the last day.";
    for (const [dim, kept] of Object.entries(body.filters || {})) {
      if (!kept.length) return `Tick at least one ${dim.replace("_", " ")} value (all ticked: no filter).`;
    }
    const b = body.epsilon ?? body.rho;
    if (!(b > 0)) return `The budget must be a number above 0.`;
    if (b > state.catalogue.max_per_query) return `One query may spend at most ${unitSymbol()} ${state.catalogue.max_per_query}.`;
    return null;
  }

  // --- analyst: preview --------------------------------------------------------------------

  function schedulePreview(delay = 300) {
    clearTimeout(state.previewTimer);
    state.previewTimer = setTimeout(runPreview, delay);
    renderBudget();
  }

  async function runPreview() {
    const seq = ++state.previewSeq;
    const box = $("preview");
    const body = queryBody();
    const problem = localProblem(body);
    state.preview = null;
    $("run").disabled = true;
    if (problem) {
      box.className = "preview warn";
      box.textContent = problem;
      return;
    }
    box.setAttribute("aria-busy", "true");
    try {
      const preview = await api("/v1/queries/preview", { method: "POST", body });
      if (seq !== state.previewSeq) return;
      state.preview = preview;
      renderPreview(preview);
    } catch (err) {
      if (seq !== state.previewSeq) return;
      box.className = "preview warn";
      box.textContent = (ERROR_WORDS[err.code] ? `${ERROR_WORDS[err.code]} ` : "") + err.message;
    } finally {
      if (seq === state.previewSeq) box.setAttribute("aria-busy", "false");
    }
  }

  function halfwidthWords(hw) {
    if (hw === null || hw === undefined) return "";
    if (typeof hw === "number") return `±${formatValue(hw)}`;
    return Object.entries(hw)
      .map(([k, v]) => `${COMPONENT_WORDS[k] || k} ±${formatValue(v)}`)
      .join(", ");
  }

  function renderPreview(p) {
    const box = $("preview");
    const sym = unitSymbol();
    const days = p.cost.epochs.length;
    const cells = (p.rows || []).length;
    box.className = p.affordable ? "preview" : "preview warn";
    box.replaceChildren(
      h("p", { className: "cost", text: `Cost: ${sym} ${amount(p.cost.value)} on each of ${days} day${days === 1 ? "" : "s"}${p.cost.epsilon_equivalent !== undefined ? ` (ε ${amount(p.cost.epsilon_equivalent)})` : ""}. Nothing is spent until you run it.` }),
    );
    const list = h("ul");
    list.append(h("li", { text: `Expected 95 % interval half-width per cell (${cells} cell${cells === 1 ? "" : "s"}): ${halfwidthWords(p.ci95_halfwidth)}` }));
    const how = (p.notes || []).find((n) => n.startsWith("ci95_halfwidth"));
    if (how) list.append(h("li", { className: "hint", text: how.replace("ci95_halfwidth", "The half-width") }));
    if (!p.affordable) list.append(h("li", { text: `Not enough budget left on ${p.short_epochs.join(", ")}: spend less or shorten the range.` }));
    if (p.repeat_of) list.append(h("li", { text: `You asked exactly this before (${p.repeat_of}): running it returns that answer again at no cost.` }));
    box.append(list);
    const run = $("run");
    run.disabled = !p.affordable && !p.repeat_of;
    run.textContent = p.repeat_of ? "Show the earlier answer (free)" : `Run query · spend ${sym} ${amount(p.cost.value)} × ${days} day${days === 1 ? "" : "s"}`;
  }

  // --- analyst: run and show ----------------------------------------------------------------

  async function runQuery(event) {
    event.preventDefault();
    const body = queryBody();
    const problem = localProblem(body);
    const errorBox = $("query-error");
    hideError(errorBox);
    if (problem) {
      showError(errorBox, new ApiError(0, "invalid_query", problem));
      return;
    }
    const run = $("run");
    run.disabled = true;
    run.textContent = "Running…";
    try {
      const result = await api("/v1/queries", { method: "POST", body });
      renderResult(result, currentMetric());
      await loadBudget();
    } catch (err) {
      showError(errorBox, err);
      if (err.code === "budget_exhausted") await loadBudget().catch(() => {});
    } finally {
      renderBudget();
      await runPreview();
    }
  }

  function renderResult(r, metric) {
    const unit = metric ? metric.unit : "";
    const sym = unitSymbol();
    const dims = r.rows.length ? Object.keys(r.rows[0]).filter((k) => !VALUE_KEYS.has(k)) : [];
    $("result").hidden = false;
    $("result-title").textContent = `${metric ? metric.title : r.metric}, ${shortDay(r.start)} – ${shortDay(r.end)}`;
    const charged = r.repeat
      ? `an earlier answer returned again at no cost (it cost ${sym} ${amount(r.cost.original_value)} per day)`
      : `${sym} ${amount(r.cost.value)} charged on each of ${r.cost.epochs.length} day${r.cost.epochs.length === 1 ? "" : "s"}`;
    const only = Object.entries(r.filters || {}).map(([d, keys]) => `${d.replace("_", " ")} ${keys.join(", ")}`);
    $("result-meta").textContent = `Release ${r.release_id} · ${only.length ? `only ${only.join("; ")} · ` : ""}${charged}`;
    drawChart($("chart"), r.rows, dims, unit, metric ? metric.title : r.metric);
    $("chart-caption").textContent = "Dots are the released values; bars and bands are their 95 % intervals (the noise added for privacy).";

    const table = $("result-table");
    const head = h("tr");
    for (const d of dims) head.append(h("th", { scope: "col", text: d.replace("_", " ") }));
    head.append(h("th", { scope: "col", className: "num", text: "Value" }));
    head.append(h("th", { scope: "col", className: "num", text: "95 % interval" }));
    const funnel = r.rows.length > 0 && Array.isArray(r.rows[0].steps);
    if (funnel) head.append(h("th", { scope: "col", text: "Steps (share of sessions shown a response, 95 % interval)" }));
    table.tHead.replaceChildren(head);
    const rows = r.rows.map((row) => {
      const tr = h("tr");
      for (const d of dims) tr.append(h("td", { text: String(row[d]) }));
      tr.append(h("td", { className: "num", text: formatValue(row.value, unit) }));
      const ci = row.ci95 || [null, null];
      tr.append(h("td", { className: "num", text: row.value === null ? "no value" : `${formatValue(ci[0], unit)} – ${formatValue(ci[1], unit)}` }));
      if (funnel) tr.append(h("td", { className: "steps", text: row.steps.map(stepWords).join("; ") }));
      return tr;
    });
    // Totals: one row per day, the exact sum of the rows above it (no extra budget).
    for (const t of r.totals || []) {
      const tr = h("tr", { className: "total-row" });
      for (const d of dims) tr.append(h("td", { text: d === "day" ? String(t.day) : "total" }));
      tr.append(h("td", { className: "num", text: formatValue(t.value, unit) }));
      const ci = t.ci95 || [null, null];
      tr.append(h("td", { className: "num", text: t.value === null ? "no value" : `${formatValue(ci[0], unit)} – ${formatValue(ci[1], unit)}` }));
      if (funnel) tr.append(h("td", { className: "steps", text: t.steps.map(stepWords).join("; ") }));
      rows.push(tr);
    }
    table.tBodies[0].replaceChildren(...rows);
    $("result-guarantee").textContent = r.guarantee || "";
    $("result-notes").replaceChildren(...(r.notes || []).map((n) => h("li", { text: n })));
    renderComparison(r, unit);
    renderFunnel(r, dims);
    $("result").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // --- the funnel: each cell's steps as bars, with their intervals -------------------------

  function stepWords(st) {
    if (st.value === null) return `${st.step}: no value`;
    return `${st.step} ${pct(st.value).replace("+", "")} (${formatValue(st.ci95[0], "ratio")} – ${formatValue(st.ci95[1], "ratio")})`;
  }

  function renderFunnel(r, dims) {
    const box = $("funnel");
    const funnel = r.rows.length > 0 && Array.isArray(r.rows[0].steps);
    box.hidden = !funnel;
    if (!funnel) return;
    const cells = r.rows.slice(0, FUNNEL_CELLS);
    const label = (row) => dims.map((d) => String(row[d])).join(" · ") || "all sessions";
    const steps = r.rows[0].steps.map((st) => st.step);
    const W = 760, rowH = 22, M = { l: 230, r: 24, t: 8 };
    const blockH = rowH * (steps.length + 2);
    const H = M.t + blockH * cells.length + 24;
    const x = (v) => M.l + (W - M.l - M.r) * Math.min(Math.max(v, 0), 1);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "funnel-svg-title funnel-svg-desc" });
    s("title", { id: "funnel-svg-title", text: `Funnel: ${steps.join(" → ")}, with 95 % intervals` }, svg);
    s("desc", { id: "funnel-svg-desc", text: "Bars are the share of sessions shown a response that reached each step; lines are the 95 % intervals. The table lists every cell." }, svg);
    const grid = s("g", { class: "grid axis" }, svg);
    for (let v = 0; v <= 1.0001; v += 0.25) {
      s("line", { x1: x(v), x2: x(v), y1: M.t, y2: H - 24 }, grid);
      s("text", { x: x(v), y: H - 8, "text-anchor": "middle", text: `${Math.round(v * 100)} %` }, grid);
    }
    cells.forEach((row, c) => {
      const top = M.t + blockH * c;
      const g = s("g", { class: `funnel-cell series series-${c % 8}` }, svg);
      s("text", { x: 4, y: top + rowH * 0.7, class: "funnel-cell-label", text: `${label(row)}: ${row.sessions === null ? "–" : Math.round(row.sessions)} sessions shown a response` }, g);
      row.steps.forEach((st, k) => {
        const cy = top + rowH * (k + 1.5);
        const step = s("g", { class: "funnel-step" }, g);
        s("text", { x: M.l - 10, y: cy + 4, "text-anchor": "end", class: "funnel-step-name", text: st.step }, step);
        if (st.value === null) {
          s("text", { x: x(0) + 6, y: cy + 4, class: "value-label", text: "no value" }, step);
          return;
        }
        s("rect", { x: x(0), y: cy - 8, width: Math.max(x(st.value) - x(0), 1), height: 16, rx: 3, fill: "currentColor", "fill-opacity": 0.35, class: "funnel-bar" }, step);
        const [lo, hi] = st.ci95;
        s("line", { x1: x(lo), x2: x(hi), y1: cy, y2: cy, stroke: "currentColor", "stroke-width": 3, class: "funnel-interval" }, step);
        s("title", { text: `${label(row)}, ${stepWords(st)}` }, step);
      });
    });
    $("funnel-chart").replaceChildren(svg);
    $("funnel-caption").textContent = r.rows.length > FUNNEL_CELLS
      ? `The first ${FUNNEL_CELLS} of ${r.rows.length} cells; the table lists every one.`
      : "Each step is at most the one before it; intervals are each step's own 95 % interval.";
  }

  // --- the comparison: lift with its interval, and in words -------------------------------

  function pct(v) {
    return v === null || v === undefined ? "–" : `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)} %`;
  }

  function signed(v, unit) {
    if (v === null || v === undefined) return "–";
    return `${v >= 0 ? "+" : "−"}${formatValue(Math.abs(v), unit)}`;
  }

  function comparisonLabel(c, compare) {
    return Object.keys(c).filter((k) => !VALUE_KEYS.has(k)).map((k) => String(c[k])).join(" · ") || compare.dimension;
  }

  function comparisonWords(c, compare, unit) {
    const who = comparisonLabel(c, compare);
    if (c.difference === null) {
      return `${who} against ${compare.baseline}: too little data to compare (a denominator is mostly noise).`;
    }
    const [lo, hi] = c.difference_ci95;
    const excludes = lo > 0 || hi < 0;
    const verdict = excludes
      ? `The interval excludes zero: ${who} is ${lo > 0 ? "higher" : "lower"} than ${compare.baseline}.`
      : `The interval includes zero: the difference could be noise alone.`;
    const lift = c.lift === null ? "" : `, lift ${pct(c.lift)} (95 %: ${pct(c.lift_ci95[0])} to ${pct(c.lift_ci95[1])})`;
    return `${who} against ${compare.baseline}: difference ${signed(c.difference, unit)} (95 %: ${signed(lo, unit)} to ${signed(hi, unit)})${lift}. ${verdict}`;
  }

  function renderComparison(r, unit) {
    const box = $("comparison");
    box.hidden = !r.compare;
    if (!r.compare) return;
    const list = r.comparison || [];
    $("comparison-title").textContent = `Compared with ${r.compare.dimension.replace("_", " ")} ${r.compare.baseline}`;
    $("comparison-words").replaceChildren(...list.map((c) => {
      const li = h("li", { text: comparisonWords(c, r.compare, unit) });
      const [lo, hi] = c.difference_ci95;
      li.className = c.difference === null ? "unknown" : lo > 0 || hi < 0 ? "excludes-zero" : "includes-zero";
      return li;
    }));
    drawLiftChart($("lift-chart"), list, r.compare);
  }

  function drawLiftChart(container, list, compare) {
    container.replaceChildren();
    const known = list.filter((c) => c.lift !== null);
    let lo = Math.min(0, ...known.map((c) => c.lift_ci95[0]));
    let hi = Math.max(0, ...known.map((c) => c.lift_ci95[1]));
    if (hi - lo < 1e-9) { lo -= 0.1; hi += 0.1; }
    const step = niceStep(hi - lo);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const W = 760, rowH = 34;
    const M = { l: 160, r: 24, t: 10, b: 30 };
    const H = M.t + M.b + rowH * Math.max(list.length, 1);
    const x = (v) => M.l + (W - M.l - M.r) * (Math.min(Math.max(v, lo), hi) - lo) / (hi - lo);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "lift-title lift-desc" });
    s("title", { id: "lift-title", text: `Lift against ${compare.baseline}, with 95 % intervals` }, svg);
    s("desc", { id: "lift-desc", text: "The list below says the same in words." }, svg);
    const grid = s("g", { class: "grid axis" }, svg);
    for (let v = lo; v <= hi + step / 2; v += step) {
      s("line", { x1: x(v), x2: x(v), y1: M.t, y2: H - M.b }, grid);
      s("text", { x: x(v), y: H - M.b + 16, "text-anchor": "middle", text: pct(v) }, grid);
    }
    s("line", { x1: x(0), x2: x(0), y1: M.t, y2: H - M.b, class: "zero-line", stroke: "currentColor", "stroke-width": 2 }, svg);
    list.forEach((c, i) => {
      const cy = M.t + rowH * (i + 0.5);
      const g = s("g", { class: `series series-${i % 8} lift-row` }, svg);
      s("text", { x: M.l - 10, y: cy + 4, "text-anchor": "end", text: comparisonLabel(c, compare) }, g);
      if (c.lift === null) {
        s("text", { x: x(0) + 8, y: cy + 4, class: "value-label", text: "too little data" }, g);
        return;
      }
      const [l, u] = c.lift_ci95;
      s("line", { x1: x(l), x2: x(u), y1: cy, y2: cy, stroke: "currentColor", "stroke-width": 3, class: "lift-interval" }, g);
      const dot = s("circle", { cx: x(c.lift), cy, r: 6, fill: "currentColor" }, g);
      s("title", { text: `${comparisonLabel(c, compare)}: lift ${pct(c.lift)} (95 %: ${pct(l)} to ${pct(u)})` }, dot);
    });
    container.append(svg);
  }

  // --- the chart: values with their 95 % intervals, drawn as SVG ---------------------------

  function niceStep(span) {
    const raw = span / 5 || 1;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3.5 ? 2 : norm < 7.5 ? 5 : 10) * mag;
  }

  function drawChart(container, rows, dims, unit, title) {
    container.replaceChildren();
    const shown = rows.filter((r) => r.value !== null && r.value !== undefined);
    const days = [...new Set(rows.map((r) => r.day))].filter(Boolean).sort();
    const timeSeries = dims.includes("day") && days.length > 1;
    const seriesDims = timeSeries ? dims.filter((d) => d !== "day") : dims;
    const label = (r) => seriesDims.map((d) => String(r[d])).join(" · ") || "all";

    let lo = Math.min(...shown.map((r) => r.ci95[0]), ...shown.map((r) => r.value));
    let hi = Math.max(...shown.map((r) => r.ci95[1]), ...shown.map((r) => r.value));
    if (!shown.length) { lo = 0; hi = 1; }
    if (unit !== "ratio" && lo > 0 && lo < hi * 0.5) lo = 0;
    if (unit === "ratio") lo = Math.max(0, lo); // hi: a debiased click rate may pass 1
    if (hi - lo < 1e-9) { hi += 1; lo -= unit === "ratio" ? 0 : 1; }
    const step = niceStep(hi - lo);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;

    const series = new Map();
    for (const r of rows) {
      const key = label(r);
      if (!series.has(key)) series.set(key, []);
      series.get(key).push(r);
    }
    const categories = timeSeries ? days : rows.map(label);
    const W = 760;
    const legendRows = timeSeries && series.size > 1 ? Math.ceil(series.size / 4) : 0;
    const M = { l: 68, r: 16, t: 14 + legendRows * 20, b: timeSeries ? 36 : 64 };
    const H = 300 + legendRows * 20;
    const plotW = W - M.l - M.r;
    const plotH = H - M.t - M.b;
    const band = plotW / Math.max(categories.length, 1);
    const x = (i) => M.l + band * (i + 0.5);
    const y = (v) => M.t + plotH * (1 - (Math.min(Math.max(v, lo), hi) - lo) / (hi - lo));

    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title chart-desc" });
    s("title", { id: "chart-title", text: `${title}: released values with 95 % intervals` }, svg);
    s("desc", { id: "chart-desc", text: `${rows.length} cells; ${rows.length - shown.length} without a value. The table below lists every value.` }, svg);

    const grid = s("g", { class: "grid axis" }, svg);
    for (let v = lo; v <= hi + step / 2; v += step) {
      s("line", { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v) }, grid);
      s("text", { x: M.l - 8, y: y(v) + 4, "text-anchor": "end", text: formatValue(v, unit) }, grid);
    }
    const axis = s("g", { class: "axis" }, svg);
    const every = Math.ceil(categories.length / (timeSeries ? 14 : 24));
    categories.forEach((c, i) => {
      if (i % every) return;
      const text = timeSeries ? shortDay(c) : c;
      const t = s("text", { x: x(i), y: H - M.b + 16, "text-anchor": timeSeries ? "middle" : "end", text }, axis);
      if (!timeSeries) t.setAttribute("transform", `rotate(-30 ${x(i)} ${H - M.b + 16})`);
    });

    // Few series: bands. Many: error bars side by side, so that intervals stay readable.
    const keys = [...series.keys()];
    const bands = series.size <= 3;
    const dodge = bands ? 0 : Math.min((band * 0.7) / series.size, 14);
    const cls = (key, i) => (key.split(" · ").includes("other") ? "series series-other" : `series series-${i % 8}`);
    keys.forEach((key, i) => {
      const g = s("g", { class: cls(key, i) }, svg);
      const dx = (i - (keys.length - 1) / 2) * dodge;
      const points = series.get(key);
      if (timeSeries) drawTimeSeries(g, points, days, (j) => x(j) + dx, y, unit, key, bands, band);
      else for (const r of points) drawErrorBar(g, r, x(categories.indexOf(label(r))), y, band, unit, key);
    });
    if (legendRows) {
      const legend = s("g", { class: "legend" }, svg);
      keys.forEach((key, i) => {
        const lx = M.l + (i % 4) * (plotW / 4);
        const ly = 6 + Math.floor(i / 4) * 20;
        const item = s("g", { class: cls(key, i) }, legend);
        s("rect", { x: lx, y: ly, width: 12, height: 12, rx: 3, fill: "currentColor" }, item);
        s("text", { x: lx + 18, y: ly + 10, text: key }, item);
      });
    }
    container.append(svg);
  }

  function drawTimeSeries(g, points, days, x, y, unit, key, bands, band) {
    const byDay = new Map(points.map((r) => [r.day, r]));
    // Consecutive days with a value form one band and one line; a day without one breaks it.
    let run = [];
    const runs = [];
    for (const [i, day] of days.entries()) {
      const r = byDay.get(day);
      if (r && r.value !== null) run.push([i, r]);
      else if (run.length) { runs.push(run); run = []; }
    }
    if (run.length) runs.push(run);
    const cap = bands ? 0 : Math.min(band * 0.05, 4);
    for (const segment of runs) {
      if (bands && segment.length > 1) {
        const upper = segment.map(([i, r]) => `${x(i)},${y(r.ci95[1])}`);
        const lower = segment.slice().reverse().map(([i, r]) => `${x(i)},${y(r.ci95[0])}`);
        s("polygon", { points: [...upper, ...lower].join(" "), fill: "currentColor", "fill-opacity": 0.14, stroke: "none" }, g);
      } else {
        for (const [i, r] of segment) {
          s("line", { x1: x(i), x2: x(i), y1: y(r.ci95[0]), y2: y(r.ci95[1]), stroke: "currentColor", "stroke-width": 1.5, "stroke-opacity": 0.7 }, g);
          if (cap) {
            for (const v of r.ci95) s("line", { x1: x(i) - cap, x2: x(i) + cap, y1: y(v), y2: y(v), stroke: "currentColor", "stroke-width": 1.5 }, g);
          }
        }
      }
      s("polyline", { points: segment.map(([i, r]) => `${x(i)},${y(r.value)}`).join(" "), fill: "none", stroke: "currentColor", "stroke-width": bands ? 2 : 1.25, class: "trend" }, g);
      for (const [i, r] of segment) {
        const dot = s("circle", { cx: x(i), cy: y(r.value), r: 3.5, fill: "currentColor" }, g);
        s("title", { text: `${key === "all" ? "" : `${key}, `}${r.day}: ${formatValue(r.value, unit)} (95 %: ${formatValue(r.ci95[0], unit)} – ${formatValue(r.ci95[1], unit)})` }, dot);
      }
    }
  }

  function drawErrorBar(g, r, cx, y, band, unit, key) {
    if (r.value === null || r.value === undefined) {
      s("text", { x: cx, y: y(0) - 6, "text-anchor": "middle", class: "value-label", text: "no value" }, g);
      return;
    }
    const cap = Math.min(band * 0.18, 10);
    const [l, u] = r.ci95;
    s("line", { x1: cx, x2: cx, y1: y(l), y2: y(u), stroke: "currentColor", "stroke-width": 2 }, g);
    s("line", { x1: cx - cap, x2: cx + cap, y1: y(l), y2: y(l), stroke: "currentColor", "stroke-width": 2 }, g);
    s("line", { x1: cx - cap, x2: cx + cap, y1: y(u), y2: y(u), stroke: "currentColor", "stroke-width": 2 }, g);
    const dot = s("circle", { cx, cy: y(r.value), r: 5, fill: "currentColor" }, g);
    s("title", { text: `${key}: ${formatValue(r.value, unit)} (95 %: ${formatValue(l, unit)} – ${formatValue(u, unit)})` }, dot);
    if (band > 56) {
      s("text", { x: cx + cap + 4, y: y(r.value) + 4, class: "value-label", text: formatValue(r.value, unit) }, g);
    }
  }

  // --- analyst: budget ----------------------------------------------------------------------

  async function loadBudget() {
    state.budget = await api("/v1/budget");
  }

  function renderBudget() {
    const b = state.budget;
    if (!b) return;
    const sym = unitSymbol();
    const cap = b.per_epoch_cap;
    const start = $("start").value;
    const end = $("end").value;
    const inRange = start && end && start <= end ? daysBetween(start, end).filter((d) => d in b.remaining) : [];
    const days = inRange.length ? inRange : Object.keys(b.remaining).sort().slice(-14);
    const lowest = Math.min(...days.map((d) => b.remaining[d]));
    $("budget-summary").textContent =
      `You may spend ${sym} ${amount(cap)} per day (all analysts together: ${sym} ${amount(b.global_cap)}). ` +
      (inRange.length ? `Lowest left in the chosen days: ${sym} ${amount(lowest)}.` : "Recent days:");
    const items = days.map((day) => {
      const left = b.remaining[day];
      const everyone = b.global_remaining ? b.global_remaining[day] : undefined;
      const meter = h("meter", {
        min: 0, max: cap, low: cap * 0.25, high: cap * 0.5, optimum: cap, value: left,
        "aria-label": `${day}: ${sym} ${amount(left)} of ${amount(cap)} left`,
      });
      return h(
        "li",
        { className: inRange.includes(day) ? "in-range" : "", title: everyone === undefined ? "" : `all analysts: ${sym} ${amount(everyone)} left` },
        h("span", { text: shortDay(day) }),
        meter,
        h("span", { className: "amount", text: `${amount(left)} / ${amount(cap)}` }),
      );
    });
    $("budget-meters").replaceChildren(...items);
  }

  // --- compliance -----------------------------------------------------------------------------

  async function initCompliance() {
    const errorBox = $("compliance-error");
    hideError(errorBox);
    try {
      const p = await api("/v1/policy");
      $("policy-name").textContent = p.name;
      $("policy-sha").textContent = p.sha256;
      const ex = p.explanation || {};
      $("policy-summary").textContent = ex.summary || "";
      const sections = (ex.sections || []).map((sec) =>
        h("section", {}, h("h3", { text: sec.title }), h("ul", {}, ...sec.points.map((pt) => h("li", { text: pt })))),
      );
      $("policy-sections").replaceChildren(...sections);
      $("audit").hidden = state.role !== "compliance";
      if (state.role === "compliance") {
        await loadAudit(true);
      } else {
        const status = $("chain-status");
        status.className = "chain";
        status.textContent = "readable with a compliance or admin token";
      }
    } catch (err) {
      showError(errorBox, err);
    }
  }

  function auditDetail(detail) {
    return Object.entries(detail || {})
      .map(([k, v]) => {
        const text = typeof v === "object" ? JSON.stringify(v) : String(v);
        return `${k.replace(/_/g, " ")}: ${text.length > 90 ? `${text.slice(0, 87)}…` : text}`;
      })
      .join("; ");
  }

  async function loadAudit(reset) {
    if (reset) {
      state.auditAfter = 0;
      $("audit-table").tBodies[0].replaceChildren();
    }
    const page = await api(`/v1/audit?after=${state.auditAfter}&limit=100`);
    const chain = page.chain;
    const status = $("chain-status");
    status.className = chain.ok ? "chain ok" : "chain broken";
    status.textContent = chain.ok
      ? `✓ verified: the hash chain of all ${chain.entries} entries is intact`
      : `✗ verification failed at entry ${chain.first_break}: ${chain.message}`;
    const rows = page.entries.map((e) =>
      h(
        "tr",
        {},
        h("td", { className: "num", text: String(e.seq) }),
        h("td", { text: e.at.replace("T", " ").slice(0, 19) }),
        h("td", { text: e.kind.replace(/_/g, " ") }),
        h("td", { text: e.actor }),
        h("td", { className: "detail", text: auditDetail(e.detail) }),
        h("td", {}, h("code", { title: e.hash, text: `${e.hash.slice(0, 12)}…` })),
      ),
    );
    $("audit-table").tBodies[0].append(...rows);
    if (page.entries.length) state.auditAfter = page.entries[page.entries.length - 1].seq;
    $("audit-more").hidden = page.next_after === null;
  }

  // --- wiring -----------------------------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const errorBox = $("login-error");
      hideError(errorBox);
      const token = $("token").value.trim();
      if (!token) return;
      $("sign-in").disabled = true;
      try {
        await signIn(token);
        $("token").value = "";
      } catch (err) {
        state.token = null;
        showError(errorBox, err);
      } finally {
        $("sign-in").disabled = false;
      }
    });
    $("sign-out").addEventListener("click", signOut);
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => showView(tab.dataset.view).catch((err) => showError($("compliance-error"), err)));
    }
    $("metric").addEventListener("change", () => { renderMetric(); schedulePreview(0); });
    for (const id of ["start", "end", "budget-amount"]) $(id).addEventListener("input", () => schedulePreview());
    $("group-by").addEventListener("change", () => schedulePreview(0));
    $("filters").addEventListener("change", () => schedulePreview(0));
    $("compare").addEventListener("change", () => {
      const compare = chosenCompare();
      const chip = compare && $(`gb-${compare.dimension}`);
      if (chip) chip.checked = true;
      schedulePreview(0);
    });
    $("budget-range").addEventListener("input", () => {
      $("budget-amount").value = $("budget-range").value;
      schedulePreview();
    });
    $("budget-amount").addEventListener("input", () => { $("budget-range").value = $("budget-amount").value; });
    $("query-form").addEventListener("submit", runQuery);
    $("audit-more").addEventListener("click", () => loadAudit(false).catch((err) => showError($("compliance-error"), err)));
  }

  async function start() {
    wire();
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      try {
        await signIn(saved);
      } catch (err) {
        sessionStorage.removeItem(TOKEN_KEY);
        state.token = null;
        showError($("login-error"), err);
      }
    }
    document.body.dataset.ready = "true";
  }

  start();
})();
