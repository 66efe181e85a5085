// Drives the agent page in headless Chromium through its own labelled controls, as a person
// would: sign in, wait until Available, answer the call that rings, measure the tone heard, then
// (told "DONE" on stdin) hang up and wait for the wrap-up. Prints READY, MEASURED and
// RESULT {json} lines for the Rust test.
// Usage: node agent.js <page url> <absolute wav path> <name> <password> <screenshot dir>
const { chromium } = require('playwright-core');
const fs = require('fs'), os = require('os'), path = require('path'), readline = require('readline');

const [url, wav, name, password, shots] = process.argv.slice(2);
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--use-file-for-fake-audio-capture=' + wav];
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((r) => lines.once('line', r));

async function measure(page, ms) {
  return page.evaluate(async (ms) => {
    const stream = document.getElementById('party').srcObject;
    const ctx = new AudioContext(); const an = ctx.createAnalyser(); an.fftSize = 8192;
    ctx.createMediaStreamSource(stream).connect(an);
    const f = new Float32Array(an.frequencyBinCount); const peaks = [];
    for (let t = 0; t < ms; t += 100) {
      await new Promise((r) => setTimeout(r, 100)); an.getFloatFrequencyData(f);
      let bi = 1; for (let i = 2; i < f.length; i++) if (f[i] > f[bi]) bi = i;
      peaks.push(bi * ctx.sampleRate / an.fftSize);
    }
    peaks.sort((a, b) => a - b); return peaks[peaks.length >> 1];
  }, ms);
}

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-agent-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, timeout: 30000,
    args: ARGS, viewport: { width: 1366, height: 768 },
  });
  try {
    const page = ctx.pages()[0];
    page.setDefaultTimeout(30000);
    await page.goto(url);
    await page.getByLabel('Name').fill(name);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForFunction(() => document.getElementById('state').textContent.startsWith('Available'));
    console.log('READY');
    await page.getByRole('button', { name: 'Answer' }).click();
    await page.getByRole('button', { name: 'Hang up' }).waitFor();
    await page.screenshot({ path: path.join(shots, 'agent-in-call.png') });
    const hears = await measure(page, 3000);
    console.log('MEASURED ' + hears);
    await nextLine();
    await page.getByRole('button', { name: 'Hang up' }).click();
    await page.getByRole('heading', { name: 'Wrap-up' }).waitFor();
    await page.screenshot({ path: path.join(shots, 'agent-wrap-up.png') });
    console.log('RESULT ' + JSON.stringify({ hears }));
  } finally {
    lines.close();
    await ctx.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
})().catch((e) => { console.error(e); process.exit(1); });
