// What the pages share: the sign-in (`signIn`), and for the supervisor's page the session on
// top of it (`session`): open /ws, keep one PeerConnection for the session (two audio m-lines:
// the first sends the microphone and plays the other party, the second plays a second voice),
// and reconnect by itself; the page supplies what to do with each message. The agent page has
// its session from the softphone module (/sdk/v1/switchboard.js) instead.

export const $ = (id) => document.getElementById(id);
export const show = (id, on) => { $(id).hidden = !on; };

export function notice(text) {
  $('notice').textContent = text || '';
  show('notice', !!text);
}

/**
 * The sign-in form, `GET /api/me` at load (a live cookie signs a reloaded page in by itself),
 * the person in the header, and Sign out. `onSignedIn(me)` runs once signed in; `onSignOut()`
 * once switchboard has ended the session, before the page reloads: a socket closed before
 * that would look like a dropped page, with a call held for the grace period.
 */
export function signIn({ onSignedIn, onSignOut = () => {} }) {
  async function begin() {
    const r = await fetch('/api/me');
    if (!r.ok) { show('signin', true); return; }
    const me = await r.json();
    $('who').textContent = `${me.name} (${me.role})`;
    show('signin', false); show('signout', true);
    await onSignedIn(me);
  }

  $('signin-form').addEventListener('submit', async (ev) => {
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
  });
  $('signout').addEventListener('click', async () => {
    await fetch('/api/logout', { method: 'POST' });
    onSignOut();
    location.reload();
  });

  begin();
}

export function session({ onMessage, onSignedIn }) {
  let ws = null;
  let pc = null;
  let mic = null;
  let retry = 1000;
  let signedOut = false;

  const send = (msg) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  };

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

  function connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.onopen = () => { retry = 1000; notice(''); };
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === 'welcome') setUpMedia();
      else if (m.type === 'answer') pc && pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
      else if (m.type === 'error' && (m.code === 'signed_out' || m.code === 'replaced')) {
        signedOut = true;
        notice(m.message);
      }
      onMessage(m, send);
    };
    ws.onclose = () => {
      if (pc) { pc.close(); pc = null; }
      if (signedOut) return;
      notice('The connection to switchboard was lost; reconnecting…');
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }

  signIn({
    onSignedIn: async (me) => {
      signedOut = false;
      await onSignedIn(me);
      try {
        mic = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (e) {
        notice('The microphone is not available (access denied?). Allow it for this page and reload.');
        return;
      }
      connect();
    },
    onSignOut: () => {
      signedOut = true;
      if (ws) ws.close();
    },
  });

  return { send: (m) => send(m) };
}
