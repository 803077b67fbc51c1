/* dwdaemon's web page: plain JavaScript over the daemon's own APIs (QIDO-RS, WADO-RS rendered
 * and thumbnails, STOW-RS, the core REST API, /dicom-web/servers and /jobs). No build step. */
"use strict";

const state = { config: null, servers: [], jobsTimer: null, view: null };
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/* ---------- small helpers ---------- */

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function dw(path) { return state.config.DicomWebRoot + path.replace(/^\//, ""); }

function notify(message, kind = "error") {
  const box = $("#notice");
  box.replaceChildren(el("span", { text: message }),
    el("button", { type: "button", class: "close", "aria-label": "Dismiss", text: "×",
                   onclick: () => { box.hidden = true; } }));
  box.className = "notice " + kind;
  box.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 10000 : 4000);
}

/* An error message from an answer: Orthanc-style JSON ("Message"), else the status line. */
async function errorOf(resp) {
  let text = "";
  try { text = await resp.text(); } catch (e) { /* ignore */ }
  try {
    const doc = JSON.parse(text);
    if (doc && doc.Message) return `${resp.status}: ${doc.Message}`;
  } catch (e) { /* not JSON */ }
  return `${resp.status} ${resp.statusText}`.trim();
}

async function api(path, options = {}) {
  const resp = await fetch(path, { credentials: "same-origin", ...options });
  if (!resp.ok) throw new Error(await errorOf(resp));
  const type = resp.headers.get("Content-Type") || "";
  if (resp.status === 204) return null;
  return type.includes("json") ? resp.json() : resp.text();
}

function postJson(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                     body: JSON.stringify(body) });
}

/* DICOM JSON accessors. */
function val(ds, tag) {
  const e = ds && ds[tag];
  if (!e || !e.Value || !e.Value.length) return "";
  const v = e.Value[0];
  if (e.vr === "PN") return (v && (v.Alphabetic || v.Ideographic || v.Phonetic)) || "";
  return v;
}
function vals(ds, tag) { const e = ds && ds[tag]; return e && e.Value ? e.Value : []; }
const T = {
  PatientName: "00100010", PatientID: "00100020", PatientBirthDate: "00100030",
  PatientSex: "00100040", StudyDate: "00080020", StudyTime: "00080030",
  StudyDescription: "00081030", AccessionNumber: "00080050", ModalitiesInStudy: "00080061",
  StudyInstanceUID: "0020000D", SeriesInstanceUID: "0020000E", SOPInstanceUID: "00080018",
  Modality: "00080060", SeriesDescription: "0008103E", SeriesNumber: "00200011",
  InstanceNumber: "00200013", NumberOfFrames: "00280008", ReferringPhysicianName: "00080090",
  NumberOfStudyRelatedSeries: "00201206", NumberOfStudyRelatedInstances: "00201208",
  NumberOfSeriesRelatedInstances: "00201209", StudyID: "00200010", Rows: "00280010",
  Columns: "00280011", SOPClassUID: "00080016", BodyPartExamined: "00180015",
};

function fmtName(pn) { return String(pn || "").replace(/\^+$/, "").replace(/\^/g, ", ").replace(/=.*/, ""); }
function fmtDate(da) {
  const s = String(da || "");
  return /^\d{8}$/.test(s) ? `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}` : s;
}
function plural(n, word) { return `${n} ${word}${Number(n) === 1 ? "" : "s"}`; }
function fmtSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1048576).toFixed(1)} MB`;
}
function toDa(isoDate) { return isoDate ? isoDate.replace(/-/g, "") : ""; }
function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === "" || v === null || v === undefined) continue;
    dl.append(el("div", {}, el("dt", { text: k }), el("dd", { text: String(v) })));
  }
}
function progressBar(fraction, label) {
  const pct = Math.max(0, Math.min(100, Math.round(fraction * 100)));
  const fill = el("span");
  fill.style.width = `${pct}%`; // CSSOM: the page's CSP forbids style attributes
  return el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0",
                     "aria-valuemax": "100", "aria-valuenow": String(pct),
                     "aria-label": label || "progress" }, fill, el("em", { text: `${pct}%` }));
}
/* A preview image; a failure shows a neutral placeholder, never a broken-image icon. */
function preview(src, alt) {
  const img = el("img", { src, alt, loading: "lazy", decoding: "async" });
  img.addEventListener("error", () => img.replaceWith(el("div", { class: "noimg", text: "no preview" })));
  return img;
}

/* QIDO arguments from a search form. A name without wildcards is searched with our fuzzy
 * matching (each word starts a word of the name; case and accents ignored) when `fuzzy`, else
 * as `*name*`; IDs and accession numbers are prefixes; dates become a DA range. */
function qidoArgs(form, fuzzy = false) {
  const data = new FormData(form);
  const args = {};
  for (const key of ["PatientName", "PatientID", "AccessionNumber"]) {
    let v = (data.get(key) || "").trim();
    if (!v) continue;
    if (key === "PatientName" && fuzzy && !/[*?]/.test(v)) args.fuzzymatching = "true";
    else if (!/[*?]/.test(v)) v = key === "PatientName" ? `*${v}*` : `${v}*`;
    args[key] = v;
  }
  const from = toDa(data.get("from")), to = toDa(data.get("to"));
  if (from || to) args.StudyDate = from === to ? from : `${from}-${to}`;
  const modality = data.get("Modality");
  if (modality) args.ModalitiesInStudy = modality;
  return args;
}

/* ---------- routing ---------- */

function show(templateId) {
  const main = $("#main");
  main.replaceChildren($(templateId).content.cloneNode(true));
  return main.firstElementChild;
}

function route() {
  clearInterval(state.jobsTimer);
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [name, ...rest] = hash.split("/");
  for (const a of $$("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === (name || "studies") ||
                                 (a.dataset.nav === "studies" && ["study", "series"].includes(name)));
    if (a.classList.contains("active")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  state.view = name || "studies";
  const views = { studies: viewStudies, study: viewStudy, series: viewSeries, upload: viewUpload,
                  servers: viewServers, jobs: viewJobs };
  (views[name] || viewStudies)(...rest);
}

/* ---------- studies ---------- */

function viewStudies() {
  const view = show("#tpl-studies");
  const form = $("#search-form", view);
  const saved = JSON.parse(sessionStorage.getItem("dw-search") || "{}");
  for (const [k, v] of Object.entries(saved)) if (form.elements[k]) form.elements[k].value = v;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    sessionStorage.setItem("dw-search", JSON.stringify(values));
    searchStudies(form);
  });
  form.addEventListener("reset", () => {
    sessionStorage.removeItem("dw-search");
    setTimeout(() => searchStudies(form), 0);
  });
  searchStudies(form);
  $("#q-name", view).focus();
}

async function searchStudies(form) {
  const tbody = $("#studies-table tbody");
  const count = $("#result-count");
  if (!state.config.DicomWebEnabled) {
    count.textContent = "DICOMweb is disabled on this server (DicomWeb.Enable): nothing to search.";
    return;
  }
  const args = new URLSearchParams({ ...qidoArgs(form, true), limit: "200",
    includefield: "PatientBirthDate" });
  count.textContent = "Searching…";
  let studies;
  try {
    const resp = await fetch(dw("studies") + "?" + args, { headers: { Accept: "application/dicom+json" } });
    if (!resp.ok) throw new Error(await errorOf(resp));
    studies = resp.status === 204 ? [] : await resp.json();
    const more = (resp.headers.get("Warning") || "").includes("more results");
    count.textContent = `${studies.length} ${studies.length === 1 ? "study" : "studies"}` +
      (more ? " (first page; refine the search)" : "");
  } catch (e) {
    count.textContent = "";
    notify(`Search failed: ${e.message}`);
    return;
  }
  studies.sort((a, b) => String(val(b, T.StudyDate)).localeCompare(String(val(a, T.StudyDate))));
  tbody.replaceChildren(...studies.map((s) => {
    const uid = val(s, T.StudyInstanceUID);
    const href = `#/study/${encodeURIComponent(uid)}`;
    const row = el("tr", { tabindex: "0", "data-uid": uid, class: "link-row" },
      el("td", {}, el("a", { href, tabindex: "-1", text: fmtName(val(s, T.PatientName)) || "(no name)" })),
      el("td", { text: val(s, T.PatientID) }),
      el("td", { text: fmtDate(val(s, T.PatientBirthDate)) }),
      el("td", { text: fmtDate(val(s, T.StudyDate)) }),
      el("td", { text: val(s, T.StudyDescription) }),
      el("td", { text: vals(s, T.ModalitiesInStudy).join(", ") }),
      el("td", { text: val(s, T.AccessionNumber) }),
      el("td", { class: "strip", "data-study": uid }),
      el("td", { class: "num", text: val(s, T.NumberOfStudyRelatedSeries) }),
      el("td", { class: "num", text: val(s, T.NumberOfStudyRelatedInstances) }));
    row.addEventListener("click", (ev) => { if (ev.target.tagName !== "A") location.hash = href; });
    row.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") location.hash = href;
      else if (ev.key === "ArrowDown" && row.nextElementSibling) { ev.preventDefault(); row.nextElementSibling.focus(); }
      else if (ev.key === "ArrowUp" && row.previousElementSibling) { ev.preventDefault(); row.previousElementSibling.focus(); }
    });
    return row;
  }));
  if (!studies.length) {
    tbody.append(el("tr", {}, el("td", { colspan: "10", class: "empty", text: "No study matches." })));
  }
  watchStrips(tbody);
}

/* Series thumbnails of the study rows, loaded when a row scrolls into view. */
const STRIP_MAX = 6;
function watchStrips(tbody) {
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      fillStrip(entry.target);
    }
  }, { rootMargin: "200px" });
  for (const cell of $$("td.strip", tbody)) observer.observe(cell);
}

async function fillStrip(cell) {
  const uid = cell.dataset.study;
  let series;
  try { series = await api(dw(`studies/${encodeURIComponent(uid)}/series`)); } catch (e) { return; }
  series = (series || []).sort((a, b) => Number(val(a, T.SeriesNumber) || 0) - Number(val(b, T.SeriesNumber) || 0));
  cell.replaceChildren(...series.slice(0, STRIP_MAX).map((se) => {
    const img = preview(dw(`studies/${uid}/series/${val(se, T.SeriesInstanceUID)}/thumbnail?viewport=64,64`),
      `${val(se, T.Modality)} series ${val(se, T.SeriesNumber)}`);
    img.title = `${val(se, T.SeriesDescription) || "(no description)"} · ${plural(val(se, T.NumberOfSeriesRelatedInstances), "image")}`;
    return img;
  }));
  if (series.length > STRIP_MAX) cell.append(el("span", { class: "more", text: `+${series.length - STRIP_MAX}` }));
}

async function studyDataset(uid) {
  const list = await api(dw("studies") + "?" + new URLSearchParams({
    StudyInstanceUID: uid, includefield: "PatientBirthDate,PatientSex,ReferringPhysicianName" }));
  if (!list || !list.length) throw new Error("this study is not stored (any more)");
  return list[0];
}

async function viewStudy(uid) {
  const view = show("#tpl-study");
  let study, series;
  try {
    [study, series] = await Promise.all([studyDataset(uid),
      api(dw(`studies/${encodeURIComponent(uid)}/series`))]);
  } catch (e) {
    notify(`Cannot open the study: ${e.message}`);
    return;
  }
  const patientId = val(study, T.PatientID);
  const title = val(study, T.StudyDescription) || "(no description)";
  $(".crumb-study", view).textContent = `${fmtName(val(study, T.PatientName))} · ${title}`;
  $(".title", view).textContent = title;
  facts($(".facts", view), [
    ["Patient", fmtName(val(study, T.PatientName))], ["Patient ID", patientId],
    ["Birth date", fmtDate(val(study, T.PatientBirthDate))], ["Sex", val(study, T.PatientSex)],
    ["Study date", fmtDate(val(study, T.StudyDate))], ["Accession", val(study, T.AccessionNumber)],
    ["Referring", fmtName(val(study, T.ReferringPhysicianName))],
    ["Instances", val(study, T.NumberOfStudyRelatedInstances)], ["Study UID", uid]]);
  const viewer = $(".viewer-link", view);
  if (state.config.ViewerUrl) {
    viewer.href = state.config.ViewerUrl.replaceAll("{StudyInstanceUID}", encodeURIComponent(uid));
    viewer.hidden = false;
  }
  setupSendTo(view, orthancId(patientId, uid), title);
  $(".delete-study", view).disabled = false;
  $(".delete-study", view).addEventListener("click", async () => {
    const ok = await confirmDialog("Delete study",
      `Delete the study “${title}” of ${fmtName(val(study, T.PatientName)) || "(no name)"} ` +
      `(${plural(val(study, T.NumberOfStudyRelatedInstances), "instance")}) from this server? This cannot be undone.`);
    if (!ok) return;
    try {
      await api(`/studies/${orthancId(patientId, uid)}`, { method: "DELETE" });
      notify("Study deleted.", "ok");
      location.hash = "#/studies";
    } catch (e) { notify(`Delete failed: ${e.message}`); }
  });
  series.sort((a, b) => Number(val(a, T.SeriesNumber) || 0) - Number(val(b, T.SeriesNumber) || 0));
  $(".series-cards", view).replaceChildren(...series.map((s) => {
    const se = val(s, T.SeriesInstanceUID);
    const href = `#/series/${encodeURIComponent(uid)}/${encodeURIComponent(se)}`;
    const n = val(s, T.NumberOfSeriesRelatedInstances);
    return el("li", {}, el("a", { href, class: "card" },
      preview(dw(`studies/${uid}/series/${se}/thumbnail`), `Series ${val(s, T.SeriesNumber)}`),
      el("span", { class: "card-title", text: val(s, T.SeriesDescription) || "(no description)" }),
      el("span", { class: "card-sub",
        text: `${val(s, T.Modality)} · #${val(s, T.SeriesNumber) || "?"} · ${plural(n, "image")}` })));
  }));
  const first = $(".series-cards a", view);
  if (first) first.focus();
}

function setupSendTo(view, resourceId, title) {
  const select = $("#send-server", view);
  const box = $(".send-to", view);
  if (!state.servers.length) { box.hidden = true; return; }
  select.replaceChildren(...state.servers.map((s) => el("option", { value: s, text: s })));
  $(".send-button", view).disabled = false;
  $(".send-button", view).addEventListener("click", async () => {
    const server = select.value;
    try {
      const job = await postJson(dw(`servers/${encodeURIComponent(server)}/stow`),
        { Resources: [resourceId], Synchronous: false });
      notify(`Sending “${title}” to ${server}: job ${job.ID}. See Jobs.`, "ok");
      refreshJobsBadge();
    } catch (e) { notify(`Send to ${server} failed: ${e.message}`); }
  });
}

/* ---------- series and instances ---------- */

async function viewSeries(studyUid, seriesUid) {
  const view = show("#tpl-series");
  let study, seriesList, instances;
  try {
    [study, seriesList, instances] = await Promise.all([studyDataset(studyUid),
      api(dw(`studies/${studyUid}/series?SeriesInstanceUID=${encodeURIComponent(seriesUid)}`)),
      api(dw(`studies/${studyUid}/series/${seriesUid}/instances?includefield=NumberOfFrames,Rows,Columns`))]);
  } catch (e) {
    notify(`Cannot open the series: ${e.message}`);
    return;
  }
  const series = (seriesList && seriesList[0]) || {};
  const patientId = val(study, T.PatientID);
  const crumb = $("a.crumb-study", view);
  crumb.href = `#/study/${encodeURIComponent(studyUid)}`;
  crumb.textContent = `${fmtName(val(study, T.PatientName))} · ${val(study, T.StudyDescription) || "(no description)"}`;
  const title = val(series, T.SeriesDescription) || "(no description)";
  $(".crumb-series", view).textContent = title;
  $(".title", view).textContent = title;
  facts($(".facts", view), [["Modality", val(series, T.Modality)],
    ["Series number", val(series, T.SeriesNumber)], ["Instances", (instances || []).length],
    ["Series UID", seriesUid]]);
  $(".delete-series", view).disabled = false;
  $(".delete-series", view).addEventListener("click", async () => {
    const ok = await confirmDialog("Delete series",
      `Delete the series “${title}” (${plural((instances || []).length, "instance")})? This cannot be undone.`);
    if (!ok) return;
    try {
      await api(`/series/${orthancId(patientId, studyUid, seriesUid)}`, { method: "DELETE" });
      notify("Series deleted.", "ok");
      location.hash = `#/study/${encodeURIComponent(studyUid)}`;
    } catch (e) { notify(`Delete failed: ${e.message}`); }
  });
  instances = instances || [];
  instances.sort((a, b) => Number(val(a, T.InstanceNumber) || 0) - Number(val(b, T.InstanceNumber) || 0));
  const base = (i) => dw(`studies/${studyUid}/series/${seriesUid}/instances/${val(i, T.SOPInstanceUID)}`);
  const cards = instances.map((inst, index) => {
    const a = el("a", { href: "#", class: "card", "data-index": String(index) },
      preview(base(inst) + "/thumbnail", `Instance ${val(inst, T.InstanceNumber)}`),
      el("span", { class: "card-sub", text: `#${val(inst, T.InstanceNumber) || index + 1}` +
        (Number(val(inst, T.NumberOfFrames)) > 1 ? ` · ${val(inst, T.NumberOfFrames)} frames` : "") }));
    a.addEventListener("click", (ev) => { ev.preventDefault(); select(index); });
    return el("li", {}, a);
  });
  $(".instance-cards", view).replaceChildren(...cards);
  let current = -1;
  let frame = 1;
  const img = $(".preview-img", view);
  const label = $(".preview-label", view);
  function frames(inst) { return Number(val(inst, T.NumberOfFrames)) || 1; }
  function showFrame(n) {
    const inst = instances[current];
    const count = frames(inst);
    if (n < 1 || n > count) return;
    frame = n;
    img.src = count > 1 ? `${base(inst)}/frames/${n}/rendered` : `${base(inst)}/rendered`;
    label.textContent = `Instance ${val(inst, T.InstanceNumber) || current + 1} of ${instances.length}` +
      (count > 1 ? ` · frame ${n} of ${count} (PgUp/PgDn)` : "");
  }
  function select(index) {
    if (index < 0 || index >= instances.length) return;
    current = index;
    const inst = instances[index];
    for (const c of $$(".instance-cards .card", view)) c.classList.toggle("selected", c.dataset.index === String(index));
    const card = $(`.instance-cards .card[data-index="${index}"]`, view);
    const list = card.closest("ul");
    const top = card.offsetTop - list.offsetTop;
    if (top < list.scrollTop || top + card.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = top - 8;
    }
    img.alt = `Instance ${val(inst, T.InstanceNumber)}`;
    showFrame(1);
    const download = $(".download", view);
    download.href = `/instances/${orthancId(patientId, studyUid, seriesUid, val(inst, T.SOPInstanceUID))}/file`;
    download.hidden = false;
    facts($(".tags", view), [["Rows × Columns", val(inst, T.Rows) ? `${val(inst, T.Rows)} × ${val(inst, T.Columns)}` : ""],
      ["Frames", val(inst, T.NumberOfFrames)], ["SOP Instance UID", val(inst, T.SOPInstanceUID)]]);
  }
  img.addEventListener("error", () => { label.textContent = "This instance has no image the server can render."; });
  $(".prev", view).addEventListener("click", () => select(current - 1));
  $(".next", view).addEventListener("click", () => select(current + 1));
  view.addEventListener("keydown", (ev) => {
    if (ev.target.matches("input, select, textarea")) return;
    if (ev.key === "ArrowRight" || ev.key === "ArrowDown") { ev.preventDefault(); select(current + 1); }
    if (ev.key === "ArrowLeft" || ev.key === "ArrowUp") { ev.preventDefault(); select(current - 1); }
    if (ev.key === "PageDown") { ev.preventDefault(); showFrame(frame + 1); }
    if (ev.key === "PageUp") { ev.preventDefault(); showFrame(frame - 1); }
    if (ev.key === "Home") { ev.preventDefault(); select(0); }
    if (ev.key === "End") { ev.preventDefault(); select(instances.length - 1); }
  });
  view.tabIndex = -1;
  view.focus({ preventScroll: true });
  select(0);
}

/* ---------- upload (STOW-RS, one request per file) ---------- */

const upload = { queue: [], running: 0, rows: new Map(), done: 0, failed: 0 };

function viewUpload() {
  const view = show("#tpl-upload");
  $(".stow-url", view).textContent = dw("studies");
  const zone = $("#dropzone", view);
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    const files = await droppedFiles(ev.dataTransfer);
    enqueue(files);
  });
  zone.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("#pick-files").click(); }
  });
  for (const id of ["#pick-files", "#pick-folder"]) {
    $(id, view).addEventListener("change", (ev) => {
      enqueue(Array.from(ev.target.files).map((f) => ({ file: f, path: f.webkitRelativePath || f.name })));
      ev.target.value = "";
    });
  }
  $("#upload-clear", view).addEventListener("click", () => {
    for (const [key, row] of upload.rows) if (row.dataset.done) { row.remove(); upload.rows.delete(key); }
    upload.done = 0; upload.failed = 0; summary();
  });
  const tbody = $("#upload-table tbody", view);
  for (const row of upload.rows.values()) tbody.append(row);
  summary();
}

/* Files of a drop, folders walked recursively. */
async function droppedFiles(dt) {
  const entries = Array.from(dt.items || []).map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return Array.from(dt.files).map((f) => ({ file: f, path: f.name }));
  const out = [];
  async function walk(entry, prefix) {
    if (entry.isFile) {
      const file = await new Promise((ok, ko) => entry.file(ok, ko));
      out.push({ file, path: prefix + file.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, ko) => reader.readEntries(ok, ko));
        if (!batch.length) break;
        for (const e of batch) await walk(e, prefix + entry.name + "/");
      }
    }
  }
  for (const e of entries) await walk(e, "");
  return out;
}

let uploadSeq = 0;
function enqueue(items) {
  const tbody = $("#upload-table tbody");
  for (const item of items) {
    if (item.file.name.startsWith(".") || item.file.name === "DICOMDIR") continue;
    const key = `u${++uploadSeq}`;
    const row = el("tr", { "data-key": key },
      el("td", { class: "file", text: item.path, title: item.path }),
      el("td", { class: "num", text: fmtSize(item.file.size) }),
      el("td", { class: "progress-col" }, progressBar(0, `upload of ${item.path}`)),
      el("td", { class: "result muted", text: "Waiting" }));
    upload.rows.set(key, row);
    if (tbody) tbody.append(row);
    upload.queue.push({ ...item, key });
  }
  summary();
  pump();
}

function summary() {
  const box = $("#upload-summary");
  if (!box) return;
  const waiting = upload.queue.length + upload.running;
  box.textContent = upload.rows.size ? `${upload.done} stored, ${upload.failed} refused` +
    (waiting ? `, ${waiting} to go` : "") : "";
}

function pump() {
  while (upload.running < 2 && upload.queue.length) {
    const item = upload.queue.shift();
    upload.running++;
    sendFile(item).finally(() => { upload.running--; summary(); pump(); });
  }
}

/* The outcome of one STOW answer for one file: [ok, message, studyUid]. */
function stowOutcome(status, doc) {
  const ds = Array.isArray(doc) ? doc[0] : doc;
  const failed = vals(ds, "00081198");
  const stored = vals(ds, "00081199");
  const reasons = { 0xC000: "not a DICOM file the server understands", 0xA700: "server out of resources (disk full)",
    0xA900: "belongs to another study", 0xC122: "transfer syntax not supported", 0x0110: "processing failure" };
  if (stored.length && !failed.length) {
    const url = String(val(ds, "00081190") || "");
    const m = url.match(/studies\/([^/]+)$/);
    return [true, status === 202 ? "Stored with warnings" : "Stored", m ? decodeURIComponent(m[1]) : ""];
  }
  if (failed.length) {
    const code = Number(val(failed[0], "00081197"));
    const hex = "0x" + code.toString(16).toUpperCase().padStart(4, "0");
    return [false, `Refused: ${reasons[code] || "failure"} (${hex})`, ""];
  }
  return [false, `Refused (HTTP ${status})`, ""];
}

function sendFile(item) {
  return new Promise((resolve) => {
    const row = upload.rows.get(item.key);
    const cell = () => $(".progress-col", row);
    const result = () => $(".result", row);
    const boundary = "dwdaemon-" + Math.random().toString(36).slice(2) + Date.now().toString(36);
    const body = new Blob([`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, item.file,
                           `\r\n--${boundary}--\r\n`]);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", dw("studies"));
    xhr.setRequestHeader("Content-Type", `multipart/related; type="application/dicom"; boundary=${boundary}`);
    xhr.setRequestHeader("Accept", "application/dicom+json");
    result().textContent = "Sending…";
    xhr.upload.onprogress = (ev) => {
      if (!ev.lengthComputable) return;
      cell().replaceChildren(progressBar(ev.loaded / ev.total, `upload of ${item.path}`));
      if (ev.loaded === ev.total) result().textContent = "Sent; the server is storing it…";
    };
    const finish = (ok, message, studyUid) => {
      row.dataset.done = "1";
      row.classList.add(ok ? "ok" : "failed");
      cell().replaceChildren(progressBar(1, `upload of ${item.path}`));
      const r = result();
      r.className = "result " + (ok ? "ok" : "failed");
      r.replaceChildren(el("span", { text: message }));
      if (studyUid) r.append(" ", el("a", { href: `#/study/${encodeURIComponent(studyUid)}`, text: "open study" }));
      if (ok) upload.done++; else upload.failed++;
      resolve();
    };
    xhr.onload = () => {
      let doc = null;
      try { doc = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status === 200 || xhr.status === 202 || (xhr.status === 409 && doc && !doc.Message)) {
        finish(...stowOutcome(xhr.status, doc));
      } else {
        finish(false, `Refused: ${(doc && doc.Message) || xhr.statusText || "error"} (HTTP ${xhr.status})`);
      }
    };
    xhr.onerror = () => finish(false, "Network error: the server could not be reached");
    xhr.send(body);
  });
}

/* ---------- remote servers ---------- */

async function loadServers() {
  if (!state.config.DicomWebEnabled) { state.servers = []; return; }
  try { state.servers = await api(dw("servers")); } catch (e) { state.servers = []; }
}

async function viewServers() {
  const view = show("#tpl-servers");
  let servers;
  try { servers = await api(dw("servers?expand")); } catch (e) { notify(`Cannot list servers: ${e.message}`); return; }
  const names = Object.keys(servers || {}).sort();
  state.servers = names;
  const tbody = $("#servers-table tbody", view);
  tbody.replaceChildren(...names.map((name) => el("tr", {},
    el("td", { text: name }), el("td", { text: servers[name].Url || "" }),
    el("td", { text: servers[name].Username || "" }),
    el("td", {}, el("button", { type: "button", text: "Browse / retrieve", onclick: () => openRemote(view, name) })))));
  if (!names.length) tbody.append(el("tr", {}, el("td", { colspan: "4", class: "empty", text: "No remote server is configured." })));
}

function openRemote(view, name) {
  const box = $("#remote", view);
  box.hidden = false;
  $(".remote-name", box).textContent = name;
  const form = $("#remote-form", box);
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const tbody = $("#remote-table tbody", box);
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "empty", text: "Searching…" })));
    let studies;
    try {
      studies = await postJson(dw(`servers/${encodeURIComponent(name)}/qido`),
        { Uri: "/studies", Arguments: { ...qidoArgs(form), limit: "100" } });
    } catch (e) {
      tbody.replaceChildren();
      notify(`Search on ${name} failed: ${e.message}`);
      return;
    }
    studies = studies || [];
    tbody.replaceChildren(...studies.map((s) => {
      const uid = val(s, T.StudyInstanceUID);
      return el("tr", {}, el("td", { text: fmtName(val(s, T.PatientName)) }), el("td", { text: val(s, T.PatientID) }),
        el("td", { text: fmtDate(val(s, T.StudyDate)) }), el("td", { text: val(s, T.StudyDescription) }),
        el("td", { text: vals(s, T.ModalitiesInStudy).join(", ") }),
        el("td", { class: "num", text: val(s, T.NumberOfStudyRelatedInstances) }),
        el("td", {}, el("button", { type: "button", text: "Retrieve", onclick: async () => {
          try {
            const job = await postJson(dw(`servers/${encodeURIComponent(name)}/retrieve`),
              { Resources: [{ Study: uid }], Synchronous: false });
            notify(`Retrieving from ${name}: job ${job.ID}. See Jobs.`, "ok");
            refreshJobsBadge();
          } catch (e) { notify(`Retrieve failed: ${e.message}`); }
        } })));
    }));
    if (!studies.length) tbody.append(el("tr", {}, el("td", { colspan: "7", class: "empty", text: "No study matches." })));
  };
  form.requestSubmit();
}

/* ---------- jobs ---------- */

async function fetchJobs() { return (await api("/jobs?expand")) || []; }

function jobDetails(job) {
  const c = job.Content || {};
  const r = job.Result || {};
  const parts = [];
  if (c.Server) parts.push(`server ${c.Server}`);
  if (c.Instances !== undefined) parts.push(plural(c.Instances, "instance"));
  if (Array.isArray(c.Resources)) parts.push(plural(c.Resources.length, "resource"));
  if (r && typeof r === "object" && Array.isArray(r.Instances)) parts.push(`${r.Instances.length} received`);
  return parts.join(" · ");
}

async function viewJobs() {
  const view = show("#tpl-jobs");
  const tbody = $("#jobs-table tbody", view);
  async function refresh() {
    let jobs;
    try { jobs = await fetchJobs(); } catch (e) { notify(`Cannot list jobs: ${e.message}`); return; }
    jobs.sort((a, b) => String(b.CreationTime).localeCompare(String(a.CreationTime)));
    tbody.replaceChildren(...jobs.map((job) => {
      const running = ["Pending", "Running", "Paused", "Retry"].includes(job.State);
      return el("tr", { class: `job-${String(job.State).toLowerCase()}` },
        el("td", { class: "mono", text: String(job.ID).slice(0, 8), title: job.ID }),
        el("td", { text: job.Type }), el("td", { text: jobDetails(job) }),
        el("td", {}, el("span", { class: `state ${String(job.State).toLowerCase()}`, text: job.State }),
          job.State === "Failure" && job.ErrorDescription ? el("div", { class: "failed small", text: job.ErrorDescription }) : null),
        el("td", { class: "progress-col" }, progressBar((job.Progress || 0) / 100, `job ${job.ID}`)),
        el("td", { text: fmtTime(job.CreationTime) }), el("td", { text: fmtTime(job.CompletionTime) }),
        el("td", {}, running ? el("button", { type: "button", text: "Cancel", onclick: async () => {
          try { await api(`/jobs/${job.ID}/cancel`, { method: "POST" }); refresh(); } catch (e) { notify(e.message); }
        } }) : null));
    }));
    if (!jobs.length) tbody.append(el("tr", {}, el("td", { colspan: "8", class: "empty", text: "No job yet." })));
    setBadge(jobs);
  }
  await refresh();
  state.jobsTimer = setInterval(() => { if (state.view === "jobs" && !document.hidden) refresh(); }, 2000);
}

function fmtTime(t) {
  const m = String(t || "").match(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)/);
  return m ? `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}` : String(t || "");
}

function setBadge(jobs) {
  const n = jobs.filter((j) => ["Pending", "Running", "Retry"].includes(j.State)).length;
  const badge = $("#jobs-badge");
  badge.textContent = String(n);
  badge.hidden = n === 0;
}
async function refreshJobsBadge() { try { setBadge(await fetchJobs()); } catch (e) { /* ignore */ } }

/* ---------- dialog, keyboard, start ---------- */

function confirmDialog(title, text) {
  const dlg = $("#confirm");
  $(".confirm-title", dlg).textContent = title;
  $(".confirm-text", dlg).textContent = text;
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.returnValue = "";
    dlg.showModal();
  });
}

document.addEventListener("keydown", (ev) => {
  if (ev.target.matches("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "Escape" && !$("#confirm").open) {
    if (!$("#notice").hidden) { $("#notice").hidden = true; return; }
    const crumbs = $$(".crumbs a");
    if (crumbs.length) location.hash = crumbs[crumbs.length - 1].getAttribute("href");
    return;
  }
  if (ev.key === "/") {
    ev.preventDefault();
    if (state.view !== "studies") location.hash = "#/studies"; else $("#q-name").focus();
  }
});

function refreshStats() {
  api("/statistics").then((s) => {
    $("#stats").textContent = `${s.CountStudies} studies · ${s.CountInstances} instances · ${s.TotalDiskSizeMB} MB`;
  }).catch(() => {});
}

async function start() {
  try {
    state.config = await api("/app/config.json");
  } catch (e) {
    notify(`Cannot read the page configuration: ${e.message}`);
    return;
  }
  $("#server-name").textContent = state.config.Name;
  $("#server-version").textContent = `dwdaemon ${state.config.Version}`;
  document.title = `${state.config.Name} · dwdaemon`;
  if (!state.config.DicomWebEnabled) {
    for (const a of $$("[data-nav=upload], [data-nav=servers]")) a.hidden = true;
  }
  refreshStats();
  await loadServers();
  refreshJobsBadge();
  window.addEventListener("hashchange", () => { refreshStats(); route(); });
  route();
}

document.addEventListener("DOMContentLoaded", start);
