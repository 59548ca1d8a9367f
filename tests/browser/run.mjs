// Drives Debian's Chromium, headless, through playwright-core (no browser
// download: the executable is /usr/bin/chromium, `apt-get install -y
// chromium`), against a running `stt serve --ws … --web DIR --demo-tokens`.
//
//   node run.mjs TEST_URL [--screenshot URL PATH] [--timeout-ms 30000]
//                         [--screenshot-pings 5]
//
// 1. Opens TEST_URL (tests/browser/page/test.html, copied into the served
//    directory), waits until the page has put its result in
//    `window.__sttResult`, and prints one line of JSON on stdout:
//    {"result": …, "console": [...], "page_errors": [...], "screenshot": …}.
// 2. With --screenshot, opens URL (the example page) in a second tab, waits
//    until it has measured --screenshot-pings round trips
//    (`window.__sttExample.pings`, or the timeout), types a message into
//    its box and waits for the echo, and saves a PNG to PATH.
//
// Exit status: 0 when a result was read (whatever it says: the caller
// judges it), 1 when none came or the browser failed, 2 for bad arguments.

import { chromium } from 'playwright-core';

const CHROMIUM = process.env.STT_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];

function usage(message) {
  process.stderr.write(`${message}\nusage: node run.mjs TEST_URL [--screenshot URL PATH] [--timeout-ms N] [--screenshot-pings N]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { testUrl: null, shotUrl: null, shotPath: null, timeoutMs: 30_000, shotPings: 5 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const number = () => {
      const n = Number(argv[++i]);
      if (!Number.isFinite(n) || n <= 0) usage(`${arg} needs a positive number`);
      return n;
    };
    if (arg === '--screenshot') {
      options.shotUrl = argv[++i];
      options.shotPath = argv[++i];
      if (!options.shotUrl || !options.shotPath) usage('--screenshot needs URL and PATH');
    } else if (arg === '--timeout-ms') {
      options.timeoutMs = number();
    } else if (arg === '--screenshot-pings') {
      options.shotPings = number();
    } else if (arg.startsWith('--')) {
      usage(`unknown option ${arg}`);
    } else if (options.testUrl === null) {
      options.testUrl = arg;
    } else {
      usage(`unexpected argument ${arg}`);
    }
  }
  if (options.testUrl === null) usage('no TEST_URL');
  return options;
}

/** Collects what a page says on its console and the errors it throws. */
function watch(page, tag, out) {
  page.on('console', (m) => out.console.push(`${tag} ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => out.page_errors.push(`${tag}: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) out.console.push(`${tag} HTTP ${r.status()}: ${r.url()}`);
  });
  page.on('requestfailed', (r) => out.console.push(`${tag} request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const out = { result: null, console: [], page_errors: [], screenshot: null, error: null };
  let browser;
  let status = 1;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    watch(page, 'test', out);
    await page.goto(options.testUrl, { timeout: options.timeoutMs });
    await page.waitForFunction(() => window.__sttResult !== undefined, null, {
      timeout: options.timeoutMs,
      polling: 50,
    });
    out.result = await page.evaluate(() => window.__sttResult);
    status = 0;
    if (options.shotUrl) {
      const shot = await context.newPage();
      watch(shot, 'example', out);
      await shot.goto(options.shotUrl, { timeout: options.timeoutMs });
      let pings = 0;
      try {
        await shot.waitForFunction(
          (want) => (window.__sttExample?.pings ?? 0) >= want,
          options.shotPings,
          { timeout: options.timeoutMs, polling: 100 },
        );
      } catch {
        // Screenshot what is there: the picture shows what went wrong.
      }
      // Type a message, as a person would, so that the picture shows an echo.
      try {
        await shot.fill('#message', 'hello from headless Chromium', { timeout: 2000 });
        await shot.click('#send', { timeout: 2000 });
        await shot.waitForSelector('#log li:has(.dir:text-is("echo"))', { timeout: 5000 });
      } catch {
        // No echo: the picture shows it.
      }
      pings = await shot.evaluate(() => window.__sttExample?.pings ?? 0);
      await shot.screenshot({ path: options.shotPath, fullPage: true });
      out.screenshot = { path: options.shotPath, pings };
    }
  } catch (e) {
    out.error = String(e?.message ?? e);
    status = out.result === null ? 1 : status;
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(status);
}

main();
