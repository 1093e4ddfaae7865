// tests/console/browser_test.js URL SCREENSHOT — Debian's chromium, headless,
// driven by playwright-core (no downloaded browser): loads the console,
// waits until a chart has received live points, evaluates an expression in
// the REPL box, checks what a person would see, saves a screenshot. TAP out.
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

const [url, shot] = process.argv.slice(2);
let n = 0, failed = 0;
function check(desc, cond, detail) {
  n++;
  if (cond) console.log(`ok ${n} - ${desc}`);
  else { failed++; console.log(`not ok ${n} - ${desc}`); if (detail) console.log(`#   ${detail}`); }
}

(async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'lume-chromium-'));
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1280, height: 1000 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    const external = [];
    page.on('request', (r) => { if (!r.url().startsWith(new URL(url).origin)) external.push(r.url()); });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const resp = await page.goto(url);
    check('the page loads (200)', resp && resp.status() === 200, resp && resp.status());
    await page.waitForFunction(() => document.querySelectorAll('.chart').length > 0, null, { timeout: 10000 });
    const charts = await page.$$eval('.chart', (els) => els.map((e) => e.dataset.sensor));
    check('a chart for every sensor', charts.length >= 1, JSON.stringify(charts));
    await page.waitForFunction(() => [...document.querySelectorAll('.chart')]
      .some((e) => +e.dataset.points >= 20), null, { timeout: 15000 });
    const pts = await page.$$eval('.chart', (els) => els.map((e) => +e.dataset.points));
    check('charts have received live points', pts.some((p) => p >= 20), JSON.stringify(pts));
    // something drawn: the canvas is not blank
    const inked = await page.$eval('.chart canvas', (c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let k = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) k++;
      return k;
    });
    check('the first chart has ink on its canvas', inked > 100, `${inked} pixels`);
    await page.waitForFunction(() => document.querySelector('#scripts').rows.length > 1, null, { timeout: 10000 });
    const scripts = await page.$eval('#scripts', (t) => t.innerText);
    check('the scripts table lists the running scripts', /rules/.test(scripts) && /running/.test(scripts), scripts);
    const outbox = await page.$eval('#outbox', (t) => t.innerText);
    check('the outbox table shows its lanes', /telemetry|alarm|bulk/.test(outbox), outbox);
    const log = await page.$eval('#log', (e) => e.innerText);
    check('the log tail shows the runtime log', /loaded/.test(log), log.slice(0, 200));
    await page.fill('#repl-in', 'return 6 * 7');
    await page.press('#repl-in', 'Enter');
    await page.waitForFunction(() => /\b42\b/.test(document.querySelector('#repl-out').innerText), null, { timeout: 10000 })
      .catch(() => {});
    const out = await page.$eval('#repl-out', (e) => e.innerText);
    check('the REPL box evaluates 6 * 7 to 42', /^42$/m.test(out), out);
    await page.fill('#repl-in', "lume.sensor('" + charts[0] + "'):read()");
    await page.press('#repl-in', 'Enter');
    await page.waitForTimeout(500);
    check('no script error on the page', errors.length === 0, errors.join('; '));
    check('nothing fetched from another host (works offline)', external.length === 0, external.join(' '));
    await page.waitForTimeout(1500);     // a little more history on the charts
    await page.screenshot({ path: shot, fullPage: true });
    check('a screenshot was saved', fs.existsSync(shot) && fs.statSync(shot).size > 10000, shot);
  } catch (e) {
    check('the browser test ran to its end', false, String(e).split('\n')[0]);
  } finally {
    if (ctx) await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(`# ${n} checks, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
