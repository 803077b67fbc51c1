// Drive dwdaemon's web page in Debian's headless Chromium (puppeteer-core, no downloaded browser).
//
//   node webpage.mjs --url http://127.0.0.1:PORT --screens DIR --dicom FILE --bad FILE
//        [--user U --password P] [--expect-studies N] [--server NAME]
//
// Steps: study list, search, open a study (series thumbnails), open a series (rendered image),
// upload a DICOM file and a refused file, see the new study in the list, send the study to a
// remote server and see the job, delete with confirmation. Screenshots go to DIR. Prints one
// line per step; exits 1 with the failing step's message.
import fs from "node:fs";
import path from "node:path";
import puppeteer from "puppeteer-core";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
const base = args.url.replace(/\/$/, "");
const screens = args.screens;
fs.mkdirSync(screens, { recursive: true });
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const T = Number(args.timeout || 45000); // generous: CI machines and parallel test runs are slow

const failures = [];   // requests that failed or answered >= 400 (except the expected ones)
const consoleErrors = [];
let page;

function step(name) { console.log(`step: ${name}`); }
function check(cond, message) { if (!cond) throw new Error(message); }
async function shot(name) {
  await page.screenshot({ path: path.join(screens, `${name}.png`), fullPage: false });
}
async function waitText(selector, text, timeout = T) {
  await page.waitForFunction((s, t) => Array.from(document.querySelectorAll(s))
    .some((e) => e.textContent.includes(t)), { timeout }, selector, text);
}
/* Whether an <img> shows a real picture: loaded, and its pixels are not all one value. */
async function imageStats(selector) {
  return page.$eval(selector, (img) => {
    if (!img.complete || !img.naturalWidth) return { loaded: false };
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0, sq = 0, n = 0;
    for (let i = 0; i < d.length; i += 4) { const v = d[i]; sum += v; sq += v * v; n++; }
    const mean = sum / n;
    return { loaded: true, width: c.width, height: c.height, std: Math.sqrt(sq / n - mean * mean) };
  });
}

const browser = await puppeteer.launch({
  executablePath: browserPath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  defaultViewport: { width: 1366, height: 800 },
});
let status = 0;
try {
  page = await browser.newPage();
  page.setDefaultTimeout(T);
  if (args.user) await page.authenticate({ username: args.user, password: args.password });
  page.on("console", (m) => {
    // a refused upload is reported on the page; Chromium also logs its status as an error
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("requestfailed", (r) => failures.push(`${r.url()}: ${r.failure()?.errorText}`));
  const expectedErrors = new Set();
  page.on("response", (r) => {
    if (r.status() >= 400 && !expectedErrors.has(r.url())) failures.push(`${r.url()}: HTTP ${r.status()}`);
  });
  expectedErrors.add(`${base}/dicom-web/studies`); // the refused upload answers 409

  step("study list");
  const t0 = Date.now();
  await page.goto(base + "/", { waitUntil: "networkidle0" });
  await page.waitForSelector("#studies-table tbody tr.link-row");
  const rows = await page.$$eval("#studies-table tbody tr.link-row", (r) => r.length);
  if (args["expect-studies"]) check(rows === Number(args["expect-studies"]), `expected ${args["expect-studies"]} studies, saw ${rows}`);
  check(rows > 0, "no study listed");
  console.log(`  ${rows} studies listed in ${Date.now() - t0} ms`);
  await page.waitForFunction(() => {
    const imgs = Array.from(document.querySelectorAll("#studies-table td.strip img"));
    return imgs.length > 0 && imgs.every((i) => i.complete);
  }, { timeout: T });
  const strips = await page.$$eval("#studies-table td.strip img", (i) => i.filter((x) => x.naturalWidth > 0).length);
  check(strips >= rows, `series previews in the list: ${strips} for ${rows} studies`);
  await shot("01-studies");

  step("search by patient name (keyboard)");
  const firstName = await page.$eval("#studies-table tbody tr.link-row td", (td) => td.textContent);
  const word = firstName.split(/[ ,^]+/).pop(); // the most specific part of the name
  await page.keyboard.press("Escape");
  await page.click("body");
  await page.keyboard.press("/");
  check(await page.evaluate(() => document.activeElement.id === "q-name"), "'/' does not focus the search");
  await page.keyboard.type(word.toLowerCase()); // case does not matter
  await page.keyboard.press("Enter");
  await page.waitForFunction((w) => {
    const r = Array.from(document.querySelectorAll("#studies-table tbody tr.link-row"));
    return r.length > 0 && r.every((tr) => tr.cells[0].textContent.toLowerCase().includes(w.toLowerCase()));
  }, { timeout: T }, word);
  const found = await page.$$eval("#studies-table tbody tr.link-row", (r) => r.length);
  console.log(`  "${word}": ${found} studies`);
  check(found <= rows, "search did not narrow the list");
  await shot("02-search");

  step("open the study with the keyboard");
  await page.focus("#studies-table tbody tr.link-row");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".series-cards .card img, .series-cards .card .noimg");
  await page.waitForFunction(() => Array.from(document.querySelectorAll(".series-cards img"))
    .every((i) => i.complete), { timeout: T });
  const thumb = await imageStats(".series-cards .card img");
  check(thumb.loaded && thumb.std > 1, `series thumbnail blank or missing: ${JSON.stringify(thumb)}`);
  console.log(`  thumbnail ${thumb.width}x${thumb.height}, pixel std ${thumb.std.toFixed(1)}`);
  const viewerVisible = await page.$eval(".viewer-link", (a) => a.offsetParent !== null);
  if (args.viewer) {
    const href = await page.$eval(".viewer-link", (a) => a.href);
    check(viewerVisible && href.startsWith(args.viewer), `no "Open in viewer" link (${href})`);
  } else {
    check(!viewerVisible, '"Open in viewer" shown without ExplorerViewerUrl');
  }
  check(await page.$eval("#notice", (n) => n.offsetParent === null), "an empty notice is shown");
  await shot("03-study");

  step("open the series, see the rendered image");
  await page.keyboard.press("Enter"); // the first series card has the focus
  await page.waitForSelector(".preview-img[src]");
  await page.waitForFunction(() => { const i = document.querySelector(".preview-img"); return i.complete && i.naturalWidth > 0; },
    { timeout: T });
  const img = await imageStats(".preview-img");
  check(img.loaded && img.std > 1, `rendered image blank: ${JSON.stringify(img)}`);
  console.log(`  rendered ${img.width}x${img.height}, pixel std ${img.std.toFixed(1)}`);
  await shot("04-series");
  await page.keyboard.press("Escape"); // back to the study
  await page.waitForSelector(".series-cards .card");

  step("upload a DICOM file and a refused file");
  await page.goto(base + "/#/upload", { waitUntil: "networkidle0" });
  const input = await page.$("#pick-files");
  await input.uploadFile(args.dicom, args.bad);
  await page.waitForFunction(() => document.querySelectorAll("#upload-table tbody tr[data-done]").length === 2,
    { timeout: T });
  const results = await page.$$eval("#upload-table tbody tr", (r) => r.map((tr) => ({
    file: tr.cells[0].textContent, result: tr.cells[3].textContent, ok: tr.classList.contains("ok"),
    progress: tr.querySelector(".bar").getAttribute("aria-valuenow") })));
  console.log(`  ${JSON.stringify(results)}`);
  const good = results.find((r) => r.file === path.basename(args.dicom));
  const bad = results.find((r) => r.file === path.basename(args.bad));
  check(good && good.ok && good.progress === "100" && /Stored/.test(good.result), "the DICOM file was not stored");
  check(bad && !bad.ok && /Refused/.test(bad.result), "the bad file was not refused with a message");
  await shot("05-upload");

  step("drop a file on the drop zone");
  await page.evaluate(async (name) => {
    const dt = new DataTransfer();
    dt.items.add(new File(["not dicom at all"], name, { type: "text/plain" }));
    const zone = document.querySelector("#dropzone");
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, "dropped.txt");
  await waitText("#upload-table tbody tr.failed", "dropped.txt");
  console.log("  dropped file listed and refused");

  step("the uploaded study appears in the list");
  await page.click("a[data-nav=studies]");
  await page.waitForSelector("#search-clear", { visible: true, timeout: T });  // view rendered
  await page.click("#search-clear");
  await page.waitForFunction((n) => document.querySelectorAll("#studies-table tbody tr.link-row").length === n,
    { timeout: T }, rows + (args["new-study"] === "0" ? 0 : 1));
  console.log(`  ${rows + 1} studies listed`);
  if (args["new-patient"]) await waitText("#studies-table tbody td", args["new-patient"]);
  // every series preview of the list loaded (the new study's too) before the picture
  await page.waitForFunction(() => Array.from(document.querySelectorAll("#studies-table img"))
    .every((img) => img.complete && img.naturalWidth > 0), { timeout: T });
  await shot("06-after-upload");

  if (args.server) {
    step(`send the study to ${args.server}, watch the job`);
    await page.click("#studies-table tbody tr.link-row a");
    await page.waitForSelector(".send-button:not([disabled])");
    await page.select("#send-server", args.server);
    await page.click(".send-button");
    await waitText("#notice", "job");
    await page.click("a[data-nav=jobs]");
    await page.waitForSelector("#jobs-table tbody tr .state");
    await page.waitForFunction(() => Array.from(document.querySelectorAll("#jobs-table .state"))
      .some((s) => ["Success", "Failure"].includes(s.textContent)), { timeout: T });
    const jobs = await page.$$eval("#jobs-table tbody tr", (r) => r.map((tr) => tr.innerText.replace(/\s+/g, " ")));
    console.log(`  ${JSON.stringify(jobs)}`);
    await shot("07-jobs");
    await page.click("a[data-nav=servers]");
    await page.waitForSelector("#servers-table tbody tr button");
    await page.click("#servers-table tbody tr button");
    await page.waitForSelector("#remote-table tbody tr button");
    await shot("08-servers");
    await page.click("#remote-table tbody tr button"); // retrieve the first study
    await waitText("#notice", "Retrieving from");
    await page.click("a[data-nav=jobs]");
    await page.waitForFunction(() => Array.from(document.querySelectorAll("#jobs-table tbody tr"))
      .some((tr) => tr.innerText.includes("DicomWebRetrieveClient") && /Success/.test(tr.innerText)),
    { timeout: T });
    console.log("  retrieve job succeeded");
  }

  step("delete a study with confirmation");
  await page.goto(base + "/#/studies", { waitUntil: "networkidle0" });
  await page.waitForSelector("#studies-table tbody tr.link-row");
  const before = await page.$$eval("#studies-table tbody tr.link-row", (r) => r.length);
  await page.click("#studies-table tbody tr.link-row a");
  await page.waitForSelector(".delete-study:not([disabled])");
  await page.focus(".delete-study"); // with the keyboard
  await page.keyboard.press("Enter");
  await page.waitForSelector("#confirm[open]");
  check(await page.evaluate(() => document.activeElement.value === "cancel"), "Cancel is not the default");
  await shot("09-confirm-delete");
  await page.keyboard.press("Escape"); // cancel first: nothing is deleted
  await page.waitForFunction(() => !document.querySelector("#confirm").open);
  await page.click(".delete-study"); // now with the mouse
  await page.waitForSelector("#confirm[open]");
  await page.click(".confirm-ok");
  await page.waitForFunction(() => location.hash === "#/studies");
  await page.waitForFunction((n) => document.querySelectorAll("#studies-table tbody tr.link-row").length === n - 1
    || (n === 1 && document.querySelector("#studies-table .empty")), { timeout: T }, before);
  console.log(`  ${before} -> ${before - 1} studies`);

  check(consoleErrors.length === 0, `console errors: ${consoleErrors.join(" | ")}`);
  const unexpected = failures.filter((f) => !f.includes("net::ERR_ABORTED"));
  check(unexpected.length === 0, `failed requests: ${unexpected.join(" | ")}`);
  console.log("ALL OK");
} catch (e) {
  console.log(`FAILED: ${e.message}`);
  if (consoleErrors.length) console.log(`console errors: ${consoleErrors.join(" | ")}`);
  if (page) {
    console.log(await page.evaluate(() => {
      const b = document.querySelector(".delete-study");
      const r = b && b.getBoundingClientRect();
      return JSON.stringify({ hash: location.hash, dialog: document.querySelector("#confirm").open,
        at: r ? document.elementFromPoint(r.x + 5, r.y + 5)?.outerHTML.slice(0, 120) : null });
    }).catch((x) => String(x)));
  }
  if (page) await shot("zz-failure").catch(() => {});
  status = 1;
} finally {
  await browser.close();
}
process.exit(status);
