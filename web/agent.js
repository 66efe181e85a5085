// The agent softphone: sign-in, presence, one PeerConnection for the whole session, and the
// call controls. It speaks docs/protocol.md over /ws and decides nothing itself.

const $ = (id) => document.getElementById(id);
const show = (id, on) => { $(id).hidden = !on; };

let ws = null;
let pc = null;
let mic = null;
let me = null;
let callId = null;
let ringingId = null;
let stateSince = Date.now();
let callSince = null;
let ringTimer = null;
let retry = 1000;
let signedOut = false;

function notice(text) {
  $('notice').textContent = text || '';
  show('notice', !!text);
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

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
  if (p.state === 'wrap_up') $('wrapup-text').textContent = 'Finishing the last call; you go back to your previous state next.';
}

function tick() {
  const s = Math.floor((Date.now() - stateSince) / 1000);
  $('state-time').textContent = `for ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  if (callSince) {
    const c = Math.floor((Date.now() - callSince) / 1000);
    $('call-timer').textContent = `${Math.floor(c / 60)}:${String(c % 60).padStart(2, '0')}`;
  }
}
setInterval(tick, 1000);

async function signIn(ev) {
  ev.preventDefault();
  notice('');
  const r = await fetch('/api/login', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: $('name').value.trim(), password: $('password').value }),
  });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    notice(r.status === 429 ? 'Too many attempts: wait a moment and try again.'
      : (body.error || 'Sign-in failed: check your name and password.'));
    return;
  }
  $('password').value = '';
  await begin();
}

async function begin() {
  const r = await fetch('/api/me');
  if (!r.ok) { show('signin', true); return; }
  me = await r.json();
  signedOut = false;
  $('who').textContent = `${me.name} (${me.role})`;
  show('signin', false); show('desk', true); show('signout', true);
  const sandbox = await fetch('/sandbox/calls', { method: 'GET' }).then((x) => x.status === 405, () => false);
  show('sandbox', sandbox);
  try {
    mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    notice('The microphone is not available (access denied?). Allow it for this page and reload: calls cannot ring without it.');
    return;
  }
  connect();
}

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  ws = new WebSocket(`${proto}//${location.host}/ws`);
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onopen = () => { retry = 1000; notice(''); };
  ws.onclose = () => {
    if (pc) { pc.close(); pc = null; }
    if (signedOut) return;
    notice('The connection to switchboard was lost; reconnecting…');
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 15000);
  };
}

async function setUpMedia() {
  pc = new RTCPeerConnection();
  pc.addTrack(mic.getAudioTracks()[0], mic);
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.ontrack = (e) => {
    const first = pc.getTransceivers()[0];
    const el = e.transceiver === first ? $('party') : $('second');
    el.srcObject = e.streams[0] || new MediaStream([e.track]);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
    setTimeout(done, 2000);
  });
  send({ type: 'offer', sdp: pc.localDescription.sdp });
}

function onMessage(m) {
  switch (m.type) {
    case 'welcome': setUpMedia(); break;
    case 'answer': pc && pc.setRemoteDescription({ type: 'answer', sdp: m.sdp }); break;
    case 'presence': setPresence(m); break;
    case 'ringing': ring(m); break;
    case 'ring_stopped': stopRing(); if (m.reason === 'missed') notice('You missed a call and were set away. Press Available when you are back.'); break;
    case 'talking': talking(m); break;
    case 'call_state':
      $('mute').setAttribute('aria-pressed', String(m.muted));
      $('hold').setAttribute('aria-pressed', String(m.held));
      break;
    case 'dtmf': $('dtmf').textContent += m.digit; break;
    case 'call_ended': endCall(m.reason); break;
    case 'monitoring': break;
    case 'error':
      if (m.code === 'signed_out' || m.code === 'replaced') { signedOut = true; notice(m.message); }
      else notice(m.message);
      break;
    default: break;
  }
}

function ring(m) {
  ringingId = m.call_id;
  $('in-name').textContent = m.name || 'WhatsApp caller';
  $('in-number').textContent = m.from ? `+${m.from}` : '';
  $('in-queue').textContent = m.queue;
  let left = 15;
  $('in-countdown').textContent = left;
  clearInterval(ringTimer);
  ringTimer = setInterval(() => { left = Math.max(0, left - 1); $('in-countdown').textContent = left; }, 1000);
  show('incoming', true);
  $('answer').focus();
}

function stopRing() {
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
  callId = null;
  callSince = null;
  show('call', false);
  $('mute').setAttribute('aria-pressed', 'false');
  $('hold').setAttribute('aria-pressed', 'false');
  if (reason) notice(`Call ended: ${reason}`);
}

$('signin-form').addEventListener('submit', signIn);
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
$('signout').addEventListener('click', async () => {
  signedOut = true;
  await fetch('/api/logout', { method: 'POST' });
  if (ws) ws.close();
  location.reload();
});

begin();
