// switchboard's embeddable softphone, version 1: an ES module a page of the customer's own
// product imports from switchboard itself (no build step, no dependency):
//
//   import { connect } from 'https://switchboard.example.com/sdk/v1/switchboard.js';
//   const phone = connect({ url: 'https://switchboard.example.com', token });
//   phone.on('ringing', (call) => phone.answer(call.callId));
//
// or, with the standard controls, the custom element it defines:
//
//   <switchboard-phone url="https://switchboard.example.com" token="…"></switchboard-phone>
//
// `token` is a session the host's backend got from `POST /api/v1/sessions` with one of the
// account's API keys; the page's origin must be one of the account's `allowed_origins`
// (docs/embedding.md, docs/protocol.md "Sessions issued by the host" and "Pages of the
// customer's own product").
//
// The phone speaks docs/protocol.md over `/ws` exactly as switchboard's own agent page does: one
// WebSocket and one PeerConnection for the whole session (two audio m-lines: the first sends the
// microphone and plays the caller, the second plays a second voice, a supervisor's whisper), the
// offer sent once every candidate is gathered, and a new socket and PeerConnection, with
// backoff, whenever the socket drops: a reconnection within the account's grace period resumes
// the call. `signed_out` and `replaced` end it for good.
//
// switchboard's own agent page is built on this module too. Signed in with its own form, it
// holds no token: `connect({ url: location.origin, cookie: true })` lets the sign-in cookie,
// which a page of switchboard's origin sends with its WebSocket, be the session.
//
// Types: ./switchboard.d.ts beside this file.

/** The protocol version this module speaks (docs/protocol.md). */
export const PROTOCOL = 'switchboard.v1';

/** Presence states as the agent page writes them. */
export const STATE_LABELS = Object.freeze({
  available: 'Available', away: 'Away', ringing: 'Ringing', on_call: 'On a call',
  wrap_up: 'Wrap-up', offline: 'Offline',
});

/**
 * What each step of a call-back is in words, for a `call_back` message that came without its
 * sentence (switchboard sends one: these are the same words).
 */
export const CALL_BACK_LABELS = Object.freeze({
  calling: 'Calling…', ringing: 'Ringing on their phone', connected: 'Connected',
  declined: 'Declined', no_answer: 'No answer', cancelled: 'Cancelled',
  failed: 'The call could not be placed.',
});

/** The same for a `permission` message. */
export const PERMISSION_LABELS = Object.freeze({
  requested: 'Permission requested; waiting for the customer.',
  granted: 'The customer has given permission to be called.',
  rejected: 'The customer did not give permission to be called.',
  failed: 'The permission request could not be sent.',
});

/**
 * Why a call-back task is offered, in words: "Hung up while waiting in support", "Called when
 * nobody was available", "Scheduled: <note>". The agent page and the element say it alike.
 */
export function describeTask(task) {
  const queue = task.queue || 'the queue';
  switch (task.reason) {
    case 'abandoned': return `Hung up while waiting in ${queue}`;
    case 'unstaffed': return 'Called when nobody was available';
    case 'scheduled': return task.note ? `Scheduled: ${task.note}` : 'Scheduled';
    default: return task.note || 'Asked to be called back';
  }
}

/** The call-back steps after which nothing more of it comes (`connected` goes on as a call). */
const CALL_BACK_OVER = new Set(['declined', 'no_answer', 'cancelled', 'failed']);

const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 15000;
const PING_EVERY_MS = 20000;
/** Nothing heard for this long (pings included): the connection is taken as lost. */
const SILENT_MS = 45000;
const GATHER_MS = 2000;

/** The WebSocket address of `url` (http → ws, https → wss), path `/ws`. */
function wsAddress(url) {
  const u = new URL('/ws', url);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

/** `url` without a trailing slash, checked. */
function baseUrl(url) {
  if (typeof url !== 'string' || !url) throw new TypeError('connect: `url` is switchboard\'s address, e.g. https://switchboard.example.com');
  const u = new URL(url, typeof location === 'undefined' ? undefined : location.href);
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new TypeError('connect: `url` must be http: or https:');
  return u.origin;
}

const ownOrigin = () => (typeof location === 'undefined' ? null : location.origin);

const camel = (m) => ({
  callId: m.call_id ?? null, from: m.from ?? '', name: m.name ?? '', queue: m.queue ?? '',
  businessNumber: m.business_number ?? '', businessNumberId: m.business_number_id ?? '',
  waitedSecs: m.waited_secs ?? 0, ringSecs: m.ring_secs ?? 15,
});

const camelCallBack = (m) => ({
  to: m.to ?? '', callId: m.call_id ?? null, status: m.status,
  message: m.message || CALL_BACK_LABELS[m.status] || '', code: m.code ?? null,
  canAskPermission: !!m.can_ask_permission, retryAt: m.retry_at ?? null,
});

const camelPermission = (m) => ({
  to: m.to ?? '', status: m.status, message: m.message || PERMISSION_LABELS[m.status] || '',
  expiresAt: m.expires_at ?? null, permanent: !!m.permanent,
});

const camelTask = (m) => ({
  taskId: m.task_id, to: m.to ?? '', name: m.name ?? null, queue: m.queue ?? '',
  reason: m.reason, note: m.note ?? null, dueAt: m.due_at ?? null,
});

/**
 * One signed-in softphone: a session of one person, its WebSocket and PeerConnection.
 * Made by {@link connect}. Events (an EventTarget; each event's `detail` carries the data, and
 * `on(name, fn)` passes that detail to `fn`): `ready`, `state`, `presence`, `microphone`,
 * `ringing`, `ring_stopped`, `talking`, `call_state`, `dtmf`, `ended`, `directory`, `whisper`,
 * `call_back`, `permission`, `task`, `task_stopped`, `error`, `message`.
 */
export class Phone extends EventTarget {
  constructor({ url, token, cookie = false, microphone, speaker, ringtone = true } = {}) {
    super();
    this.url = baseUrl(url);
    this._cookie = !!cookie;
    if (this._cookie) {
      // The cookie is SameSite=Strict and switchboard refuses other origins' upgrades without a
      // token: from anywhere else the phone could only ever fail to connect.
      if (this.url !== ownOrigin()) throw new TypeError('connect: `cookie` is for pages of switchboard\'s own origin (`url`)');
      if (token !== undefined) throw new TypeError('connect: `cookie` or `token`, not both');
    } else if (typeof token !== 'string' || !token) {
      throw new TypeError('connect: `token` is a session token from POST /api/v1/sessions');
    }
    this._token = token || '';
    this._micId = microphone || null;
    this._speakerId = speaker || null;
    this._ringtone = ringtone;
    this._ws = null;
    this._pc = null;
    this._mic = null;
    this._retry = FIRST_RETRY_MS;
    this._retryTimer = null;
    this._pingTimer = null;
    this._heard = 0;
    this._ended = false;      // closed for good: close(), signed_out, replaced, no microphone
    this._failing = false;    // the last attempt never opened: `error` said so once already
    this._everOpened = false;
    this._firstPresence = false;
    this._ring = null;
    /** The person, from `welcome`: `{ id, name, role, queues, awayReasons }`. */
    this.me = null;
    /** Where a call can be transferred: `{ agents, queues }` (from `directory`). */
    this.directory = { agents: [], queues: [] };
    this._state = {
      connection: 'connecting', presence: 'offline', reason: null, callId: null,
      secondsLeft: null, audio: false,
    };
    /** The ringing call (the `ringing` event's detail), or null. */
    this.ringing = null;
    /** The call you are on: `{ callId, from, name, muted, held }`, or null. */
    this.call = null;
    /**
     * Your call-back while it is placed (the last `call_back` event's detail), until it is
     * answered (then it is `call`) or over; null otherwise.
     */
    this.outgoing = null;
    /** The call-back task offered to you now (the `task` event's detail), or null. */
    this.task = null;
    /**
     * Where the other party plays: `party` the caller (stream 0), `second` a supervisor's
     * whisper (stream 1). Plain `<audio>` elements, not in the document: a host may place them.
     */
    this.audio = { party: makeAudio(), second: makeAudio() };
    if (this._speakerId) this.setSpeaker(this._speakerId).catch(() => {});
    this._start();
  }

  /** The state as the last `state` event said it (a copy). */
  get state() { return { ...this._state }; }

  /** The microphone's stream, once granted. */
  get microphone() { return this._mic; }

  /** The session token in use ('' on the sign-in cookie). */
  get token() { return this._token; }

  /** Calls `fn(detail)` on each `name` event; returns a function that stops it. */
  on(name, fn) {
    const h = (e) => fn(e.detail);
    this.addEventListener(name, h);
    return () => this.removeEventListener(name, h);
  }

  _emit(name, detail) { this.dispatchEvent(new CustomEvent(name, { detail })); }

  _setState(change) {
    Object.assign(this._state, change);
    this._emit('state', this.state);
  }

  _error(code, message, fatal = false) {
    this._emit('error', { code, message, fatal });
  }

  _send(msg) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  async _start() {
    // Nothing is said before `connect()` has returned and its caller has had a chance to
    // listen: a browser without `mediaDevices` (an insecure origin) fails at once otherwise.
    await null;
    try {
      this._mic = await navigator.mediaDevices.getUserMedia({ audio: this._micId ? { deviceId: { exact: this._micId } } : true });
    } catch (e) {
      this._end('microphone', 'The microphone is not available (access denied?). Allow it for this page and connect again.');
      return;
    }
    if (this._ended) { this._releaseMic(); return; }
    this._emit('microphone', { stream: this._mic });
    this._open();
  }

  // One PeerConnection per socket, as the agent page: set up on `welcome`.
  async _setUpMedia(ws) {
    const pc = new RTCPeerConnection();
    this._pc = pc;
    pc.addTrack(this._mic.getAudioTracks()[0], this._mic);
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (e) => {
      const first = pc.getTransceivers()[0];
      const el = e.transceiver === first ? this.audio.party : this.audio.second;
      el.srcObject = e.streams[0] || new MediaStream([e.track]);
      el.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (this._pc !== pc) return;
      const up = pc.connectionState === 'connected';
      if (up !== this._state.audio) this._setState({ audio: up });
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((done) => {
      if (pc.iceGatheringState === 'complete') return done();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
      setTimeout(done, GATHER_MS);
    });
    if (this._ws === ws && this._pc === pc) this._send({ type: 'offer', sdp: pc.localDescription.sdp });
  }

  _open() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._ended) return;
    let ws;
    try {
      // A browser sets no header on a WebSocket: the token travels as a subprotocol.
      ws = new WebSocket(wsAddress(this.url), this._token ? [PROTOCOL, 'bearer.' + this._token] : [PROTOCOL]);
    } catch (e) {
      this._error('connect_failed', `Could not connect to switchboard: ${e.message}`);
      this._scheduleRetry();
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._everOpened = true;
      this._retry = FIRST_RETRY_MS;
      this._failing = false;
      this._heard = Date.now();
      this._firstPresence = true;
      this._setState({ connection: 'connected' });
      clearInterval(this._pingTimer);
      this._pingTimer = setInterval(() => this._keepAlive(ws), PING_EVERY_MS);
    };
    ws.onmessage = (e) => {
      if (this._ws !== ws) return;
      this._heard = Date.now();
      let m;
      try { m = JSON.parse(e.data); } catch (_) { return; }
      this._onMessage(m, ws);
    };
    ws.onclose = () => this._closed(ws, opened);
  }

  // Nothing heard for a while (a dead path the socket has not noticed): drop it and reconnect.
  _keepAlive(ws) {
    if (this._ws !== ws) return;
    if (Date.now() - this._heard > SILENT_MS) {
      ws.onclose = null;
      try { ws.close(); } catch (_) { /* already closing */ }
      this._closed(ws, true);
      return;
    }
    this._send({ type: 'ping' });
  }

  _closed(ws, opened) {
    if (this._ws !== ws) return;
    this._ws = null;
    clearInterval(this._pingTimer);
    if (this._pc) { this._pc.close(); this._pc = null; }
    if (this._ended) return;
    this._state.audio = false;
    if (ws._swap) {
      // A new token: straight back, on it.
      this._setState({ connection: 'reconnecting' });
      this._open();
      return;
    }
    if (!opened && !this._failing) {
      // A refused upgrade looks like any failed connection to a page: say what it may be.
      this._failing = true;
      this._error('connect_failed', 'Could not connect to switchboard: this page\'s origin may not be allowed for the account, the session may have ended, or switchboard cannot be reached. Retrying…');
    } else if (opened) {
      this._error('connection_lost', 'The connection to switchboard was lost; reconnecting…');
    }
    this._setState({ connection: this._everOpened ? 'reconnecting' : 'connecting' });
    this._scheduleRetry();
  }

  _scheduleRetry() {
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open(), this._retry);
    this._retry = Math.min(this._retry * 2, LAST_RETRY_MS);
  }

  _onMessage(m, ws) {
    switch (m.type) {
      case 'welcome':
        this.me = { id: m.id, name: m.name, role: m.role, queues: m.queues || [], awayReasons: m.away_reasons || [] };
        this._emit('ready', { ...this.me });
        this._setUpMedia(ws).catch((e) => this._error('media', `The audio connection could not be set up: ${e.message}`));
        break;
      case 'answer':
        if (this._pc) this._pc.setRemoteDescription({ type: 'answer', sdp: m.sdp }).catch((e) => this._error('media', `The audio connection could not be set up: ${e.message}`));
        break;
      case 'presence': this._onPresence(m); break;
      case 'ringing':
        this.ringing = camel(m);
        this._startRingtone();
        this._emit('ringing', { ...this.ringing });
        break;
      case 'ring_stopped': this._stopRinging(m.call_id, m.reason); break;
      case 'talking':
        if (this.ringing) this._stopRinging(this.ringing.callId, 'answered', true);
        {
          // A resumed call keeps what it was (muted, held).
          const same = this.call && this.call.callId === m.call_id;
          this.call = {
            callId: m.call_id, from: m.from ?? '', name: m.name ?? '',
            muted: same ? this.call.muted : false, held: same ? this.call.held : false,
          };
        }
        this.audio.party.play().catch(() => {});
        this._emit('talking', { ...this.call });
        break;
      case 'call_state':
        if (this.call && this.call.callId === m.call_id) Object.assign(this.call, { muted: !!m.muted, held: !!m.held });
        this._emit('call_state', { callId: m.call_id, muted: !!m.muted, held: !!m.held });
        break;
      case 'dtmf': this._emit('dtmf', { callId: m.call_id, digit: m.digit }); break;
      case 'call_ended': this._callEnded(m.call_id, m.reason); break;
      case 'directory':
        this.directory = { agents: m.agents || [], queues: m.queues || [] };
        this._emit('directory', { ...this.directory });
        break;
      case 'whisper': this._emit('whisper', { callId: m.call_id, on: !!m.on }); break;
      case 'call_back': {
        const c = camelCallBack(m);
        // Answered, it is a call like any other (`talking` follows); over, nothing is placed.
        this.outgoing = c.status === 'connected' || CALL_BACK_OVER.has(c.status) ? null : c;
        this._emit('call_back', { ...c });
        break;
      }
      case 'permission': this._emit('permission', camelPermission(m)); break;
      case 'task':
        this.task = camelTask(m);
        this._emit('task', { ...this.task });
        break;
      case 'task_stopped':
        if (this.task && this.task.taskId === m.task_id) this.task = null;
        this._emit('task_stopped', { taskId: m.task_id, reason: m.reason || '' });
        break;
      case 'error':
        if (m.code === 'signed_out' || m.code === 'replaced') this._end(m.code, m.message);
        else this._error(m.code, m.message);
        break;
      default: break;
    }
    this._emit('message', m);
  }

  _onPresence(m) {
    // The first state after a reconnection says what became of a call or ring meanwhile.
    if (this._firstPresence) {
      this._firstPresence = false;
      if (this.ringing && !(m.state === 'ringing' && m.call_id === this.ringing.callId)) this._stopRinging(this.ringing.callId, 'call ended');
      if (this.call && !(m.state === 'on_call' && m.call_id === this.call.callId)) this._callEnded(this.call.callId, 'the call ended while the connection was down');
    }
    const presence = {
      presence: m.state, reason: m.reason ?? null, callId: m.call_id ?? null,
      secondsLeft: m.seconds_left ?? null,
    };
    this._setState(presence);
    // `state` also changes with the connection and the audio; this is switchboard's word alone,
    // each time it is said, even unchanged (a new wrap-up countdown, a state begun anew).
    this._emit('presence', presence);
  }

  _stopRinging(callId, reason, quiet = false) {
    this._stopRingtone();
    if (!this.ringing || (callId && this.ringing.callId !== callId)) return;
    this.ringing = null;
    if (!quiet) this._emit('ring_stopped', { callId, reason: reason || '' });
  }

  _callEnded(callId, reason) {
    if (this.ringing && this.ringing.callId === callId) this._stopRinging(callId, reason);
    if (this.call && this.call.callId === callId) this.call = null;
    if (this.outgoing && this.outgoing.callId === callId) this.outgoing = null;
    this._emit('ended', { callId, reason: reason || '' });
  }

  // A soft two-tone ring while a call rings (WebAudio: no file, nothing fetched), as the agent
  // page plays it.
  _startRingtone() {
    this._stopRingtone();
    if (!this._ringtone || typeof AudioContext === 'undefined') return;
    try {
      const ctx = new AudioContext();
      if (this._speakerId && ctx.setSinkId) ctx.setSinkId(this._speakerId).catch(() => {});
      const gain = ctx.createGain(); gain.gain.value = 0; gain.connect(ctx.destination);
      for (const f of [440, 480]) { const o = ctx.createOscillator(); o.frequency.value = f; o.connect(gain); o.start(); }
      let on = false;
      const timer = setInterval(() => { on = !on; gain.gain.value = on ? 0.05 : 0; }, 1000);
      this._ring = { ctx, timer };
    } catch (e) { this._ring = null; }
  }

  _stopRingtone() {
    if (!this._ring) return;
    clearInterval(this._ring.timer); this._ring.ctx.close().catch(() => {}); this._ring = null;
  }

  _releaseMic() {
    if (this._mic) this._mic.getTracks().forEach((t) => t.stop());
    this._mic = null;
  }

  _end(code, message) {
    if (this._ended) return;
    this._ended = true;
    clearTimeout(this._retryTimer);
    clearInterval(this._pingTimer);
    this._stopRingtone();
    const ws = this._ws;
    this._ws = null;
    if (ws) { ws.onclose = null; try { ws.close(1000); } catch (_) { /* closing */ } }
    if (this._pc) { this._pc.close(); this._pc = null; }
    this._releaseMic();
    for (const el of [this.audio.party, this.audio.second]) el.srcObject = null;
    this.ringing = null;
    this.call = null;
    this.outgoing = null;
    this.task = null;
    this._state.audio = false;
    if (code) this._error(code, message, true);
    this._setState({ connection: 'closed', presence: 'offline', reason: null, callId: null, secondsLeft: null });
  }

  // ----- What a person does -----

  /** Takes the ringing call (by default the one ringing now). False when none rings. */
  answer(callId) {
    const id = callId || (this.ringing && this.ringing.callId);
    if (!id) return false;
    this.audio.party.play().catch(() => {});
    return this._send({ type: 'answer', call_id: id });
  }

  /** Refuses the ringing call: it rings on elsewhere and you are set away. */
  decline(callId) {
    const id = callId || (this.ringing && this.ringing.callId);
    return !!id && this._send({ type: 'decline', call_id: id });
  }

  /** Ends the call you are on. */
  hangUp() {
    return !!this.call && this._send({ type: 'hang_up', call_id: this.call.callId });
  }

  /** Mutes (the caller hears silence) or unmutes; without `on`, toggles. */
  mute(on) {
    if (!this.call) return false;
    return this._send({ type: 'mute', call_id: this.call.callId, on: on === undefined ? !this.call.muted : !!on });
  }

  /** Holds (the caller hears hold audio) or resumes; without `on`, toggles. */
  hold(on) {
    if (!this.call) return false;
    return this._send({ type: 'hold', call_id: this.call.callId, on: on === undefined ? !this.call.held : !!on });
  }

  /** Blind transfer of your call: `{ toAgent: 'bob@acme' }` or `{ toQueue: 'sales@acme' }`. */
  transfer({ toAgent, toQueue } = {}) {
    if (!this.call || !!toAgent === !!toQueue) return false;
    return this._send(toAgent
      ? { type: 'transfer', call_id: this.call.callId, to_agent: toAgent }
      : { type: 'transfer', call_id: this.call.callId, to_queue: toQueue });
  }

  /** Available (true), or away with one of `me.awayReasons`. */
  setAvailable(available, reason) {
    const msg = { type: 'set_presence', available: !!available };
    if (!available && reason) msg.reason = String(reason);
    return this._send(msg);
  }

  /** Ends your wrap-up now ("Done"). */
  wrapUpDone() { return this._send({ type: 'wrap_up_done' }); }

  /**
   * Calls a WhatsApp user back: `to` in international form (`+`, spaces, dashes and
   * parentheses are ignored), `taskId` when it answers the offered task. Each step comes as a
   * `call_back` event; switchboard's refusals (`bad_number`, `busy`, `no_audio`) as `error`.
   */
  callBack(to, { taskId } = {}) {
    if (to == null || String(to).trim() === '') return false;
    const msg = { type: 'call_back', to: String(to).trim() };
    if (taskId) msg.task_id = String(taskId);
    return this._send(msg);
  }

  /** Stops your call-back before it is answered. */
  cancelCallBack() { return this._send({ type: 'cancel_call_back' }); }

  /** Sends the customer WhatsApp's request for permission to call them (`permission` events). */
  askPermission(to) {
    if (to == null || String(to).trim() === '') return false;
    return this._send({ type: 'ask_permission', to: String(to).trim() });
  }

  /** Passes the offered call-back task on (by default the one offered now). */
  skipTask(taskId) {
    const id = taskId || (this.task && this.task.taskId);
    return !!id && this._send({ type: 'skip_task', task_id: String(id) });
  }

  /** Another microphone: the session's one sender switches track, no renegotiation. */
  async setMicrophone(deviceId) {
    const next = await navigator.mediaDevices.getUserMedia({ audio: deviceId ? { deviceId: { exact: deviceId } } : true });
    if (this._ended) { next.getTracks().forEach((t) => t.stop()); return null; }
    const track = next.getAudioTracks()[0];
    const sender = this._pc && this._pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
    if (sender) await sender.replaceTrack(track);
    this._releaseMic();
    this._mic = next;
    this._micId = deviceId || null;
    this._emit('microphone', { stream: next });
    return next;
  }

  /** Plays the call (and the ring) on this output device; false where the browser cannot choose. */
  async setSpeaker(deviceId) {
    this._speakerId = deviceId || null;
    if (!canChooseSpeaker()) return false;
    for (const el of [this.audio.party, this.audio.second]) await el.setSinkId(deviceId || '');
    if (this._ring && this._ring.ctx.setSinkId) await this._ring.ctx.setSinkId(deviceId || '').catch(() => {});
    return true;
  }

  /** Microphones and speakers, to choose from (labels once the microphone is granted). */
  async devices() { return listDevices(); }

  /**
   * Goes on with another session token of the same person (a new one from your backend's
   * `POST /api/v1/sessions`): the socket is opened again with it at once; a call resumes.
   */
  setToken(token) {
    if (typeof token !== 'string' || !token) throw new TypeError('setToken: a session token');
    // The cookie travels with every upgrade and switchboard reads it before any token.
    if (this._cookie) throw new TypeError('setToken: this phone is signed in by its cookie; sign in again instead');
    if (token === this._token) return;
    this._token = token;
    if (this._ended) return;
    if (this._ws) {
      this._ws._swap = true;
      this._ws.close(1000, 'new token');
    } else if (this._retryTimer) {
      this._retry = FIRST_RETRY_MS;
      this._open();
    }
  }

  /**
   * `POST /api/v1/sessions/refresh` with the session's own token, then goes on with the new
   * one (the old one ends at once). Answers `{ token, expiresInSecs }`.
   */
  async refresh({ ttlSecs } = {}) {
    // A refresh ends the session it refreshes: the cookie's, which the page could not replace.
    if (this._cookie) throw new Error('refresh: this phone is signed in by its cookie; sign in again instead');
    const r = await fetch(`${this.url}/api/v1/sessions/refresh`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this._token}`, 'content-type': 'application/json' },
      body: JSON.stringify(ttlSecs ? { ttl_secs: ttlSecs } : {}),
    });
    if (!r.ok) throw new Error(`switchboard refused the refresh (${r.status})`);
    const body = await r.json();
    this.setToken(body.token);
    return { token: body.token, expiresInSecs: body.expires_in_secs };
  }

  /** Closes the socket and the audio, and releases the microphone, for good. */
  close() { this._end(null); }
}

function makeAudio() {
  if (typeof Audio === 'undefined') return null;
  const el = new Audio();
  el.autoplay = true;
  return el;
}

function canChooseSpeaker() {
  return typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;
}

async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  const pick = (kind, fallback) => all.filter((d) => d.kind === kind)
    .map((d, i) => ({ deviceId: d.deviceId, label: d.label || `${fallback} ${i + 1}` }));
  return { microphones: pick('audioinput', 'Microphone'), speakers: pick('audiooutput', 'Speaker'), canChooseSpeaker: canChooseSpeaker() };
}

/**
 * Opens a session on switchboard: asks for the microphone, then connects. Returns the
 * {@link Phone} at once; its `state` events say how far it got, `error` what went wrong.
 */
export function connect(options) {
  return new Phone(options);
}

// ---------------------------------------------------------------------------------------------
// <switchboard-phone url="…" token="…">: the agent page's controls, in a shadow root.

const CSS = `
:host { display: block; font-family: var(--switchboard-font, system-ui, sans-serif); color: var(--switchboard-text, #1b1f24); }
[hidden] { display: none !important; }
.panel { background: var(--switchboard-background, #fff); border: var(--switchboard-border, 1px solid #dde1e6); border-radius: var(--switchboard-radius, .5rem); padding: var(--switchboard-padding, 1rem); display: grid; gap: .75rem; }
.title { margin: 0; font-size: 1.05rem; }
p { margin: 0; }
.row { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
button, select { font: inherit; }
button { padding: .45rem 1rem; border-radius: .3rem; border: 1px solid var(--switchboard-accent, #1f3b57); background: var(--switchboard-background, #fff); color: var(--switchboard-accent, #1f3b57); cursor: pointer; }
button:disabled { opacity: .6; cursor: default; }
button:focus-visible, select:focus-visible { outline: 3px solid var(--switchboard-focus, #f0a500); outline-offset: 2px; }
button[aria-pressed="true"] { background: var(--switchboard-accent, #1f3b57); color: var(--switchboard-accent-text, #fff); }
.answer { background: var(--switchboard-answer, #17803d); border-color: var(--switchboard-answer, #17803d); color: var(--switchboard-answer-text, #fff); }
.danger { background: var(--switchboard-danger, #b42318); border-color: var(--switchboard-danger, #b42318); color: var(--switchboard-danger-text, #fff); }
.notice { background: var(--switchboard-notice-background, #fff4e5); border: 1px solid var(--switchboard-focus, #f0a500); padding: .5rem 1rem; border-radius: .3rem; }
.card { display: grid; gap: .5rem; }
.said { position: absolute; width: 1px; height: 1px; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.card + .card { border-top: 1px solid var(--switchboard-rule, #dde1e6); padding-top: .75rem; }
`;

let sheet = null;
function styleFor(root) {
  // A constructed stylesheet is not inline style: a page whose Content Security Policy forbids
  // inline style still applies it. (Older browsers get a <style> element, which such a policy
  // blocks.)
  try {
    if (!sheet) { sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); }
    root.adoptedStyleSheets = [sheet];
  } catch (e) {
    const s = document.createElement('style');
    s.textContent = CSS;
    root.appendChild(s);
  }
}

/** An element: `h('button', { part: 'answer', type: 'button' }, 'Answer')`. No HTML parsing. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c != null) el.append(c);
  return el;
}

const clock = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;

const Base = typeof HTMLElement === 'undefined' ? class {} : HTMLElement;

/**
 * `<switchboard-phone url="…" token="…" [microphone="deviceId"] [speaker="deviceId"]
 * [heading-level="2"] [no-ringtone]>`: connects when it has both `url` and `token` and is in
 * the document; `token` may change (a refreshed session), the call goes on. Its phone is
 * `element.phone`; every event of the phone is dispatched on the element too.
 */
export class SwitchboardPhoneElement extends Base {
  static get observedAttributes() { return ['url', 'token']; }

  constructor() {
    super();
    this.phone = null;
    this._off = [];
    this._timer = null;
    this._root = this.attachShadow({ mode: 'open' });
    styleFor(this._root);
    this._e = null;
  }

  get url() { return this.getAttribute('url') || ''; }
  set url(v) { this.setAttribute('url', v); }
  get token() { return this.getAttribute('token') || ''; }
  set token(v) { this.setAttribute('token', v); }

  connectedCallback() {
    this._ensureBuilt();
    this._connectIfReady();
  }

  disconnectedCallback() {
    // A move within the document disconnects and connects again at once: keep the phone then.
    queueMicrotask(() => { if (!this.isConnected) this._drop(); });
  }

  attributeChangedCallback(name, old, value) {
    if (old === value) return;
    if (name === 'token' && this.phone && value) this.phone.setToken(value);
    else if (name === 'url' && this.phone) { this._drop(); this._connectIfReady(); }
    else this._connectIfReady();
  }

  _connectIfReady() {
    if (this.phone || !this.isConnected || !this.url || !this.token) return;
    this._ensureBuilt();
    let phone;
    try {
      phone = connect({
        url: this.url, token: this.token,
        microphone: this.getAttribute('microphone') || undefined,
        speaker: this.getAttribute('speaker') || undefined,
        ringtone: !this.hasAttribute('no-ringtone'),
      });
    } catch (e) {
      this._notice(e.message);
      return;
    }
    this.phone = phone;
    for (const el of [phone.audio.party, phone.audio.second]) if (el) { el.hidden = true; this._root.append(el); }
    const names = ['ready', 'state', 'presence', 'microphone', 'ringing', 'ring_stopped', 'talking', 'call_state', 'dtmf', 'ended', 'directory', 'whisper', 'call_back', 'permission', 'task', 'task_stopped', 'error', 'message'];
    for (const n of names) {
      const fn = (e) => {
        this._on(n, e.detail);
        this.dispatchEvent(new CustomEvent(n, { detail: e.detail }));
      };
      phone.addEventListener(n, fn);
      this._off.push(() => phone.removeEventListener(n, fn));
    }
    this._render();
    this._timer = setInterval(() => this._tick(), 1000);
  }

  _drop() {
    for (const off of this._off) off();
    this._off = [];
    clearInterval(this._timer);
    this._devices = false;
    if (this.phone) {
      for (const el of [this.phone.audio.party, this.phone.audio.second]) if (el) el.remove();
      this.phone.close();
    }
    this.phone = null;
  }

  // Built once in the document, where its attributes (heading-level) are there to read.
  _ensureBuilt() {
    if (this._e) return;
    const level = Math.min(6, Math.max(1, Number(this.getAttribute('heading-level')) || 2));
    const heading = (id, text) => h(`h${level}`, { id, class: 'title', part: 'title' }, text);
    const button = (id, text, extra = {}, cls = '') => h('button', { id, type: 'button', part: `button ${id}`, class: cls || null, ...extra }, text);
    const e = {};
    const $ = (id, el) => { e[id] = el; return el; };
    const root = h('section', { class: 'panel', part: 'panel', 'aria-label': 'Phone' },
      $('notice', h('p', { id: 'notice', class: 'notice', part: 'notice', role: 'alert', hidden: true })),
      h('div', { class: 'card', part: 'presence', role: 'group', 'aria-labelledby': 'state-title' },
        heading('state-title', 'Your state'),
        h('p', {}, $('state', h('span', { id: 'state', part: 'state', 'aria-live': 'polite' }, 'connecting…')), ' ', $('stateTime', h('span', { part: 'state-time' }))),
        h('div', { class: 'row' },
          $('available', button('available', 'Available')),
          h('label', { for: 'reason', part: 'label' }, 'Away reason'),
          $('reason', h('select', { id: 'reason', part: 'reason' })),
          $('away', button('away', 'Away')))),
      $('incoming', h('div', { class: 'card', part: 'incoming', role: 'group', 'aria-labelledby': 'incoming-title', hidden: true },
        heading('incoming-title', 'Incoming call'),
        h('p', { part: 'caller' }, $('inName', h('strong')), ' ', $('inNumber', h('span'))),
        $('inDetail', h('p', { part: 'call-detail' })),
        h('div', { class: 'row' },
          $('answer', button('answer', 'Answer', { 'aria-keyshortcuts': 'Alt+A' }, 'answer')),
          $('decline', button('decline', 'Decline', { 'aria-keyshortcuts': 'Alt+D' }, 'danger'))))),
      $('task', h('div', { class: 'card', part: 'task', role: 'group', 'aria-labelledby': 'task-title', hidden: true },
        heading('task-title', 'Call-back request'),
        h('p', { part: 'task-customer' }, $('taskName', h('strong')), ' ', $('taskNumber', h('span'))),
        $('taskWhy', h('p', { part: 'task-reason' })),
        $('taskDue', h('p', { part: 'task-due' })),
        h('div', { class: 'row' },
          $('taskCall', button('task-call', 'Call back', {}, 'answer')),
          $('taskSkip', button('task-skip', 'Skip'))))),
      $('outgoing', h('div', { class: 'card', part: 'callback', role: 'group', 'aria-labelledby': 'callback-title', hidden: true },
        heading('callback-title', 'Call-back'),
        h('p', { part: 'caller' }, $('outNumber', h('span'))),
        $('outStatus', h('p', { id: 'callback-status', part: 'callback-status', role: 'status', 'aria-live': 'polite' })),
        h('div', { class: 'row' },
          $('outCancel', button('callback-cancel', 'Cancel', { hidden: true }, 'danger')),
          $('outAsk', button('ask-permission', 'Ask for permission', { hidden: true })),
          $('outNow', button('call-now', 'Call now', { hidden: true }, 'answer'))))),
      $('call', h('div', { class: 'card', part: 'call', role: 'group', 'aria-labelledby': 'call-title', hidden: true },
        heading('call-title', 'In call'),
        h('p', { part: 'caller' }, $('callName', h('strong')), ' ', $('callNumber', h('span')), ' · ', $('callTimer', h('span', { part: 'call-timer' }, '0:00'))),
        h('div', { class: 'row' },
          $('mute', button('mute', 'Mute', { 'aria-pressed': 'false', 'aria-keyshortcuts': 'Alt+M' })),
          $('hold', button('hold', 'Hold', { 'aria-pressed': 'false', 'aria-keyshortcuts': 'Alt+H' })),
          $('hangup', button('hangup', 'Hang up', { 'aria-keyshortcuts': 'Alt+X' }, 'danger'))),
        h('div', { class: 'row' },
          h('label', { for: 'transfer-to', part: 'label' }, 'Transfer to'),
          $('transferTo', h('select', { id: 'transfer-to', part: 'transfer-to' })),
          $('transfer', button('transfer', 'Transfer'))),
        h('p', {}, 'Keys pressed by the caller: ', $('dtmf', h('span', { part: 'dtmf', 'aria-live': 'polite' }))),
        $('whisper', h('p', { part: 'whisper', role: 'status', hidden: true }, 'A supervisor is whispering to you.')))),
      $('wrapup', h('div', { class: 'card', part: 'wrapup', role: 'group', 'aria-labelledby': 'wrapup-title', hidden: true },
        heading('wrapup-title', 'Wrap-up'),
        $('wrapText', h('p', { 'aria-live': 'polite' })),
        h('div', { class: 'row' }, $('done', button('done', 'Done'))))),
      h('div', { class: 'card', part: 'devices', role: 'group', 'aria-labelledby': 'devices-title' },
        heading('devices-title', 'Microphone and speaker'),
        h('div', { class: 'row' },
          h('label', { for: 'mic-select', part: 'label' }, 'Microphone'),
          $('micSelect', h('select', { id: 'mic-select', part: 'microphone' })),
          h('label', { for: 'speaker-select', part: 'label' }, 'Speaker'),
          $('speakerSelect', h('select', { id: 'speaker-select', part: 'speaker' })))),
      // A task is said as it is offered, for it asks nothing at once and takes no focus; from
      // outside its card, as a live region that appears with its card is not read (and last,
      // where it parts no two cards).
      $('taskSaid', h('p', { class: 'said', 'aria-live': 'polite' })));
    this._root.append(root);
    this._e = e;
    this._since = Date.now();
    this._callSince = null;
    this._ringDetail = null;
    this._ringAt = 0;
    this._wrapUntil = null;
    this._noticeKind = '';
    this._devices = false;
    this._cbTo = null;       // the number of the last call-back, for Ask for permission
    this._cbTaskId = null;   // the task the last call-back answered
    this._cbCallId = null;   // its call, once answered: its end clears the status line
    this._permTo = null;     // the number a permission was granted for, for Call now

    const p = () => this.phone;
    e.available.addEventListener('click', () => p() && p().setAvailable(true));
    e.away.addEventListener('click', () => p() && p().setAvailable(false, e.reason.value));
    e.answer.addEventListener('click', () => p() && p().answer());
    e.decline.addEventListener('click', () => p() && p().decline());
    e.hangup.addEventListener('click', () => p() && p().hangUp());
    e.mute.addEventListener('click', () => p() && p().mute());
    e.hold.addEventListener('click', () => p() && p().hold());
    e.done.addEventListener('click', () => p() && p().wrapUpDone());
    e.taskCall.addEventListener('click', () => {
      const t = p() && p().task;
      if (t) { this._cbTaskId = t.taskId; p().callBack(t.to, { taskId: t.taskId }); }
    });
    e.taskSkip.addEventListener('click', () => p() && p().skipTask());
    e.outCancel.addEventListener('click', () => p() && p().cancelCallBack());
    e.outAsk.addEventListener('click', () => p() && this._cbTo && p().askPermission(this._cbTo));
    e.outNow.addEventListener('click', () => {
      if (!p() || !this._permTo) return;
      // The task goes with the call only while it is still offered.
      const t = p().task;
      p().callBack(this._permTo, t && t.taskId === this._cbTaskId ? { taskId: t.taskId } : {});
    });
    e.transfer.addEventListener('click', () => {
      const [kind, ...rest] = (e.transferTo.value || '').split(':');
      const id = rest.join(':');
      if (!p() || !id) return;
      p().transfer(kind === 'agent' ? { toAgent: id } : { toQueue: id });
    });
    e.micSelect.addEventListener('change', async () => {
      try { await p().setMicrophone(e.micSelect.value); } catch (err) { this._notice('That microphone could not be opened.'); }
    });
    // The agent page's shortcuts, while the focus is in the phone (page-wide access keys would
    // take the host's own keys): Alt+A answer, Alt+D decline, Alt+M mute, Alt+H hold, Alt+X
    // hang up. By the key's place (`code`): Option+M on a Mac types a character.
    const keys = { KeyA: e.answer, KeyD: e.decline, KeyM: e.mute, KeyH: e.hold, KeyX: e.hangup };
    this.addEventListener('keydown', (ev) => {
      const b = ev.altKey && !ev.ctrlKey && !ev.metaKey && !ev.shiftKey && keys[ev.code];
      if (!b || b.disabled || b.closest('[hidden]')) return;
      ev.preventDefault();
      b.click();
    });
    e.speakerSelect.addEventListener('change', () => p() && p().setSpeaker(e.speakerSelect.value).catch(() => this._notice('That speaker could not be used.')));
  }

  // `kind` 'connection': a notice that goes once the connection is up again.
  _notice(text, kind = '') {
    this._e.notice.textContent = text || '';
    this._e.notice.hidden = !text;
    this._noticeKind = text ? kind : '';
  }

  _render() {
    const ph = this.phone;
    if (!ph) return;
    const s = ph.state;
    const e = this._e;
    let text = { connecting: 'connecting…', reconnecting: 'reconnecting…', closed: 'Offline' }[s.connection];
    if (!text) {
      text = STATE_LABELS[s.presence] || s.presence;
      if (s.presence === 'away' && s.reason) text += ` (${s.reason})`;
    }
    e.state.textContent = text;
    const live = s.connection === 'connected';
    for (const b of [e.available, e.away, e.reason]) b.disabled = !live;
    this._renderCallBack();
    // The devices are there to choose once the microphone is granted.
    if (!this._devices && ph.microphone) { this._devices = true; this._fillDevices(); }
  }

  async _fillDevices() {
    const e = this._e;
    const d = await listDevices().catch(() => null);
    if (!d) return;
    e.micSelect.replaceChildren(...d.microphones.map((m) => new Option(m.label, m.deviceId)));
    e.speakerSelect.replaceChildren(...d.speakers.map((m) => new Option(m.label, m.deviceId)));
    e.speakerSelect.disabled = false;
    if (!d.canChooseSpeaker || d.speakers.length === 0) {
      e.speakerSelect.replaceChildren(new Option('Default (this browser cannot choose)', ''));
      e.speakerSelect.disabled = true;
    }
  }

  _on(name, d) {
    const e = this._e;
    switch (name) {
      case 'ready':
        e.reason.replaceChildren(...d.awayReasons.map((r) => new Option(r, r)));
        break;
      case 'state': {
        const prev = this._shown;
        this._shown = `${d.presence}|${d.reason}`;
        if (prev !== this._shown) this._since = Date.now();
        if (d.connection === 'connected' && this._noticeKind === 'connection') this._notice('');
        e.wrapup.hidden = d.presence !== 'wrap_up';
        this._wrapUntil = d.presence === 'wrap_up' ? Date.now() + 1000 * (d.secondsLeft ?? 0) : null;
        this._render();
        this._tick();
        break;
      }
      case 'ringing': {
        e.inName.textContent = d.name || 'WhatsApp caller';
        e.inNumber.textContent = d.from ? `+${d.from}` : '';
        this._ringDetail = d;
        this._ringAt = Date.now();
        e.incoming.hidden = false;
        this._tick();
        // Focus moves to Answer only when it is not taken from something else of the page.
        const active = document.activeElement;
        if (!active || active === document.body || active === this) e.answer.focus();
        break;
      }
      case 'ring_stopped':
        e.incoming.hidden = true;
        if (d.reason === 'missed') this._notice('You missed a call and were set away. Press Available when you are back.');
        break;
      case 'talking':
        e.incoming.hidden = true;
        e.callName.textContent = d.name || 'WhatsApp caller';
        e.callNumber.textContent = d.from ? `+${d.from}` : '';
        if (!this._callSince) this._callSince = Date.now();
        e.dtmf.textContent = '';
        e.mute.setAttribute('aria-pressed', String(d.muted));
        e.hold.setAttribute('aria-pressed', String(d.held));
        e.call.hidden = false;
        this._tick();
        break;
      case 'call_state':
        e.mute.setAttribute('aria-pressed', String(d.muted));
        e.hold.setAttribute('aria-pressed', String(d.held));
        break;
      case 'dtmf': e.dtmf.textContent += d.digit; break;
      case 'whisper': e.whisper.hidden = !d.on; break;
      case 'directory': {
        const keep = e.transferTo.value;
        e.transferTo.replaceChildren(
          ...d.agents.map((a) => new Option(`Agent ${a}`, `agent:${a}`)),
          ...d.queues.map((q) => new Option(`Queue ${q}`, `queue:${q}`)));
        if ([...e.transferTo.options].some((o) => o.value === keep)) e.transferTo.value = keep;
        break;
      }
      case 'call_back': {
        const active = d.status === 'calling' || d.status === 'ringing';
        // Read before this step disables or hides the button pressed to get here. The focus is
        // never taken from the host page's own controls.
        const a = this._root.activeElement;
        const lost = a ? a === e.taskCall || a === e.outNow || a.disabled || !!a.closest('[hidden]')
          : !document.activeElement || document.activeElement === document.body;
        this._cbTo = d.to;
        this._cbCallId = d.status === 'connected' ? d.callId : null;
        this._permTo = null;
        e.outNumber.textContent = d.to ? `+${d.to}` : '';
        e.outStatus.textContent = d.retryAt
          ? `${d.message} (${new Date(d.retryAt).toLocaleString()} your time)` : d.message;
        e.outCancel.hidden = !active;
        e.outAsk.hidden = !d.canAskPermission;
        e.outNow.hidden = true;
        e.outgoing.hidden = false;
        if (active && lost) e.outCancel.focus();
        this._renderCallBack();
        break;
      }
      case 'permission':
        e.outNumber.textContent = d.to ? `+${d.to}` : '';
        e.outStatus.textContent = d.message;
        e.outAsk.hidden = true;
        e.outCancel.hidden = true;
        this._permTo = d.status === 'granted' ? d.to : null;
        e.outNow.hidden = !this._permTo;
        e.outgoing.hidden = false;
        break;
      case 'task':
        e.taskName.textContent = d.name || 'WhatsApp customer';
        e.taskNumber.textContent = d.to ? `+${d.to}` : '';
        e.taskWhy.textContent = describeTask(d);
        e.taskDue.textContent = d.dueAt ? `Due ${new Date(d.dueAt).toLocaleString()}` : '';
        e.taskDue.hidden = !d.dueAt;
        e.task.hidden = false;
        e.taskSaid.textContent = `Call-back request: ${e.taskName.textContent} ${e.taskNumber.textContent}. ${e.taskWhy.textContent}.`;
        this._renderCallBack();
        break;
      case 'task_stopped':
        if (!this.phone || !this.phone.task) { e.task.hidden = true; e.taskSaid.textContent = ''; }
        break;
      case 'ended':
        if (this._cbCallId && this._cbCallId === d.callId) {
          this._cbCallId = null;
          e.outgoing.hidden = true;
          e.outStatus.textContent = '';
        }
        this._callSince = null;
        e.call.hidden = true;
        e.incoming.hidden = true;
        e.whisper.hidden = true;
        e.mute.setAttribute('aria-pressed', 'false');
        e.hold.setAttribute('aria-pressed', 'false');
        if (d.reason) this._notice(`Call ended: ${d.reason}`);
        break;
      case 'error':
        this._notice(d.message || d.code, d.code === 'connect_failed' || d.code === 'connection_lost' ? 'connection' : '');
        if (d.fatal) {
          for (const c of [e.call, e.incoming, e.wrapup, e.task, e.outgoing]) c.hidden = true;
          this._render();
        }
        break;
      default: break;
    }
  }

  // A call-back can be placed while nothing else is: not ringing, on a call or in wrap-up.
  _renderCallBack() {
    const ph = this.phone;
    const e = this._e;
    const s = ph ? ph.state : null;
    const free = !!s && s.connection === 'connected' && (s.presence === 'available' || s.presence === 'away') && !ph.outgoing;
    e.taskCall.disabled = !free;
    e.outNow.disabled = !free;
  }

  _tick() {
    const e = this._e;
    const s = Math.floor((Date.now() - this._since) / 1000);
    e.stateTime.textContent = this.phone && this.phone.state.connection !== 'closed' ? `for ${clock(s)}` : '';
    if (this._ringDetail && !e.incoming.hidden) {
      const d = this._ringDetail;
      const left = Math.max(0, Math.ceil(d.ringSecs - (Date.now() - this._ringAt) / 1000));
      e.inDetail.textContent = `Queue ${d.queue} · to ${d.businessNumber} · waited ${d.waitedSecs} s · rings here for ${left} s more`;
    }
    if (this._wrapUntil) {
      const left = Math.max(0, Math.ceil((this._wrapUntil - Date.now()) / 1000));
      e.wrapText.textContent = `Wrap-up: ${left} s left, then you go back to your state before the call. Press Done when you are ready.`;
    }
    if (this._callSince) e.callTimer.textContent = clock(Math.floor((Date.now() - this._callSince) / 1000));
  }
}

if (typeof customElements !== 'undefined' && !customElements.get('switchboard-phone')) {
  customElements.define('switchboard-phone', SwitchboardPhoneElement);
}
