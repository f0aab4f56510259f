// Drives headless Chromium over the page of a live service (see run.sh):
// every figure checked on the page is read from the JSON API first.
// Usage: node page_test.mjs http://127.0.0.1:PORT   (FW_SHOTS: screenshot dir)
import { createRequire } from "node:module";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const base = process.argv[2].replace(/\/$/, "");
const shots = process.env.FW_SHOTS || mkdtempSync(join(tmpdir(), "fieldwatch-page-"));
const STUDY = "le-trafficking";
let passed = 0;
let failed = 0;
function check(what, ok, detail = "") {
  if (ok) { passed++; console.log(`ok: ${what}`); } else { failed++; console.log(`FAIL: ${what} ${detail}`); }
}
async function api(path) {
  const r = await fetch(`${base}/api/v1/${path}`);
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}
const pct = (x, d = 1) => `${(x * 100).toFixed(d)} %`;
const text = (page, sel) => page.locator(sel).first().innerText({ timeout: 30000 });

// A fresh user-data dir per run (playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "fieldwatch-chromium-")), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 900 },
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
  await page.goto(`${base}/`);
  await page.waitForSelector("body[data-loaded=true]", { timeout: 60000 });

  const [toplines, fieldwork, quotas, flags, quality] = await Promise.all([
    api(`studies/${STUDY}/toplines`), api(`studies/${STUDY}/fieldwork`), api(`studies/${STUDY}/quotas`),
    api(`studies/${STUDY}/flags?per_page=20`), api(`studies/${STUDY}/quality`),
  ]);
  const interviews = toplines.groups[0].interviews;
  check("the API counts 121 interviews", interviews === 121, `(${interviews})`);
  check("the page shows the interviews the API counts",
    (await text(page, "#total-interviews")) === String(interviews));

  // Interviews per day: the figure (latest day), every bar, and the days
  // add up to the interviews counted.
  const perDay = fieldwork.interviews_per_day;
  const dayTotal = perDay.days.reduce((n, d) => n + d.interviews, 0) + perDay.undated;
  check("the API's interviews per day add up to the interviews", dayTotal === interviews, `(${dayTotal})`);
  check("the seed's interviews all have a day", perDay.undated === 0 && perDay.days.length > 1,
    `(${perDay.days.length} days, ${perDay.undated} undated)`);
  const lastDay = perDay.days[perDay.days.length - 1];
  const figure = page.locator("#per-day");
  check("the per-day figure shows the API's latest day",
    (await figure.getAttribute("data-date")) === lastDay.date
      && (await figure.getAttribute("data-interviews")) === String(lastDay.interviews)
      && (await text(page, "#per-day")).startsWith(`${lastDay.interviews} on ${lastDay.date}`),
    `(${lastDay.date}: ${lastDay.interviews})`);
  const bars = await page.locator("#per-day-chart rect").evaluateAll((rs) =>
    rs.map((r) => [r.dataset.date, Number(r.dataset.interviews)]));
  check("the per-day chart draws one bar per API day with its count",
    JSON.stringify(bars) === JSON.stringify(perDay.days.map((d) => [d.date, d.interviews])),
    `(${bars.length} bars, ${perDay.days.length} days)`);

  // The interviewer table's median duration is the API's.
  const byInt = await api(`studies/${STUDY}/fieldwork?by=interviewer`);
  const timed = byInt.groups.filter((g) => g.quality && g.quality.median_duration_secs != null);
  check("the API gives interviewers' median durations", timed.length > 0, `(${timed.length})`);
  for (const g of timed.slice(0, 2)) {
    const cellText = await page.locator(`#interviewer-table tr[data-interviewer="${g.segment}"] td`).nth(2).innerText();
    const want = `${(g.quality.median_duration_secs / 60).toFixed(1)} min`;
    check(`the interviewer table shows ${g.segment}'s median duration (${want})`, cellText === want, `(${cellText})`);
  }

  const rr1 = fieldwork.groups[0].rates.rr1;
  check("the API's RR1 is 57.6 %", pct(rr1) === "57.6 %", pct(rr1));
  check("the page shows RR1 57.6 %", (await text(page, "#rr1")) === pct(rr1));

  const cell = quotas.quotas[0].cells.find((c) => c.values[0] === "investigator");
  const row = page.locator('tr[data-quota-cell="position/investigator"] td');
  check("the investigator quota cell shows the API's achieved and target",
    (await row.nth(1).innerText()) === String(cell.achieved) && (await row.nth(2).innerText()) === String(cell.target),
    `(${cell.achieved}/${cell.target})`);
  check("the investigator cell is 84 of 84", cell.achieved === 84 && cell.target === 84);

  check("the API lists the 3 duplicate respondents for review", flags.total === 3, `(${flags.total})`);
  check("the page shows the API's number of flagged interviews",
    (await text(page, "#flags-total")) === String(flags.total), `(${flags.total})`);
  const shownRows = await page.locator("#flag-table tr").count();
  check("the flags table lists one page", shownRows - 1 === Math.min(20, flags.total), `(${shownRows - 1})`);
  const pageText = await page.locator("#flag-table").innerText();
  check("no respondent key is shown", flags.flags.every((f) => !pageText.includes(f.respondent_key)));

  const nonresp = quality.checks.find((c) => c.check === "item_nonresponse");
  const qrow = page.locator('tr[data-check="item_nonresponse"] td');
  check("the quality table shows the API's item nonresponse count",
    (await qrow.nth(1).innerText()) === String(nonresp.flags), `(${nonresp.flags})`);

  const item = toplines.groups[0].items.find((i) => i.valid_n > 0 && i.boxes);
  const trow = page.locator(`#topline-table tr[data-code="${item.code}"] td`);
  check(`the topline of ${item.code} shows the API's n, question text and high box`,
    (await trow.nth(2).innerText()) === String(item.valid_n) && (await trow.nth(1).innerText()) === item.text
      && (await trow.nth(4).innerText()) === pct(item.boxes.high, 0));

  // The check with the most flags: its link filters the flags list by
  // check (and, for its worst item if it has one, by item too).
  const busiest = quality.checks.slice().sort((a, b) => b.flags - a.flags)[0];
  check("some check raised flags", busiest && busiest.flags > 0);
  const linkShows = async (selector, query, what) => {
    const want = await api(`studies/${STUDY}/flags?${query}&per_page=20`);
    await page.locator(selector).first().click();
    try {
      await page.waitForFunction((n) => document.getElementById("flags-total").textContent === String(n),
        want.total, { timeout: 30000 });
      check(`${what} shows the API's filtered count (${want.total})`, want.total > 0);
    } catch (e) {
      check(`${what} shows the API's filtered count (${want.total})`, false, await text(page, "#flags-total"));
    }
  };
  await linkShows(`tr[data-check="${busiest.check}"] td:nth-child(1) a`, `check=${busiest.check}`,
    `the link of check ${busiest.check}`);
  const worst = quality.checks.find((c) => c.worst_items.length > 0);
  if (worst) {
    await linkShows(`tr[data-check="${worst.check}"] td:nth-child(3) a`,
      `check=${worst.check}&item=${worst.worst_items[0].code}`, `the worst item link of ${worst.check}`);
  }

  // Keyboard: the study selector, then tabbing reaches the segment selector.
  await page.focus("#study");
  await page.keyboard.press("Tab");
  check("Tab moves from the study to the segment selector",
    await page.evaluate(() => document.activeElement && document.activeElement.id === "segment"));

  const status = await text(page, "#status");
  check("the page says whether it is caught up", /up to date|not caught up/.test(status), status);
  check("no script errors or failed requests", errors.length === 0, errors.join("; "));
  check("no request leaves the service (no CDN)", external.length === 0, external.join(" "));
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(shots, "page-1280.png") });
  await page.screenshot({ path: join(shots, "page-1280-full.png"), fullPage: true });

  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(500);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check("at phone width the page does not scroll sideways", overflow <= 1, `(${overflow}px)`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(shots, "page-390.png") });
  await page.screenshot({ path: join(shots, "page-390-full.png"), fullPage: true });
  console.log(`screenshots in ${shots}`);
} finally {
  await browser.close();
}
console.log(`page: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
