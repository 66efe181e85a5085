// TypeScript declarations for switchboard's embeddable softphone, version 1
// (/sdk/v1/switchboard.js). docs/embedding.md shows it in use; docs/protocol.md is the protocol
// underneath.

/** The WebSocket subprotocol the module speaks. */
export const PROTOCOL: 'switchboard.v1';

/** A person's state on the floor, as switchboard sends it. */
export type Presence = 'offline' | 'available' | 'away' | 'ringing' | 'on_call' | 'wrap_up';

/** The agent page's words for each state ("Available", "On a call"…). */
export const STATE_LABELS: Readonly<Record<Presence, string>>;

export interface ConnectOptions {
  /** switchboard's base URL, e.g. `https://switchboard.example.com`. */
  url: string;
  /**
   * A session token from `POST /api/v1/sessions` (the host's backend, with an API key).
   * Required, unless `cookie`.
   */
  token?: string;
  /**
   * switchboard's own pages only (`url` is the page's origin): the session is the sign-in
   * cookie `POST /api/login` set, which the page's WebSocket carries; no `token`. Such a phone
   * cannot `setToken` or `refresh`: its person signs in again instead.
   */
  cookie?: boolean;
  /** A microphone's `deviceId` (`enumerateDevices`); default: the browser's. */
  microphone?: string;
  /** A speaker's `deviceId`, where the browser can choose (`setSinkId`); default: the browser's. */
  speaker?: string;
  /** Play a soft ring while a call rings (default true). */
  ringtone?: boolean;
}

export interface PhoneState {
  /**
   * The socket: `connecting` (not connected yet), `connected`, `reconnecting` (it was
   * connected; a call resumes if it is back within the grace period), `closed` (for good).
   */
  connection: 'connecting' | 'connected' | 'reconnecting' | 'closed';
  presence: Presence;
  /** Why away (`audio not connected`, `missed call`, one of the away reasons), else null. */
  reason: string | null;
  /** The call when ringing, on a call or in wrap-up. */
  callId: string | null;
  /** Wrap-up: seconds left when it began. */
  secondsLeft: number | null;
  /** The PeerConnection is connected. */
  audio: boolean;
}

export interface Me {
  /** As the account writes them: `ann@acme`. */
  id: string;
  name: string;
  /** `agent` or `supervisor` (an admin is a supervisor on the floor). */
  role: 'agent' | 'supervisor';
  queues: string[];
  awayReasons: string[];
}

export interface RingingCall {
  callId: string;
  /** The caller's WhatsApp number, digits without `+`. */
  from: string;
  /** The caller's WhatsApp profile name, or ''. */
  name: string;
  queue: string;
  /** The number the caller dialled, as people know it. */
  businessNumber: string;
  /** Its id at Meta (`phone_number_id`). */
  businessNumberId: string;
  waitedSecs: number;
  /** How long it rings here. */
  ringSecs: number;
}

export interface Call {
  callId: string;
  from: string;
  name: string;
  muted: boolean;
  held: boolean;
}

export interface PhoneError {
  /**
   * docs/protocol.md's error codes (`no_audio`, `busy`, `not_ringing`, `agent_unavailable`…,
   * and `signed_out`, `replaced`, which end the phone), and the module's own:
   * `connect_failed` (the socket could not be opened: an origin the account does not allow, a
   * dead token, switchboard unreachable; it keeps trying), `connection_lost` (it reconnects),
   * `microphone` (no microphone: the phone ends), `media` (the PeerConnection failed).
   */
  code: string;
  message: string;
  /** The phone has ended: connect again (with a new token) to go on. */
  fatal: boolean;
}

export interface Directory {
  /** Agents available now, as `toAgent` takes them. */
  agents: string[];
  /** The account's queues, as `toQueue` takes them. */
  queues: string[];
}

/** What switchboard said of your state (a `presence` message), each time it said it. */
export interface PresenceChange {
  presence: Presence;
  reason: string | null;
  callId: string | null;
  secondsLeft: number | null;
}

export interface PhoneEvents {
  ready: Me;
  /** Any change: the connection, the audio, or your presence. */
  state: PhoneState;
  /** switchboard said your state, changed or not (a state begun anew, a new wrap-up countdown). */
  presence: PresenceChange;
  /** The microphone was granted (before connecting), or `setMicrophone` switched it. */
  microphone: { stream: MediaStream };
  ringing: RingingCall;
  ring_stopped: { callId: string; reason: string };
  talking: Call;
  call_state: { callId: string; muted: boolean; held: boolean };
  dtmf: { callId: string; digit: string };
  ended: { callId: string; reason: string };
  directory: Directory;
  whisper: { callId: string; on: boolean };
  error: PhoneError;
  /** Every message switchboard sent, as sent (docs/protocol.md). */
  message: { type: string; [field: string]: unknown };
}

export interface Devices {
  microphones: { deviceId: string; label: string }[];
  speakers: { deviceId: string; label: string }[];
  /** The browser can play on a chosen speaker (`setSinkId`). */
  canChooseSpeaker: boolean;
}

export type TransferTarget = { toAgent: string; toQueue?: never } | { toQueue: string; toAgent?: never };

/** One signed-in softphone. Events are `CustomEvent`s whose `detail` is `PhoneEvents[name]`. */
export class Phone extends EventTarget {
  constructor(options: ConnectOptions);
  /** switchboard's origin. */
  readonly url: string;
  /** '' when the phone is signed in by its cookie. */
  readonly token: string;
  readonly state: PhoneState;
  readonly microphone: MediaStream | null;
  me: Me | null;
  directory: Directory;
  ringing: RingingCall | null;
  call: Call | null;
  /** Where the caller (`party`) and a whisper (`second`) play; not in the document. */
  readonly audio: { party: HTMLAudioElement; second: HTMLAudioElement };

  /** Calls `fn` with each event's detail; returns a function that stops it. */
  on<K extends keyof PhoneEvents>(name: K, fn: (detail: PhoneEvents[K]) => void): () => void;
  addEventListener<K extends keyof PhoneEvents>(name: K, fn: (e: CustomEvent<PhoneEvents[K]>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(name: string, fn: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof PhoneEvents>(name: K, fn: (e: CustomEvent<PhoneEvents[K]>) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(name: string, fn: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;

  /** Each returns false when there is nothing to act on (no call) or the socket is not open. */
  answer(callId?: string): boolean;
  decline(callId?: string): boolean;
  hangUp(): boolean;
  /** Without `on`, toggles. */
  mute(on?: boolean): boolean;
  /** Without `on`, toggles. */
  hold(on?: boolean): boolean;
  transfer(target: TransferTarget): boolean;
  setAvailable(available: boolean, reason?: string): boolean;
  wrapUpDone(): boolean;

  setMicrophone(deviceId: string): Promise<MediaStream | null>;
  /** False where the browser cannot choose a speaker. */
  setSpeaker(deviceId: string): Promise<boolean>;
  devices(): Promise<Devices>;

  /** Goes on with another session token of the same person (a call resumes). Throws with `cookie`. */
  setToken(token: string): void;
  /** `POST /api/v1/sessions/refresh`, then goes on with the new token. Rejects with `cookie`. */
  refresh(options?: { ttlSecs?: number }): Promise<{ token: string; expiresInSecs: number }>;
  /** Ends it: socket, PeerConnection and microphone. */
  close(): void;
}

/** Asks for the microphone and connects; returns at once. */
export function connect(options: ConnectOptions): Phone;

/**
 * `<switchboard-phone url="…" token="…" microphone? speaker? heading-level? no-ringtone?>`:
 * the agent page's controls in a shadow root. Style it with `--switchboard-*` custom properties
 * and `::part(…)`. It dispatches its phone's events on itself.
 */
export class SwitchboardPhoneElement extends HTMLElement {
  url: string;
  token: string;
  /** Its phone once it is in the document with `url` and `token`. */
  readonly phone: Phone | null;
  addEventListener<K extends keyof PhoneEvents>(name: K, fn: (e: CustomEvent<PhoneEvents[K]>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(name: string, fn: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

declare global {
  interface HTMLElementTagNameMap {
    'switchboard-phone': SwitchboardPhoneElement;
  }
}
