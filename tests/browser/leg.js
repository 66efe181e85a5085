// Drives one headless Chromium against a page served by switchboard's browser-leg test:
// the page's fake microphone plays a WAV tone, the page offers to the engine, and this script
// reports (one line, "RESULT {json}") the connection state, the tone the page hears, and the
// page's RTP statistics. Usage: node leg.js <page url> <absolute wav path>
const { chromium } = require('playwright-core');
const fs = require('fs'), os = require('os'), path = require('path');

const [url, wav] = process.argv.slice(2);
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--use-file-for-fake-audio-capture=' + wav];

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, timeout: 30000, args: ARGS,
  });
  try {
    const page = ctx.pages()[0];
    page.setDefaultTimeout(30000);
    await page.goto(url);
    const state = await page.evaluate(() => start());
    const hears = state === 'connected' ? await page.evaluate(() => measure(3000)) : null;
    const stats = await page.evaluate(() => stats());
    console.log('RESULT ' + JSON.stringify({ state, hears, stats }));
  } finally {
    await ctx.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
})().catch((e) => { console.error(e); process.exit(1); });
