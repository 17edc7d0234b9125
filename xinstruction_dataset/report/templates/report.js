// The report page's script: loads the sample browser's data files on demand (data/*.js, each a
// call to XReport.receive with base64 gzip JSON), filters and pages the samples, and keeps the
// review (accept / veto + note) in localStorage until it is downloaded as review.jsonl.
"use strict";

const XReport = (() => {
  const PAGE_SIZE = 50;
  const SHOWN_CHARS = 200;
  const SEARCH_PARALLEL = 8;  // preview pages loaded at once by a search  // of a response in the table (the search looks at the whole preview)
  const pending = new Map();  // data file name -> {resolve, reject}
  const loaded = new Map();   // data file name -> Promise of its payload
  const storageKey = "xinstruction-review:" + location.pathname;
  const state = {index: null, rows: [], page: 0, search: 0, decisions: new Map()};

  // --- data files ---------------------------------------------------------------------------

  function receive(name, packed) {
    const waiting = pending.get(name);
    if (!waiting) return;
    pending.delete(name);
    decode(packed).then(waiting.resolve, waiting.reject);
  }

  async function decode(packed) {
    const binary = atob(packed);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  function load(name) {
    if (!loaded.has(name)) {
      loaded.set(name, new Promise((resolve, reject) => {
        pending.set(name, {resolve, reject});
        const script = document.createElement("script");
        script.src = `data/${name}.js`;
        script.onload = () => script.remove();
        script.onerror = () => { pending.delete(name); reject(new Error(`cannot load data/${name}.js`)); };
        document.head.appendChild(script);
      }));
    }
    return loaded.get(name);
  }

  const pageName = (kind, sample) => `${kind}/${String(Math.floor(sample / state.index.page_rows)).padStart(5, "0")}`;

  async function preview(sample) {
    const page = await load(pageName("p", sample));
    return page[sample % state.index.page_rows];
  }

  async function fullText(sample) {
    const page = await load(pageName("t", sample));
    return page[sample % state.index.page_rows];
  }

  // --- index and filters ----------------------------------------------------------------------

  const column = (name) => state.index.columns[name];
  const value = (name, sample) => column(name).values[column(name).rows[sample]];

  function fillFilters() {
    const form = document.getElementById("filters");
    for (const name of ["language", "kind", "label", "round", "reason"]) {
      const select = form.elements[name];
      const values = column(name).values.map((v, code) => [v, code]).filter(([v]) => v !== "" && v !== -1);
      values.sort((a, b) => String(a[0]).localeCompare(String(b[0]), undefined, {numeric: true}));
      for (const [v] of values) select.add(new Option(String(v), String(v)));
    }
    form.addEventListener("change", () => applyFilters());
    let typing = null;
    form.elements.q.addEventListener("input", () => { clearTimeout(typing); setStatus("searching…"); typing = setTimeout(applyFilters, 250); });
    form.addEventListener("submit", (event) => { event.preventDefault(); applyFilters(); });
  }

  function filterValues() {
    const form = document.getElementById("filters");
    const chosen = {};
    for (const name of ["language", "kind", "label", "round", "reason", "decision"]) chosen[name] = form.elements[name].value;
    chosen.q = form.elements.q.value.trim().toLowerCase();
    return chosen;
  }

  function decisionOf(sample) {
    for (const decision of state.decisions.values()) if (decision.sample === sample) return decision.decision;
    return "none";
  }

  async function applyFilters(options = {}) {
    const chosen = filterValues();
    const search = ++state.search;
    const codes = {};
    for (const name of ["language", "kind", "label", "round", "reason"]) {
      if (chosen[name] === "") continue;
      codes[name] = column(name).values.findIndex((v) => String(v) === chosen[name]);
    }
    const reviewed = new Map([...state.decisions.values()].map((d) => [d.sample, d.decision]));
    let rows = [];
    for (let sample = 0; sample < state.index.count; sample++) {
      let keep = true;
      for (const name in codes) if (column(name).rows[sample] !== codes[name]) { keep = false; break; }
      if (keep && chosen.decision) keep = (reviewed.get(sample) || "none") === chosen.decision;
      if (keep) rows.push(sample);
    }
    if (chosen.q) rows = await searchText(rows, chosen.q, search);
    if (rows === null || search !== state.search) return;  // a newer filter took over
    state.rows = rows;
    state.page = options.page || 0;
    await render();
  }

  async function searchText(rows, query, search) {
    // Preview pages are loaded a few at a time (each is a script load), then searched in memory.
    const byPage = new Map();
    for (const sample of rows) {
      const page = Math.floor(sample / state.index.page_rows);
      if (!byPage.has(page)) byPage.set(page, []);
      byPage.get(page).push(sample);
    }
    const pages = [...byPage.keys()];
    const found = [];
    for (let i = 0; i < pages.length; i += SEARCH_PARALLEL) {
      const batch = pages.slice(i, i + SEARCH_PARALLEL);
      const loadedPages = await Promise.all(batch.map((page) => load(pageName("p", page * state.index.page_rows))));
      if (search !== state.search) return null;
      batch.forEach((page, j) => {
        for (const sample of byPage.get(page)) {
          const row = loadedPages[j][sample % state.index.page_rows];
          if ((row.ins + "\n" + row.out + "\n" + row.id + "\n" + row.doc).toLowerCase().includes(query)) found.push(sample);
        }
      });
      setStatus(`searching… ${Math.min(i + SEARCH_PARALLEL, pages.length)} of ${pages.length} pages`);
    }
    return found;
  }

  // --- the table ------------------------------------------------------------------------------

  function setStatus(text) { document.getElementById("status").textContent = text; }

  async function render() {
    const first = state.page * PAGE_SIZE;
    const shown = state.rows.slice(first, first + PAGE_SIZE);
    const previews = await Promise.all(shown.map(preview));
    const body = document.querySelector("#sample-table tbody");
    body.replaceChildren(...shown.map((sample, i) => sampleRow(sample, previews[i])));
    const pages = Math.max(1, Math.ceil(state.rows.length / PAGE_SIZE));
    document.getElementById("page-number").textContent = `page ${state.page + 1} of ${pages}`;
    document.getElementById("previous").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page + 1 >= pages;
    setStatus(`${state.rows.length.toLocaleString("en")} of ${state.index.count.toLocaleString("en")} samples`);
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function sampleRow(sample, row) {
    const tr = document.createElement("tr");
    const kind = value("kind", sample);
    const round = value("round", sample);
    Object.assign(tr.dataset, {sample: String(sample), id: row.id, kind, language: value("language", sample), reason: value("reason", sample)});
    const more = (text, length) => text + (length > text.length ? "…" : "");
    const number = cell(String(sample + 1));
    const open = document.createElement("button");
    open.type = "button"; open.textContent = "full"; open.className = "open";
    open.addEventListener("click", () => toggleFull(tr, sample));
    number.append(" ", open);
    tr.append(number, cell(value("language", sample)), cell(kind), cell(value("label", sample)), cell(round === -1 ? "" : String(round)),
      cell(row.reason, "reason"), cell(more(row.ins, row.ins_len), "text"), cell(more(row.out.slice(0, SHOWN_CHARS), row.out_len), "text"));
    tr.append(kind === "curated" ? reviewCell(tr, row, sample) : cell(""));
    return tr;
  }

  function reviewCell(tr, row, sample) {
    const td = document.createElement("td");
    td.className = "review";
    const current = state.decisions.get(row.id);
    const note = document.createElement("input");
    note.type = "text"; note.placeholder = "note"; note.className = "note"; note.value = current ? current.note : "";
    for (const decision of ["accept", "veto"]) {
      const button = document.createElement("button");
      button.type = "button"; button.textContent = decision; button.className = decision;
      button.addEventListener("click", () => decide(tr, row, sample, decision, note.value));
      td.append(button);
    }
    note.addEventListener("change", () => { const d = state.decisions.get(row.id); if (d) decide(tr, row, sample, d.decision, note.value); });
    td.append(note);
    if (current) tr.classList.add(`decision-${current.decision}`);
    return td;
  }

  async function toggleFull(tr, sample) {
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("full")) { next.remove(); return; }
    const full = await fullText(sample);
    const row = document.createElement("tr");
    row.className = "full";
    const td = document.createElement("td");
    td.colSpan = 9;
    const block = (title, text) => { const h = document.createElement("h4"); h.textContent = title; const p = document.createElement("pre"); p.textContent = text; return [h, p]; };
    td.append(...block("instruction", full.ins), ...block("response", full.out),
      ...block("source", `${full.source} ${full.url}`.trim()), ...block(value("kind", sample) === "curated" ? "provenance" : "detail", JSON.stringify(full.details, null, 2)));
    row.append(td);
    tr.after(row);
  }

  // --- review ---------------------------------------------------------------------------------

  function decide(tr, row, sample, decision, note) {
    state.decisions.set(row.id, {id: row.id, language: value("language", sample), decision, note: note || "", sample});
    tr.classList.remove("decision-accept", "decision-veto");
    tr.classList.add(`decision-${decision}`);
    saveDecisions();
  }

  function saveDecisions() {
    localStorage.setItem(storageKey, JSON.stringify([...state.decisions.values()]));
    const vetoed = [...state.decisions.values()].filter((d) => d.decision === "veto").length;
    document.getElementById("review-count").textContent = `${state.decisions.size} decisions (${vetoed} vetoed)`;
  }

  function reviewJsonl() {
    return [...state.decisions.values()]
      .map(({id, language, decision, note}) => JSON.stringify({id, language, decision, note}))
      .join("\n") + (state.decisions.size ? "\n" : "");
  }

  function downloadReview() {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([reviewJsonl()], {type: "application/x-ndjson"}));
    link.download = "review.jsonl";
    document.body.append(link);
    link.click();
    link.remove();
  }

  function restoreDecisions() {
    try {
      for (const d of JSON.parse(localStorage.getItem(storageKey) || "[]")) state.decisions.set(d.id, d);
    } catch (error) {
      console.warn("stored review decisions are unreadable; starting empty", error);
    }
    saveDecisions();
  }

  // --- links from the other sections, the cost projection -------------------------------------

  function showReason(language, reason) {
    const form = document.getElementById("filters");
    form.reset();
    form.elements.language.value = language;
    form.elements.reason.value = reason;
    return applyFilters();
  }

  async function showSample(sample) {
    document.getElementById("filters").reset();
    await applyFilters({page: Math.floor(sample / PAGE_SIZE)});
  }

  function updateProjection() {
    const tokens = Number(document.getElementById("projection").dataset.tokens);
    const throughput = Number(document.getElementById("throughput").value);
    const hours = tokens && throughput > 0 ? tokens / throughput / 3600 : null;
    document.getElementById("gpu-hours").textContent = hours === null ? "–" : hours.toLocaleString("en", {maximumFractionDigits: 1});
  }

  async function start() {
    updateProjection();
    document.getElementById("throughput").addEventListener("input", updateProjection);
    document.querySelectorAll("a.show-reason").forEach((a) => a.addEventListener("click", () => showReason(a.dataset.language, a.dataset.reason)));
    document.querySelectorAll("a.show-sample").forEach((a) => a.addEventListener("click", () => showSample(Number(a.dataset.sample))));
    document.getElementById("previous").addEventListener("click", () => { state.page--; render(); });
    document.getElementById("next").addEventListener("click", () => { state.page++; render(); });
    document.getElementById("download-review").addEventListener("click", downloadReview);
    document.getElementById("clear-review").addEventListener("click", () => {
      state.decisions.clear(); saveDecisions();
      document.querySelectorAll("#sample-table tr").forEach((tr) => tr.classList.remove("decision-accept", "decision-veto"));
    });
    try {
      state.index = await load("index");
      fillFilters();
      restoreDecisions();
      await applyFilters();
      document.body.dataset.ready = "true";
    } catch (error) {
      setStatus(`The sample data could not be loaded: ${error.message}. Keep index.html beside its data/ folder.`);
      throw error;
    }
  }

  document.addEventListener("DOMContentLoaded", start);
  return {receive, load, reviewJsonl, showReason, state};
})();
