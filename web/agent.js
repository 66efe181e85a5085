// The agent softphone: sign-in, presence, one PeerConnection for the whole session, and the
// call controls. It speaks docs/protocol.md over /ws and decides nothing itself.

import { $, show, notice, session } from '/session.js';

let me = null;
let callId = null;
let ringingId = null;
let stateSince = Date.now();
let callSince = null;
let ringTimer = null;
let wrapUntil = null;

const STATES = {
  available: 'Available', away: 'Away', ringing: 'Ringing', on_call: 'On a call',
  wrap_up: 'Wrap-up', offline: 'Offline',
};

function setPresence(p) {
  let text = STATES[p.state] || p.state;
  if (p.state === 'away' && p.reason) text += ` (${p.reason})`;
  $('state').textContent = text;
  stateSince = Date.now();
  show('wrapup', p.state === 'wrap_up');
  wrapUntil = p.state === 'wrap_up' ? Date.now() + 1000 * (p.seconds_left ?? 0) : null;
  tick();
}

function tick() {
  const s = Math.floor((Date.now() - stateSince) / 1000);
  $('state-time').textContent = `for ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  if (wrapUntil) {
    const left = Math.max(0, Math.ceil((wrapUntil - Date.now()) / 1000));
    $('wrapup-text').textContent = `Wrap-up: ${left} s left, then you go back to your state before the call. Press Done when you are ready.`;
  }
  if (callSince) {
    const c = Math.floor((Date.now() - callSince) / 1000);
    $('call-timer').textContent = `${Math.floor(c / 60)}:${String(c % 60).padStart(2, '0')}`;
  }
}
setInterval(tick, 1000);

function onMessage(m) {
  switch (m.type) {
    case 'welcome': {
      const sel = $('reason'); sel.replaceChildren();
      for (const r of m.away_reasons || []) sel.add(new Option(r, r));
      break;
    }
    case 'presence': setPresence(m); break;
    case 'ringing': ring(m); break;
    case 'ring_stopped': stopRing(); if (m.reason === 'missed') notice('You missed a call and were set away. Press Available when you are back.'); break;
    case 'talking': talking(m); break;
    case 'call_state':
      $('mute').setAttribute('aria-pressed', String(m.muted));
      $('hold').setAttribute('aria-pressed', String(m.held));
      break;
    case 'dtmf': $('dtmf').textContent += m.digit; break;
    case 'whisper': show('whisper', m.on); break;
    case 'directory': {
      const sel = $('transfer-to');
      const keep = sel.value;
      sel.replaceChildren();
      for (const a of m.agents) sel.add(new Option(`Agent ${a}`, `agent:${a}`));
      for (const q of m.queues) sel.add(new Option(`Queue ${q}`, `queue:${q}`));
      if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
      break;
    }
    case 'call_ended': endCall(m.reason); break;
    case 'error': notice(m.message); break;
    default: break;
  }
}

function ring(m) {
  ringingId = m.call_id;
  $('in-name').textContent = m.name || 'WhatsApp caller';
  $('in-number').textContent = m.from ? `+${m.from}` : '';
  $('in-queue').textContent = m.queue;
  $('in-business').textContent = m.business_number || '';
  $('in-waited').textContent = m.waited_secs ?? 0;
  let left = m.ring_secs ?? 15;
  startRingSound();
  $('in-countdown').textContent = left;
  clearInterval(ringTimer);
  ringTimer = setInterval(() => { left = Math.max(0, left - 1); $('in-countdown').textContent = left; }, 1000);
  show('incoming', true);
  $('answer').focus();
}

// A soft two-tone ring while a call rings (WebAudio: no file, nothing fetched).
let ringAudio = null;
function startRingSound() {
  stopRingSound();
  try {
    const ctx = new AudioContext();
    const gain = ctx.createGain(); gain.gain.value = 0; gain.connect(ctx.destination);
    for (const f of [440, 480]) { const o = ctx.createOscillator(); o.frequency.value = f; o.connect(gain); o.start(); }
    let on = false;
    const timer = setInterval(() => { on = !on; gain.gain.value = on ? 0.05 : 0; }, 1000);
    ringAudio = { ctx, timer };
  } catch (e) { ringAudio = null; }
}
function stopRingSound() {
  if (!ringAudio) return;
  clearInterval(ringAudio.timer); ringAudio.ctx.close(); ringAudio = null;
}

function stopRing() {
  stopRingSound();
  clearInterval(ringTimer);
  ringingId = null;
  show('incoming', false);
}

function talking(m) {
  stopRing();
  callId = m.call_id;
  $('call-name').textContent = m.name || 'WhatsApp caller';
  $('call-number').textContent = m.from ? `+${m.from}` : '';
  if (!callSince) callSince = Date.now();
  $('dtmf').textContent = '';
  show('call', true);
}

function endCall(reason) {
  setTimeout(loadRecent, 500);
  callId = null;
  callSince = null;
  show('call', false);
  $('mute').setAttribute('aria-pressed', 'false');
  $('hold').setAttribute('aria-pressed', 'false');
  if (reason) notice(`Call ended: ${reason}`);
}

async function loadRecent() {
  const r = await fetch('/api/calls/mine');
  if (!r.ok) return;
  const page = await r.json();
  const body = $('recent-calls');
  body.replaceChildren();
  for (const c of page.calls) {
    const tr = document.createElement('tr');
    const secs = Math.round(((c.ended_at - (c.answered_at || c.ended_at)) / 1000));
    for (const text of [new Date(c.started_at).toLocaleString(), `${c.caller_name || ''} ${c.caller_number ? '+' + c.caller_number : ''}`,
      c.queue || '', c.outcome.replace('_', ' '), `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}`]) {
      const td = document.createElement('td'); td.textContent = text; tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  show('recent', true);
}

function meter(stream) {
  const ctx = new AudioContext();
  const an = ctx.createAnalyser();
  an.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(an);
  const data = new Float32Array(an.fftSize);
  const timer = setInterval(() => {
    an.getFloatTimeDomainData(data);
    let sum = 0; for (const v of data) sum += v * v;
    $('level').value = Math.min(1, Math.sqrt(sum / data.length) * 4);
  }, 100);
  return () => { clearInterval(timer); ctx.close(); };
}

let stopMeter = null;
async function audioCheck(s) {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const mics = $('mic-select'); mics.replaceChildren();
  const speakers = $('speaker-select'); speakers.replaceChildren();
  for (const d of devices) {
    if (d.kind === 'audioinput') mics.add(new Option(d.label || 'Microphone', d.deviceId));
    if (d.kind === 'audiooutput') speakers.add(new Option(d.label || 'Speaker', d.deviceId));
  }
  if (!('setSinkId' in HTMLMediaElement.prototype) || speakers.options.length === 0) {
    speakers.add(new Option('Default (this browser cannot choose)', ''));
    speakers.disabled = true;
  }
  if (s.mic()) stopMeter = meter(s.mic());
  show('audio-check', true);
}

const s = session({
  onMessage,
  onSignedIn: async (who) => {
    me = who;
    // Decided before the desk shows, so the desk never shows a button that can only fail.
    const sandbox = await fetch('/sandbox/calls', { method: 'GET' }).then((x) => x.status === 405, () => false);
    show('sandbox', sandbox);
    show('desk', true);
    loadRecent();
  },
});
const { send } = s;
// The microphone is asked for after sign-in; the check starts once it is there.
const waitMic = setInterval(() => { if (s.mic()) { clearInterval(waitMic); audioCheck(s); } }, 200);
$('mic-select').addEventListener('change', async () => {
  try {
    const m = await s.useMic($('mic-select').value);
    if (stopMeter) stopMeter();
    stopMeter = meter(m);
  } catch (e) { notice('That microphone could not be opened.'); }
});
$('speaker-select').addEventListener('change', async () => {
  for (const id of ['party', 'second']) await $(id).setSinkId($('speaker-select').value).catch(() => {});
});

$('transfer').addEventListener('click', () => {
  const [kind, id] = ($('transfer-to').value || '').split(':');
  if (!callId || !id) return;
  send(kind === 'agent'
    ? { type: 'transfer', call_id: callId, to_agent: id }
    : { type: 'transfer', call_id: callId, to_queue: id });
});
$('done').addEventListener('click', () => send({ type: 'wrap_up_done' }));
$('available').addEventListener('click', () => send({ type: 'set_presence', available: true }));
$('away').addEventListener('click', () => send({ type: 'set_presence', available: false, reason: $('reason').value }));
$('answer').addEventListener('click', () => ringingId && send({ type: 'answer', call_id: ringingId }));
$('decline').addEventListener('click', () => ringingId && send({ type: 'decline', call_id: ringingId }));
$('hangup').addEventListener('click', () => callId && send({ type: 'hang_up', call_id: callId }));
$('mute').addEventListener('click', () => callId && send({ type: 'mute', call_id: callId, on: $('mute').getAttribute('aria-pressed') !== 'true' }));
$('hold').addEventListener('click', () => callId && send({ type: 'hold', call_id: callId, on: $('hold').getAttribute('aria-pressed') !== 'true' }));
$('testcall').addEventListener('click', async () => {
  const r = await fetch('/sandbox/calls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  if (!r.ok) notice('The simulator could not place a call now.');
});
