// One headless Chromium (its fake microphone playing <wav>) driven line by line from stdin, the
// way a person uses a page: through its labelled controls only. One command a line; each answer
// is one line, "OK <result>" or "ERR <message>".
//   goto <url>                      open a page
//   fill <label> <text…>            type into the field with that label (one word)
//   fill <label…>|<text…>           the same, for a label of several words
//   select <label>|<option text>    choose the option with that text in the labelled list
//   check <label…>                  tick the checkbox with that label
//   click <button name…>            press the button with that accessible name (waits for it)
//   wait_button <button name…>      wait until such a button is visible
//   wait_visible <element id>       wait until the element is shown
//   wait_heading <text…>            wait until a heading with that text is visible
//   wait_text <element id> <text…>  wait until the element's text starts with <text>
//   wait_contains <element id> <text…>  wait until the element's text contains <text>
//   measure <audio element id> <ms> the dominant frequency (Hz) of what that element plays
//   measure_expr <ms> <js…>         the same for the media element <js> evaluates to (one in a
//                                   shadow root, or not in the document)
//   wait_in <css selector>|<text…>  wait until the element (shadow roots pierced) contains <text>
//   wait_js <js…>                   wait until the expression is true
//   focus <button name…>            move the keyboard focus to that button
//   press <key>                     press a key (Playwright's names: Enter, Tab, Alt+h…)
//   shot <path>                     a screenshot
//   eval <js…>                      evaluate, answer its JSON
//   axe                             run axe-core on the page: the serious and critical
//                                   violations, as JSON [{id, impact, nodes}]
//   quit
// Usage: node driver.js <absolute wav path>
const { chromium } = require('playwright-core');
const fs = require('fs'), os = require('os'), path = require('path'), readline = require('readline');

const [wav] = process.argv.slice(2);
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--use-file-for-fake-audio-capture=' + wav];

async function measure(page, id, ms, expr) {
  // An expression is evaluated as `eval` does, through the debugger: the page's Content
  // Security Policy (which may forbid eval) does not govern that.
  if (expr) await page.evaluate(`window.__sbMeasured = (${expr}); 0`);
  return page.evaluate(async ([id, ms, expr]) => {
    const el = expr ? window.__sbMeasured : document.getElementById(id);
    const stream = el && el.srcObject;
    if (!stream) return 0;
    const ctx = new AudioContext(); const an = ctx.createAnalyser(); an.fftSize = 8192;
    ctx.createMediaStreamSource(stream).connect(an);
    const f = new Float32Array(an.frequencyBinCount); const peaks = [];
    for (let t = 0; t < ms; t += 100) {
      await new Promise((r) => setTimeout(r, 100)); an.getFloatFrequencyData(f);
      let bi = 1; for (let i = 2; i < f.length; i++) if (f[i] > f[bi]) bi = i;
      peaks.push(f[bi] < -100 ? 0 : bi * ctx.sampleRate / an.fftSize);
    }
    peaks.sort((a, b) => a - b); return peaks[peaks.length >> 1];
  }, [id, Number(ms), expr]);
}

(async () => {
  // The test hands a profile directory it removes itself (it kills this process); run by hand,
  // one of our own, removed on `quit`.
  const own = !process.env.SB_PROFILE_DIR;
  const dir = process.env.SB_PROFILE_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'sb-page-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, timeout: 30000,
    args: ARGS, viewport: { width: 1366, height: 768 },
  });
  const page = ctx.pages()[0];
  page.setDefaultTimeout(30000);
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [cmd, ...rest] = line.trim().split(' ');
    const arg = rest.join(' ');
    try {
      let out = '';
      if (cmd === 'goto') await page.goto(arg);
      else if (cmd === 'fill') {
        const bar = arg.indexOf('|');
        const [label, text] = bar >= 0 ? [arg.slice(0, bar), arg.slice(bar + 1)] : [rest[0], rest.slice(1).join(' ')];
        await page.getByLabel(label, { exact: true }).fill(text);
      }
      else if (cmd === 'select') {
        const [label, option] = arg.split('|');
        await page.getByLabel(label, { exact: true }).selectOption({ label: option });
      }
      else if (cmd === 'check') await page.getByLabel(arg, { exact: true }).check();
      else if (cmd === 'click') await page.getByRole('button', { name: arg, exact: true }).first().click();
      else if (cmd === 'wait_button') await page.getByRole('button', { name: arg, exact: true }).first().waitFor();
      else if (cmd === 'wait_visible') await page.locator('#' + arg).waitFor({ state: 'visible' });
      else if (cmd === 'wait_heading') await page.getByRole('heading', { name: arg, exact: true }).waitFor();
      else if (cmd === 'wait_text') {
        await page.waitForFunction(([id, t]) => (document.getElementById(id)?.textContent || '').startsWith(t),
          [rest[0], rest.slice(1).join(' ')]);
      } else if (cmd === 'wait_contains') {
        await page.waitForFunction(([id, t]) => (document.getElementById(id)?.textContent || '').includes(t),
          [rest[0], rest.slice(1).join(' ')]);
      } else if (cmd === 'measure') out = String(await measure(page, rest[0], rest[1]));
      else if (cmd === 'measure_expr') out = String(await measure(page, null, rest[0], rest.slice(1).join(' ')));
      else if (cmd === 'wait_in') {
        const bar = arg.indexOf('|');
        await page.locator(arg.slice(0, bar)).filter({ hasText: arg.slice(bar + 1) }).first().waitFor();
      }
      // As a function, which Playwright compiles through the debugger: a string it would eval
      // in the page, which a strict Content Security Policy forbids.
      // eslint-disable-next-line no-new-func
      else if (cmd === 'wait_js') await page.waitForFunction(new Function(`return (${arg});`));
      else if (cmd === 'focus') await page.getByRole('button', { name: arg, exact: true }).first().focus();
      else if (cmd === 'press') await page.keyboard.press(arg);
      else if (cmd === 'shot') await page.screenshot({ path: arg });
      else if (cmd === 'eval') out = JSON.stringify(await page.evaluate(arg));
      else if (cmd === 'axe') {
        // Injected through the debugger, which the page's Content Security Policy does not
        // govern: the policy itself stays as served.
        const src = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
        await page.evaluate(src + ';0');
        const r = await page.evaluate(() => window.axe.run(document));
        out = JSON.stringify(r.violations
          .filter((v) => v.impact === 'serious' || v.impact === 'critical')
          .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length })));
      }
      else if (cmd === 'quit') break;
      else throw new Error('unknown command ' + cmd);
      console.log('OK ' + out);
    } catch (e) {
      console.log('ERR ' + String(e.message || e).split('\n')[0]);
    }
  }
  await ctx.close().catch(() => {});
  if (own) fs.rmSync(dir, { recursive: true, force: true });
})().catch((e) => { console.error(e); process.exit(1); });
