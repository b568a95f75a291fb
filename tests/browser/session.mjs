// Drives Debian's headless Chromium through a BFF session with puppeteer-core (no browser download):
//
//   node session.mjs '{"url": "http://127.0.0.1:PORT/", "user": "alice", "chromium": "/usr/bin/chromium"}'
//
// The page at `url` (bff-templates/web-oidc/static/index.html, served by the BFF) shows "Signed out"; the
// script clicks "Log in", signs in on the OpenID Provider's own login page (any password), consents on its
// consent page, lands back on the page, waits for "Signed in as ...", clicks "Call the API", then
// "Log out" (and confirms the OP's own logout page when it asks), and reloads the page to see "Signed out".
// It prints one JSON line: what the page showed, the session cookie as Chromium holds it (CDP sees HttpOnly
// cookies; `document.cookie` is recorded too), and the URL of each step. Exit 1 with {"error"} on failure.
import puppeteer from 'puppeteer-core';

const args = JSON.parse(process.argv[2] ?? '{}');
const { url, user = 'alice', chromium = '/usr/bin/chromium', cookie = '__Host-bff' } = args;
const out = { steps: [] };
const step = (name, page) => out.steps.push({ name, url: page.url() });
const text = (page, selector) => page.$eval(selector, (el) => el.textContent);
const state = (page) => page.$eval('#status', (el) => el.dataset.state ?? '');

async function waitForState(page, want) {
  await page.waitForFunction(
    (w) => document.querySelector('#status')?.dataset.state === w,
    { timeout: 20000 },
    want,
  );
}

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
});
let page;
try {
  page = await browser.newPage();
  page.setDefaultTimeout(20000);
  // What went wrong on the way, for the report: failed requests (but the OP pages' web fonts) and
  // navigations that did not answer 2xx/3xx.
  out.failed = [];
  page.on('requestfailed', (r) => {
    if (!r.url().startsWith('https://fonts.')) {
      out.failed.push({ url: r.url(), error: r.failure()?.errorText });
    }
  });
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.status() >= 400) {
      out.failed.push({ url: r.url(), status: r.status() });
    }
  });
  await page.goto(url, { waitUntil: 'load' });
  await waitForState(page, 'signed-out');
  out.before = await text(page, '#status');
  step('page, signed out', page);

  // /bff/login -> the OP's authorization endpoint -> its login page.
  await Promise.all([page.waitForNavigation(), page.click('#login')]);
  await page.waitForSelector('input[name="login"]');
  step('OP login page', page);
  await page.type('input[name="login"]', user);
  await page.type('input[name="password"]', 'any password');
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);

  // The OP's consent page, then its redirect to /bff/callback, which sets the cookie and sends the
  // browser back to the page.
  await page.waitForSelector('input[name="prompt"][value="consent"]');
  step('OP consent page', page);
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  await waitForState(page, 'signed-in');
  step('page, signed in', page);
  out.signed_in = await text(page, '#status');
  out.user = JSON.parse(await text(page, '#user'));
  out.document_cookie = await page.evaluate(() => document.cookie);
  const cookies = await browser.cookies();
  out.cookie = cookies.find((c) => c.name === cookie) ?? null;

  await page.click('#call');
  await page.waitForSelector('#api[data-status]');
  const api = await text(page, '#api');
  out.api_status = Number(api.split('\n')[0]);
  out.api_body = api.slice(api.indexOf('\n') + 1);

  // /bff/logout, then the OP's end-session URL: its own confirmation form when it asks.
  await Promise.all([page.waitForNavigation(), page.click('#logout')]);
  step('after logout', page);
  if (await page.$('button[name="logout"][value="yes"]')) {
    step('OP logout page', page);
    await Promise.all([page.waitForNavigation(), page.click('button[name="logout"][value="yes"]')]);
    step('after the OP logout', page);
  }
  await page.goto(url, { waitUntil: 'load' });
  await waitForState(page, 'signed-out');
  out.after_logout = await text(page, '#status');
  out.state_after_logout = await state(page);
  process.stdout.write(`${JSON.stringify(out)}\n`);
} catch (err) {
  out.error = String(err?.stack ?? err);
  if (page) {
    out.url = page.url();
    out.html = (await page.content().catch(() => '')).slice(0, 4000);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
