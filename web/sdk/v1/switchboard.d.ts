// TypeScript declarations for switchboard's embeddable softphone, version 1
// (/sdk/v1/switchboard.js). docs/embedding.md shows it in use; docs/protocol.md is the protocol
// underneath.

/** The WebSocket subprotocol the module speaks. */
export const PROTOCOL: 'switchboard.v1';

/** A person's state on the floor, as switchboard sends it. */
export type Presence = 'offline' | 'available' | 'away' | 'ringing' | 'on_call' | 'wrap_up';

/** The agent page's words for each state ("Available", "On a call"…). */
export const STATE_LABELS: Readonly<Record<Presence, string>>;

/** Each step of a call-back (docs/protocol.md, "Call-backs"). */
export type CallBackStatus = 'calling' | 'ringing' | 'connected' | 'declined' | 'no_answer' | 'cancelled' | 'failed';

/** Words for each step, for a message switchboard sent without its sentence. */
export const CALL_BACK_LABELS: Readonly<Record<CallBackStatus, string>>;

export type PermissionStatus = 'requested' | 'granted' | 'rejected' | 'failed';

/** Words for each permission step, for a message sent without its sentence. */
export const PERMISSION_LABELS: Readonly<Record<PermissionStatus, string>>;

/**
 * Why a call-back task is offered: the customer hung up while waiting (`abandoned`), called
 * when nobody was staffed (`unstaffed`), or it was `scheduled` through the API.
 */
export type TaskReason = 'abandoned' | 'unstaffed' | 'scheduled';

/** Why a task was withdrawn: `called_in` the customer called again, `call` a call rings at you. */
export type TaskStopReason = 'taken' | 'skipped' | 'cancelled' | 'called_in' | 'call';

/** "Hung up while waiting in support", "Called when nobody was available", "Scheduled: <note>". */
export function describeTask(task: Pick<Task, 'reason' | 'queue' | 'note'>): string;

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

/** One step of your call-back (the `call_back` event). */
export interface CallBack {
  /** The customer's number, digits without `+`. */
  to: string;
  /** Meta's call id once the call is placed; null before (and when it failed before). */
  callId: string | null;
  status: CallBackStatus;
  /** A plain sentence to show: "Calling…", "This customer has not given permission to be called." */
  message: string;
  /** Meta's error code (`failed`), e.g. 138006 (no permission); else null. */
  code: number | null;
  /** A permission request may be sent now (`askPermission(to)`). */
  canAskPermission: boolean;
  /** Meta's calls to this customer are used up (138012): when calling is allowed again, ms
   * since the epoch, when Meta said; else null. */
  retryAt: number | null;
}

/** The customer's call permission (the `permission` event). */
export interface Permission {
  to: string;
  status: PermissionStatus;
  /** A plain sentence to show (a failure says why: asked too often…). */
  message: string;
  /** `granted`: until when (ms since the epoch), unless permanent; else null. */
  expiresAt: number | null;
  permanent: boolean;
}

/** A call-back task offered to you (the `task` event). */
export interface Task {
  taskId: string;
  /** The customer's number, digits without `+`. */
  to: string;
  /** The customer's name, when known. */
  name: string | null;
  queue: string;
  reason: TaskReason;
  /** `scheduled`: what the API said of it. */
  note: string | null;
  /** When it is due (ms since the epoch), or null. */
  dueAt: number | null;
}

export interface PhoneError {
  /**
   * docs/protocol.md's error codes (`no_audio`, `busy`, `not_ringing`, `agent_unavailable`,
   * `bad_number`…,
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
  /** Each step of your call-back; after `connected`, `talking` follows and it is a call. */
  call_back: CallBack;
  /** What became of a permission request (`askPermission`). */
  permission: Permission;
  /** A call-back task is offered to you: `callBack(task.to, { taskId })` or `skipTask(taskId)`. */
  task: Task;
  /** The offer is withdrawn. */
  task_stopped: { taskId: string; reason: TaskStopReason };
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
  /** Your call-back while it is placed (calling, ringing); null once answered or over. */
  outgoing: CallBack | null;
  /** The call-back task offered to you now, or null. */
  task: Task | null;
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
  /**
   * Calls a WhatsApp user: `to` in international form (`+`, spaces, dashes, parentheses
   * ignored; 6–15 digits). `taskId` when it answers an offered task. Steps come as `call_back`.
   */
  callBack(to: string, options?: { taskId?: string }): boolean;
  /** Stops your call-back before it is answered. */
  cancelCallBack(): boolean;
  /** Sends the customer WhatsApp's call-permission request; the answer comes as `permission`. */
  askPermission(to: string): boolean;
  /** Passes the task on (by default the one offered now). */
  skipTask(taskId?: string): boolean;

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
