// The agent softphone page. The phone itself (the /ws session, the PeerConnection,
// reconnection, the microphone and speaker, the ring) is the embeddable softphone module, the
// one other products embed, so switchboard has one client to keep right; this file is the page
// around it: what it shows, and which of the phone's methods each control calls.

import { $, show, notice, signIn } from '/session.js';
import { connect, STATE_LABELS, describeTask } from '/sdk/v1/switchboard.js';

let phone = null;
let stateSince = Date.now();
let callSince = null;
let ringTimer = null;
let wrapUntil = null;
// The call-back the status line speaks of: its number (for Ask for permission), the task it
// answered, and its call once answered (whose end clears the line). `permittedTo`: the number
// a permission was just granted for (Call now).
const callBack = { to: null, taskId: null, callId: null, permittedTo: null };

const clock = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;

const LOST = 'The connection to switchboard was lost; reconnecting…';
// The module words these for a host page, which connects again itself; this page is reloaded,
// and to an agent a socket that never opened is one more lost connection.
const NOTICES = {
  connect_failed: LOST,
  connection_lost: LOST,
  microphone: 'The microphone is not available (access denied?). Allow it for this page and reload.',
};

function setPresence(p) {
  let text = STATE_LABELS[p.presence] || p.presence;
  if (p.presence === 'away' && p.reason) text += ` (${p.reason})`;
  $('state').textContent = text;
  stateSince = Date.now();
  show('wrapup', p.presence === 'wrap_up');
  renderCallBack();
  wrapUntil = p.presence === 'wrap_up' ? Date.now() + 1000 * (p.secondsLeft ?? 0) : null;
  tick();
}

function tick() {
  $('state-time').textContent = `for ${clock(Math.floor((Date.now() - stateSince) / 1000))}`;
  if (wrapUntil) {
    const left = Math.max(0, Math.ceil((wrapUntil - Date.now()) / 1000));
    $('wrapup-text').textContent = `Wrap-up: ${left} s left, then you go back to your state before the call. Press Done when you are ready.`;
  }
  if (callSince) $('call-timer').textContent = clock(Math.floor((Date.now() - callSince) / 1000));
}
setInterval(tick, 1000);

function ring(call) {
  $('in-name').textContent = call.name || 'WhatsApp caller';
  $('in-number').textContent = call.from ? `+${call.from}` : '';
  $('in-queue').textContent = call.queue;
  $('in-business').textContent = call.businessNumber;
  $('in-waited').textContent = call.waitedSecs;
  let left = call.ringSecs;
  $('in-countdown').textContent = left;
  clearInterval(ringTimer);
  ringTimer = setInterval(() => { left = Math.max(0, left - 1); $('in-countdown').textContent = left; }, 1000);
  show('incoming', true);
  $('answer').focus();
}

function stopRing() {
  clearInterval(ringTimer);
  show('incoming', false);
}

function talking(call) {
  stopRing();
  // A customer the agent called is not a caller.
  const calledBack = call.callId && call.callId === callBack.callId;
  $('call-name').textContent = call.name || (calledBack ? 'WhatsApp customer' : 'WhatsApp caller');
  $('call-number').textContent = call.from ? `+${call.from}` : '';
  if (!callSince) callSince = Date.now();
  $('dtmf').textContent = '';
  show('call', true);
  // An answered call-back hides the Cancel the agent may have been on: Hang up takes its place.
  if (call.callId === callBack.callId && lostFocus()) $('hangup').focus();
}

// ----- Call-backs -----

const lostFocus = () => {
  const a = document.activeElement;
  return !a || a === document.body || a.disabled || !!a.closest('[hidden]');
};

/** Whether a call-back can be placed now: connected, not ringing, on a call or in wrap-up. */
function canCallBack() {
  if (!phone || phone.outgoing) return false;
  const s = phone.state;
  return s.connection === 'connected' && (s.presence === 'available' || s.presence === 'away');
}

function renderCallBack() {
  const can = canCallBack();
  for (const b of document.querySelectorAll('#recent-calls button')) b.disabled = !can;
  for (const id of ['dial', 'task-call', 'call-now']) $(id).disabled = !can;
}

function placeCallBack(to, taskId) {
  if (!phone) return;
  callBack.taskId = taskId || null;
  if (!phone.callBack(to, taskId ? { taskId } : {})) notice('Not connected to switchboard: try again in a moment.');
}

function callBackStep(c) {
  const active = c.status === 'calling' || c.status === 'ringing';
  // Read before the buttons pressed to get here are disabled or hidden, which drops the focus.
  const moveFocus = active && (lostFocus() || !!document.activeElement.closest('#task, #recent, #callback'));
  // The last call's news is over once a new call-back starts.
  if (c.status === 'calling') notice('');
  callBack.to = c.to;
  callBack.callId = c.status === 'connected' ? c.callId : null;
  callBack.permittedTo = null;
  $('callback-to').textContent = c.to ? `+${c.to}` : '';
  // Meta's limit says when calling is allowed again: in the agent's own time too.
  $('callback-status').textContent = c.retryAt
    ? `${c.message} (${new Date(c.retryAt).toLocaleString()} your time)` : c.message;
  show('callback-cancel', active);
  show('ask-permission', c.canAskPermission);
  show('call-now', false);
  renderCallBack();
  if (moveFocus) $('callback-cancel').focus();
  else if (c.canAskPermission && lostFocus()) $('ask-permission').focus();
}

function permissionStep(p) {
  const hadFocus = ['ask-permission', 'call-now'].some((id) => document.activeElement === $(id));
  $('callback-to').textContent = p.to ? `+${p.to}` : '';
  $('callback-status').textContent = p.message;
  show('callback-cancel', false);
  show('ask-permission', false);
  callBack.permittedTo = p.status === 'granted' ? p.to : null;
  show('call-now', !!callBack.permittedTo);
  renderCallBack();
  if (callBack.permittedTo && (hadFocus || lostFocus())) $('call-now').focus();
}

function offerTask(t) {
  $('task-name').textContent = t.name || 'WhatsApp customer';
  $('task-number').textContent = t.to ? `+${t.to}` : '';
  $('task-reason').textContent = describeTask(t);
  $('task-due').textContent = t.dueAt ? `Due ${new Date(t.dueAt).toLocaleString()}` : '';
  show('task-due', !!t.dueAt);
  show('task', true);
  $('task-announce').textContent = `Call-back request: ${t.name || 'WhatsApp customer'} ${t.to ? '+' + t.to : ''}. ${describeTask(t)}.`;
  renderCallBack();
}

function taskStopped() {
  // Another task may have been offered since: the card goes only with the phone's own.
  if (phone && phone.task) return;
  show('task', false);
  $('task-announce').textContent = '';
}

function endCall(reason, callId) {
  if (callId && callId === callBack.callId) {
    callBack.callId = null;
    $('callback-to').textContent = '';
    $('callback-status').textContent = '';
  }
  // The record is written as the call ends, a moment after this news.
  setTimeout(loadRecent, 500);
  callSince = null;
  show('call', false);
  $('mute').setAttribute('aria-pressed', 'false');
  $('hold').setAttribute('aria-pressed', 'false');
  if (reason) notice(`Call ended: ${reason}`);
}

function fillDirectory({ agents, queues }) {
  const sel = $('transfer-to');
  const keep = sel.value;
  sel.replaceChildren();
  for (const a of agents) sel.add(new Option(`Agent ${a}`, `agent:${a}`));
  for (const q of queues) sel.add(new Option(`Queue ${q}`, `queue:${q}`));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
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
      c.queue || '', c.outcome.replace('_', ' '), clock(secs)]) {
      const td = document.createElement('td'); td.textContent = text; tr.appendChild(td);
    }
    const td = document.createElement('td');
    if (c.caller_number) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'Call back';
      // Each row's button says whom it calls, for a list of them read out of their table.
      b.setAttribute('aria-label', `Call back +${c.caller_number}`);
      b.addEventListener('click', () => placeCallBack(c.caller_number));
      td.appendChild(b);
    }
    tr.appendChild(td);
    body.appendChild(tr);
  }
  renderCallBack();
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
let devicesListed = false;
async function microphone({ stream }) {
  if (stopMeter) stopMeter();
  stopMeter = meter(stream);
  // Listed once, when the grant has given the devices their names.
  if (devicesListed) return;
  devicesListed = true;
  const d = await phone.devices();
  const mics = $('mic-select'); mics.replaceChildren();
  const speakers = $('speaker-select'); speakers.replaceChildren();
  for (const m of d.microphones) mics.add(new Option(m.label, m.deviceId));
  for (const s of d.speakers) speakers.add(new Option(s.label, s.deviceId));
  if (!d.canChooseSpeaker || speakers.options.length === 0) {
    speakers.add(new Option('Default (this browser cannot choose)', ''));
    speakers.disabled = true;
  }
  show('audio-check', true);
}

function listen(p) {
  let connected = false;
  p.on('state', (s) => {
    // Whatever was said of the last connection is over once a new one is up.
    if (s.connection === 'connected' && !connected) notice('');
    connected = s.connection === 'connected';
    renderCallBack();
  });
  p.on('ready', (me) => {
    const sel = $('reason'); sel.replaceChildren();
    for (const r of me.awayReasons) sel.add(new Option(r, r));
  });
  p.on('presence', setPresence);
  p.on('microphone', microphone);
  p.on('ringing', ring);
  p.on('ring_stopped', (r) => {
    stopRing();
    if (r.reason === 'missed') notice('You missed a call and were set away. Press Available when you are back.');
  });
  p.on('talking', talking);
  p.on('call_state', (c) => {
    $('mute').setAttribute('aria-pressed', String(c.muted));
    $('hold').setAttribute('aria-pressed', String(c.held));
  });
  p.on('dtmf', (d) => { $('dtmf').textContent += d.digit; });
  p.on('whisper', (w) => show('whisper', w.on));
  p.on('directory', fillDirectory);
  p.on('ended', (e) => endCall(e.reason, e.callId));
  p.on('call_back', callBackStep);
  p.on('permission', permissionStep);
  p.on('task', offerTask);
  p.on('task_stopped', taskStopped);
  p.on('error', (e) => notice(NOTICES[e.code] || e.message));
}

signIn({
  onSignedIn: async () => {
    // Decided before the desk shows, so the desk never shows a button that can only fail.
    const sandbox = await fetch('/sandbox/calls', { method: 'GET' }).then((x) => x.status === 405, () => false);
    show('sandbox', sandbox);
    show('desk', true);
    show('callback', true);
    loadRecent();
    // The page's sign-in set the session cookie; the page holds no token of its own.
    phone = connect({ url: location.origin, cookie: true });
    // The phone's own players take the page's places, so the calls play where they always did.
    for (const id of ['party', 'second']) {
      phone.audio[id].id = id;
      $(id).replaceWith(phone.audio[id]);
    }
    listen(phone);
  },
  // Only once switchboard has signed the session out: closed first, a call would be held for
  // the grace period instead of hung up.
  onSignOut: () => phone && phone.close(),
});

$('mic-select').addEventListener('change', async () => {
  try {
    await phone.setMicrophone($('mic-select').value);
  } catch (e) { notice('That microphone could not be opened.'); }
});
$('speaker-select').addEventListener('change', () => {
  phone.setSpeaker($('speaker-select').value).catch(() => {});
});

$('transfer').addEventListener('click', () => {
  // A queue's id may itself hold a colon.
  const [kind, ...rest] = ($('transfer-to').value || '').split(':');
  const id = rest.join(':');
  if (!phone || !id) return;
  phone.transfer(kind === 'agent' ? { toAgent: id } : { toQueue: id });
});
$('done').addEventListener('click', () => phone && phone.wrapUpDone());
$('available').addEventListener('click', () => phone && phone.setAvailable(true));
$('away').addEventListener('click', () => phone && phone.setAvailable(false, $('reason').value));
$('answer').addEventListener('click', () => phone && phone.answer());
$('decline').addEventListener('click', () => phone && phone.decline());
$('hangup').addEventListener('click', () => phone && phone.hangUp());
// The opposite of what the button shows, which is what the agent saw when they pressed it.
$('mute').addEventListener('click', () => phone && phone.mute($('mute').getAttribute('aria-pressed') !== 'true'));
$('hold').addEventListener('click', () => phone && phone.hold($('hold').getAttribute('aria-pressed') !== 'true'));
$('dial-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const to = $('dial-number').value.trim();
  if (!to) { $('dial-number').focus(); return; }
  placeCallBack(to);
});
$('task-call').addEventListener('click', () => phone && phone.task && placeCallBack(phone.task.to, phone.task.taskId));
$('task-skip').addEventListener('click', () => phone && phone.skipTask());
$('callback-cancel').addEventListener('click', () => phone && phone.cancelCallBack());
$('ask-permission').addEventListener('click', () => phone && callBack.to && phone.askPermission(callBack.to));
$('call-now').addEventListener('click', () => {
  if (!phone || !callBack.permittedTo) return;
  // The task goes with the call only while it is still offered.
  const t = phone.task;
  placeCallBack(callBack.permittedTo, t && t.taskId === callBack.taskId ? t.taskId : null);
});

// ----- The sandbox's simulator (shown only there) -----

/** Asks the simulator for a call at `path`; the answer's JSON, or null (said on the page). */
async function simulate(path, button) {
  button.disabled = true;
  try {
    const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    if (r.ok) return await r.json();
  } catch (e) { /* said below */ } finally { button.disabled = false; }
  $('sandbox-status').textContent = '';
  notice('The simulator could not place a call now.');
  return null;
}
$('testcall').addEventListener('click', async () => {
  if (await simulate('/sandbox/calls', $('testcall'))) $('sandbox-status').textContent = 'Test call placed.';
});
$('missedcall').addEventListener('click', async () => {
  $('sandbox-status').textContent = 'Placing a missed call…';
  const m = await simulate('/sandbox/missed-calls', $('missedcall'));
  if (m) $('sandbox-status').textContent = `Missed call from +${m.from}: they hung up before anyone answered. It comes back as a call-back request.`;
});
