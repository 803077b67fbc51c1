// Drive the real OHIF viewer in Debian's Chromium (puppeteer-core) against dwdaemon.
//
//   node check_ohif.mjs VIEWER_URL STUDY_UID EXPECTED_TEXT OUT_DIR
//
// 1. opens the study list and waits for EXPECTED_TEXT (e.g. the PatientID) to show,
// 2. opens the study in the viewer and waits until the viewport shows non-blank pixels,
// saving list.png and viewer.png in OUT_DIR. Prints one JSON line: {ok, failures, ...};
// every request that fails (network/CORS error or HTTP status >= 400) is listed.
import puppeteer from 'puppeteer-core';
import path from 'node:path';

const [viewerUrl, studyUid, expected, outDir] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeout = Number(process.env.OHIF_TIMEOUT_MS || 60000);
const result = { ok: false, failures: [], consoleErrors: [], requests: 0, timings: {} };
const started = Date.now();
const mark = name => (result.timings[name] = Date.now() - started);

const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
         '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--window-size=1280,800'],
});
let page = null;
try {
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  page.on('request', () => result.requests++);
  page.on('requestfailed', r => {
    const error = r.failure()?.errorText || '';
    // Requests the page itself cancels (navigation, aborted prefetch) are not failures.
    if (error !== 'net::ERR_ABORTED') result.failures.push(`${r.method()} ${r.url()}: ${error}`);
  });
  page.on('response', r => {
    if (r.status() >= 400) result.failures.push(`${r.request().method()} ${r.url()}: ${r.status()}`);
  });
  page.on('console', m => {
    if (m.type() === 'error') result.consoleErrors.push(m.text().slice(0, 300));
  });

  // 1. Study list.
  await page.goto(viewerUrl + '/', { waitUntil: 'domcontentloaded', timeout });
  await page.waitForFunction(t => document.body.innerText.includes(t), { timeout }, expected);
  mark('studyList');
  await page.screenshot({ path: path.join(outDir, 'list.png') });

  // 2. The study in the viewer: wait for the first viewport canvas to hold an image.
  await page.goto(`${viewerUrl}/viewer?StudyInstanceUIDs=${studyUid}`,
                  { waitUntil: 'domcontentloaded', timeout });
  await page.waitForSelector('canvas.cornerstone-canvas', { timeout });
  const deadline = Date.now() + timeout;
  let stats = null;
  while (Date.now() < deadline) {
    const canvas = await page.$('canvas.cornerstone-canvas');
    const box = canvas && (await canvas.boundingBox());
    if (box && box.width > 10 && box.height > 10) {
      const png = await page.screenshot({ encoding: 'base64', clip: box });
      // Decode the screenshot in the page: share of non-black pixels, distinct grey levels.
      stats = await page.evaluate(async data => {
        const img = new Image();
        img.src = 'data:image/png;base64,' + data;
        await img.decode();
        const c = document.createElement('canvas');
        c.width = img.width;
        c.height = img.height;
        const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0);
        const px = ctx.getImageData(0, 0, c.width, c.height).data;
        let lit = 0;
        const levels = new Set();
        for (let i = 0; i < px.length; i += 4) {
          const v = (px[i] + px[i + 1] + px[i + 2]) / 3;
          if (v > 24) lit++;
          levels.add(Math.round(v));
        }
        return { width: c.width, height: c.height, litShare: lit / (px.length / 4),
                 levels: levels.size };
      }, png);
      if (stats.litShare > 0.05 && stats.levels > 32) break;
    }
    await new Promise(r => setTimeout(r, 500));
  }
  mark('viewport');
  result.viewport = stats;
  // Let the remaining requests (other slices, thumbnails) finish before judging them.
  await page.waitForNetworkIdle({ idleTime: 1000, timeout }).catch(() => {});
  mark('idle');
  // Series thumbnails in the study browser: images loaded from dwdaemon (blob: URLs).
  result.thumbnails = await page.evaluate(() => [...document.images].filter(
    img => img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0).length);
  await page.screenshot({ path: path.join(outDir, 'viewer.png') });
  result.text = (await page.evaluate(() => document.body.innerText)).slice(0, 2000);
  result.ok = Boolean(stats && stats.litShare > 0.05 && stats.levels > 32) &&
    result.failures.length === 0;
} catch (error) {
  result.error = String(error && error.stack || error);
  if (page) {
    await page.screenshot({ path: path.join(outDir, 'failed.png') }).catch(() => {});
    result.text = await page.evaluate(() => document.body.innerText.slice(0, 2000)).catch(() => '');
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
