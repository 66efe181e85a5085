// The supervisor console: the live floor (calls, agents, queues), and Listen / Whisper / Stop.
// Listening plays the caller on the first audio element and the agent on the second.

import { $, show, notice, session } from '/session.js';

const secs = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;

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
    cell(tr, p.state.replace('_', ' ') + (p.reason ? ` (${p.reason})` : ''));
    cell(tr, p.call_id || '');
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
  },
});
$('stop').addEventListener('click', () => send({ type: 'stop_monitor' }));
