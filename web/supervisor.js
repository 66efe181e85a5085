// The supervisor console: the live floor (calls, agents, queues), and Listen / Whisper / Stop.
// Listening plays the caller on the first audio element and the agent on the second.

import { $, show, notice, session } from '/session.js';

let today = {};
// When each agent's state was first seen as it is now (the floor says what, not since when).
const seenSince = new Map();

// Today's figures per queue, from the call records (midnight, this browser's time).
async function loadToday() {
  const midnight = new Date(); midnight.setHours(0, 0, 0, 0);
  const r = await fetch(`/api/calls?from=${midnight.getTime()}&limit=500`);
  if (!r.ok) return;
  const next = {};
  for (const c of (await r.json()).calls) {
    const q = next[c.queue || ''] ||= { answered: 0, abandoned: 0, fast: 0 };
    if (c.outcome === 'answered') {
      q.answered += 1;
      if (c.answered_at && c.answered_at - c.started_at <= 20000) q.fast += 1;
    }
    if (c.outcome === 'abandoned') q.abandoned += 1;
  }
  today = next;
}

async function loadRecords(ev) {
  if (ev) ev.preventDefault();
  const p = new URLSearchParams({ limit: '50' });
  for (const [id, key] of [['f-agent', 'agent'], ['f-queue', 'queue'], ['f-outcome', 'outcome'], ['f-direction', 'direction']]) {
    const v = $(id).value.trim(); if (v) p.set(key, v);
  }
  const r = await fetch(`/api/calls?${p}`);
  if (!r.ok) { notice('The call records could not be read.'); return; }
  const rows = $('record-rows'); rows.replaceChildren();
  for (const c of (await r.json()).calls) {
    const tr = document.createElement('tr');
    const direction = c.direction === 'outbound' ? `call-back by ${c.dialled_by || '?'}` : 'customer called';
    for (const text of [new Date(c.started_at).toLocaleString(), `${c.caller_name || ''} ${c.caller_number ? '+' + c.caller_number : ''}`,
      direction, c.queue || '', c.agents.join(', '), c.outcome.replace('_', ' '), c.ended_by]) cell(tr, text);
    const actions = cell(tr, '');
    if (c.caller_number && c.queue) {
      const b = button('Call back', () => scheduleCallBack(c));
      b.setAttribute('aria-label', `Call back +${c.caller_number}`);
      actions.appendChild(b);
    }
    rows.appendChild(tr);
  }
}

// A supervisor's Call back on any record: a call-back task for the record's queue, offered to
// its next free agent (`POST /api/v1/callbacks`).
async function scheduleCallBack(c) {
  const out = $('callback-result');
  const r = await fetch('/api/v1/callbacks', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ to: c.caller_number, queue: c.queue.split('@')[0], name: c.caller_name || undefined }),
  });
  const body = await r.json().catch(() => ({}));
  if (r.status === 201) out.textContent = `Call-back to +${c.caller_number} scheduled: the next free agent of ${c.queue} gets it.`;
  else if (r.status === 409) out.textContent = `+${c.caller_number} already has a call-back waiting.`;
  else out.textContent = `The call-back could not be scheduled: ${body.error || r.status}.`;
  loadTasks();
}

// The account's open call-back tasks, each withdrawable.
async function loadTasks() {
  const r = await fetch('/api/v1/callbacks');
  if (!r.ok) return;
  const tasks = (await r.json()).callbacks;
  const rows = $('task-rows'); rows.replaceChildren();
  $('tasks-empty').hidden = tasks.length > 0;
  const why = { abandoned: 'hung up waiting', unstaffed: 'nobody was there', scheduled: 'scheduled' };
  for (const t of tasks) {
    const tr = document.createElement('tr');
    for (const text of [`${t.name || ''} +${t.to}`, t.queue, t.person || 'anyone free', why[t.reason] || t.reason,
      t.note || '', t.due_at ? new Date(t.due_at).toLocaleString() : 'now']) cell(tr, text);
    const b = button('Withdraw', async () => {
      const d = await fetch(`/api/v1/callbacks/${encodeURIComponent(t.id)}`, { method: 'DELETE' });
      $('callback-result').textContent = d.ok ? `The call-back to +${t.to} was withdrawn.` : 'The call-back could not be withdrawn.';
      loadTasks();
    });
    b.setAttribute('aria-label', `Withdraw the call-back to +${t.to}`);
    cell(tr, '').appendChild(b);
    rows.appendChild(tr);
  }
}

const secs = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;

function shortCallId(id) {
  return !id ? '' : id.length <= 12 ? id : `…${id.slice(-8)}`;
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text ?? '';
  row.appendChild(td);
  return td;
}

function button(label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

function render(m, send) {
  const calls = $('calls');
  calls.replaceChildren();
  for (const c of m.calls) {
    const tr = document.createElement('tr');
    cell(tr, `${c.name || 'WhatsApp caller'} ${c.from ? '+' + c.from : ''}`);
    cell(tr, c.queue);
    cell(tr, c.state.replace('_', ' '));
    cell(tr, c.agent);
    cell(tr, secs(c.age_secs));
    cell(tr, (c.legs || []).map((l) => `${l.leg}: loss ${l.loss == null ? '–' : (l.loss * 100).toFixed(1) + '%'}, jitter ${l.jitter_ms == null ? '–' : l.jitter_ms.toFixed(0) + ' ms'}, rtt ${l.rtt_ms == null ? '–' : l.rtt_ms.toFixed(0) + ' ms'}`).join('; '));
    const actions = cell(tr, '');
    if (c.state === 'talking') {
      const listen = button('Listen', () => send({ type: 'monitor', call_id: c.call_id }));
      listen.title = `Listen to ${c.agent}'s call`;
      const whisper = button('Whisper', () => send({ type: 'whisper', call_id: c.call_id }));
      whisper.title = `Whisper to ${c.agent}`;
      actions.append(listen, ' ', whisper);
    }
    calls.appendChild(tr);
  }
  const agents = $('agents');
  agents.replaceChildren();
  for (const a of m.agents) {
    const tr = document.createElement('tr');
    cell(tr, a.id);
    const p = a.presence;
    const label = p.state.replace('_', ' ') + (p.reason ? ` (${p.reason})` : '');
    const seen = seenSince.get(a.id);
    if (!seen || seen.label !== label) seenSince.set(a.id, { label, at: Date.now() });
    cell(tr, label);
    cell(tr, secs(Math.floor((Date.now() - seenSince.get(a.id).at) / 1000)));
    // Meta's call ids are ~70 characters: the last 8 tell calls apart, the whole id on hover.
    const call = cell(tr, shortCallId(p.call_id));
    if (p.call_id) call.title = p.call_id;
    cell(tr, a.queues.join(', '));
    agents.appendChild(tr);
  }
  const queues = $('queues');
  queues.replaceChildren();
  for (const q of m.queues) {
    const tr = document.createElement('tr');
    cell(tr, q.id);
    cell(tr, String(q.waiting));
    cell(tr, secs(q.longest_wait_secs));
    const t = today[q.id] || { answered: 0, abandoned: 0, fast: 0 };
    cell(tr, String(t.answered));
    cell(tr, String(t.abandoned));
    cell(tr, t.answered ? `${Math.round(100 * t.fast / t.answered)}%` : '–');
    queues.appendChild(tr);
  }
}

function onMessage(m, send) {
  if (m.type === 'floor') render(m, send);
  else if (m.type === 'presence') {
    const names = { available: 'Available', away: 'Away', ringing: 'Ringing', on_call: 'On a call', wrap_up: 'Wrap-up' };
    $('state').textContent = (names[m.state] || m.state) + (m.reason ? ` (${m.reason})` : '');
  }
  else if (m.type === 'monitoring') {
    $('monitoring').textContent = m.call_id
      ? (m.whisper ? 'Whispering to the agent (the caller does not hear you).' : 'Listening (nobody hears you).')
      : 'Not listening.';
  } else if (m.type === 'error') notice(m.message);
}

const { send } = session({
  onMessage,
  onSignedIn: async () => {
    show('board', true);
    show('records', true);
    await loadToday();
    loadRecords();
    loadTasks();
    setInterval(loadToday, 30000);
    setInterval(loadTasks, 15000);
  },
});
$('filters').addEventListener('submit', loadRecords);
$('stop').addEventListener('click', () => send({ type: 'stop_monitor' }));
