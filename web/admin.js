// The administration page: the signed-in supervisor's or admin's own account — its people,
// queues, numbers, settings, API keys, event endpoints and audit log — through /api/v1/accounts/{slug}/… (docs/protocol.md,
// "The accounts API"). It opens no /ws and asks for no microphone: a second connection of the
// same person would replace their floor or softphone on another tab. The server decides who may
// do what; the page only leaves out what the role could not do.

import { $, show, notice } from '/session.js';

let me = null;
let slug = 'default';
let isAdmin = false;
// As last read, to tell whether a row changed under the person before they act on it.
let people = [];
let queues = [];
let defaultQueue = '';
let settingsTag = null;
let auditNext = null;
// The API keys as last listed, and the id of the one whose key the page shows (just made).
let apiKeys = [];
let newKeyId = '';
// The event endpoints as last listed; the one whose signing secret the page shows (just made or
// rotated); the one whose delivery log is open, the `next` of its last page read, and the key
// of the button that opened it.
let endpoints = [];
let secretOf = '';
let deliveriesOf = null;
let deliveriesNext = null;
let deliveriesFrom = '';

// The signed-in person's id within the account (`sam` of `sam@acme`).
const ownId = () => me.id.replace(/@[^@]*$/, '');

const ROLES = { agent: 'Agent', supervisor: 'Supervisor', admin: 'Admin' };
const ACTIONS = {
  'account.create': 'created the account',
  'person.create': 'added a person',
  'person.update': 'changed a person',
  'queue.create': 'added a queue',
  'queue.update': 'changed a queue',
  'number.add': 'added a number',
  'number.update': 'changed a number',
  'settings.update': 'changed the settings',
  'key.create': 'made an API key',
  'key.revoke': 'revoked an API key',
  'endpoint.create': 'added an event endpoint',
  'endpoint.update': 'changed an event endpoint',
  'endpoint.remove': 'removed an event endpoint',
  'endpoint.rotate_secret': 'gave an event endpoint a new secret',
  'endpoint.disable': 'disabled an event endpoint',
};

// ---- requests ----

class ApiError extends Error {
  constructor(status, body) {
    super(body.error || `switchboard answered ${status}`);
    this.status = status;
    this.field = body.field || '';
    // "password: 12-256 characters" names its field already; the page names it its own way.
    const prefix = `${this.field}: `;
    this.reason = this.field && this.message.startsWith(prefix) ? this.message.slice(prefix.length) : this.message;
  }
}

const enc = encodeURIComponent;

// `method` on the account's `path`; answers `{ data, etag }` or throws an ApiError.
async function api(method, path, { body, etag } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (etag) headers['If-Match'] = etag;
  let r;
  try {
    r = await fetch(`/api/v1/accounts/${enc(slug)}${path}`, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { error: 'switchboard could not be reached: check the connection and try again.' });
  }
  const data = await r.json().catch(() => ({}));
  if (r.status === 401) {
    // The session ended (signed out elsewhere, expired, password changed): sign in again.
    location.reload();
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return { data, etag: r.headers.get('ETag') };
}

// Every page of a list (`people`, `queues`, `numbers`).
async function all(path, key) {
  const items = [];
  let after = '';
  for (;;) {
    const q = new URLSearchParams({ limit: '500' });
    if (after) q.set('after', after);
    const { data } = await api('GET', `${path}?${q}`);
    items.push(...(data[key] || []));
    if (!data.next) return items;
    after = data.next;
  }
}

// What to tell the person about `e`, `what` naming the thing it was about.
function explain(e, what, labels = {}) {
  if (e.status === 412) {
    return `Someone else changed ${what} meanwhile, so nothing was saved. Press Reload to see their change, then try again.`;
  }
  if (e.status === 403) return `Not saved: ${e.message}.`;
  if (e.status === 404) return `${what} is no longer there. Press Reload.`;
  if (e.field) {
    const root = e.field.replace(/[[.].*$/, '');
    return `${labels[root] || e.field}: ${e.reason}`;
  }
  return e.message;
}

// Shows `e` in the error paragraph `id`, marking the field it names in `form` (by its name).
function fail(id, e, what, labels = {}, form = null) {
  const el = $(id);
  el.textContent = explain(e, what, labels);
  el.hidden = false;
  // The last "Saved by" is not this one's.
  $('status').textContent = '';
  if (form && e.field) {
    const root = e.field.replace(/[[.].*$/, '');
    const input = root === 'queues' || root === 'types' ? form.querySelector('input[type=checkbox]') : form.elements.namedItem(root);
    if (input instanceof HTMLElement) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  }
}

function clearError(id, form = null) {
  $(id).textContent = '';
  $(id).hidden = true;
  if (form) form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
}

// A change went through: who made it, in the status region, and the audit log again.
function saved(what) {
  $('status').textContent = `Saved by ${me.id}: ${what}.`;
  loadAudit();
}

// ---- building blocks ----

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text ?? '';
  row.appendChild(td);
  return td;
}

// A button; `key` names it across a table's re-rendering (see `keepingFocus`).
function button(label, title, onClick, key = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (title) b.title = title;
  if (key) b.dataset.key = key;
  b.addEventListener('click', onClick);
  return b;
}

// Focus on the button with `key`, if it is (still, or again) in the page.
function focusKey(key) {
  const b = key && document.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (b) b.focus();
  return !!b;
}

// Runs `render` (which rebuilds rows); a keyboard user whose focus was on a row's button finds
// it on that row's new button, not back at the top of the page.
function keepingFocus(render) {
  const key = document.activeElement?.dataset?.key;
  render();
  if (key) focusKey(key);
}

function option(select, value, text, selected) {
  const o = new Option(text, value);
  o.selected = !!selected;
  select.add(o);
}

const same = (a, b, keys) => keys.every((k) => JSON.stringify(a[k] ?? null) === JSON.stringify(b[k] ?? null));

// Reads `path` again and answers its ETag if it is still as `shown` (by `keys`); else throws 412
// as the server would: the person acted on what they saw, not on what is there now.
async function stillAsShown(path, shown, keys) {
  const { data, etag } = await api('GET', path);
  if (!same(data, shown, keys)) throw new ApiError(412, {});
  return etag;
}

// Checkboxes labelled by each queue, in `fieldset`, `checked` ticked.
function queueBoxes(fieldset, checked, prefix) {
  fieldset.querySelectorAll('label').forEach((l) => l.remove());
  for (const q of queues) {
    const label = document.createElement('label');
    label.className = 'check';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = 'queues';
    box.value = q.id;
    box.id = `${prefix}-${q.id}`;
    box.checked = checked.includes(q.id);
    label.append(box, ` ${q.id}`);
    fieldset.appendChild(label);
  }
}

// A checkbox for each event type in `fieldset`, labelled by its name.
function typeBoxes(fieldset) {
  for (const t of EVENT_TYPES) {
    const label = document.createElement('label');
    label.className = 'check';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = 'types';
    box.value = t;
    box.id = `e-type-${t.replace('.', '-')}`;
    label.append(box, ` ${t}`);
    fieldset.appendChild(label);
  }
}

const ticked = (fieldset) => [...fieldset.querySelectorAll('input[type=checkbox]:checked')].map((b) => b.value);

function roleOptions(select, current) {
  select.replaceChildren();
  for (const [value, text] of Object.entries(ROLES)) {
    // A supervisor manages agents and supervisors; admins are an admin's.
    if (value === 'admin' && !isAdmin) continue;
    option(select, value, text, value === current);
  }
}

// ---- people ----

async function loadPeople() {
  try {
    people = await all('/people', 'people');
  } catch (e) {
    fail('people-error', e, 'the people');
    return;
  }
  clearError('people-error');
  keepingFocus(() => renderPeople());
}

function renderPeople() {
  const rows = $('people-rows');
  rows.replaceChildren();
  for (const p of people) {
    const tr = document.createElement('tr');
    tr.id = `person-${p.id}`;
    cell(tr, p.id);
    cell(tr, p.name);
    cell(tr, ROLES[p.role] || p.role);
    cell(tr, p.queues.join(', '));
    cell(tr, p.disabled ? 'Disabled' : 'Active');
    const actions = cell(tr, '');
    if (p.role === 'admin' && !isAdmin) {
      actions.textContent = 'Managed by admins';
    } else {
      actions.className = 'actions';
      actions.append(button('Change', `Change ${p.id}'s name, role or queues`, () => editPerson(p), `person:${p.id}:change`));
      // Nobody locks themselves out from here.
      if (p.id !== ownId()) {
        actions.append(button(p.disabled ? 'Enable' : 'Disable', `${p.disabled ? 'Enable' : 'Disable'} ${p.id}`,
          () => setDisabled(p, !p.disabled), `person:${p.id}:disabled`));
      }
      actions.append(button('Reset password', `Give ${p.id} a new password`, () => resetPassword(p), `person:${p.id}:password`));
    }
    rows.appendChild(tr);
  }
}

const PERSON_KEYS = ['name', 'role', 'queues', 'disabled'];
const PERSON_LABELS = { id: 'Id', name: 'Name', role: 'Role', queues: 'Queues', password: 'Password', disabled: 'Status' };

async function setDisabled(p, disabled) {
  clearError('people-error');
  try {
    const etag = await stillAsShown(`/people/${enc(p.id)}`, p, PERSON_KEYS);
    await api('PATCH', `/people/${enc(p.id)}`, { body: { disabled }, etag });
  } catch (e) {
    fail('people-error', e, p.id, PERSON_LABELS);
    return;
  }
  saved(disabled ? `${p.id} disabled (signed out everywhere)` : `${p.id} enabled`);
  await loadPeople();
}

async function addPerson(ev) {
  ev.preventDefault();
  const form = $('add-person');
  clearError('add-person-error', form);
  const body = {
    id: $('p-id').value.trim(),
    name: $('p-name').value.trim(),
    role: $('p-role').value,
    queues: ticked($('p-queues')),
    password: $('p-password').value,
  };
  try {
    await api('POST', '/people', { body });
  } catch (e) {
    fail('add-person-error', e, body.id || 'the person', PERSON_LABELS, form);
    return;
  }
  form.reset();
  roleOptions($('p-role'), 'agent');
  saved(`${body.id} added (${ROLES[body.role]}${body.queues.length ? `, ${body.queues.join(', ')}` : ''})`);
  await loadPeople();
  $('p-id').focus();
}

// A modal dialog titled `title` holding `fields` (built by the caller), with `submit` and
// Cancel; removed from the page once closed, focus back on `from`.
function dialog(title, fields, submit, onSubmit, from) {
  const d = document.createElement('dialog');
  const h = document.createElement('h2');
  h.id = 'dialog-title';
  h.textContent = title;
  d.setAttribute('aria-labelledby', h.id);
  const form = document.createElement('form');
  form.noValidate = true;
  const error = document.createElement('p');
  error.id = 'dialog-error';
  error.className = 'error';
  error.setAttribute('role', 'alert');
  error.hidden = true;
  const ok = document.createElement('button');
  ok.type = 'submit';
  ok.textContent = submit;
  const cancel = button('Cancel', '', () => d.close());
  const buttons = document.createElement('div');
  buttons.className = 'row buttons';
  buttons.append(ok, cancel);
  form.append(...fields, error, buttons);
  d.append(h, form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError('dialog-error', form);
    ok.disabled = true;
    try {
      if (await onSubmit(form)) d.close();
    } finally {
      ok.disabled = false;
    }
  });
  d.addEventListener('close', () => {
    d.remove();
    // The row may have been drawn again meanwhile: its new button then.
    if (from && from.isConnected) from.focus();
    else if (from && from.dataset) focusKey(from.dataset.key);
  });
  document.body.appendChild(d);
  d.showModal();
  return d;
}

function labelled(id, text, control) {
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = text;
  control.id = id;
  return [label, control];
}

async function editPerson(p) {
  const from = document.activeElement;
  clearError('people-error');
  let now;
  let etag;
  try {
    ({ data: now, etag } = await api('GET', `/people/${enc(p.id)}`));
  } catch (e) {
    fail('people-error', e, p.id, PERSON_LABELS);
    return;
  }
  const name = document.createElement('input');
  name.name = 'name';
  name.value = now.name;
  name.autocomplete = 'off';
  const role = document.createElement('select');
  role.name = 'role';
  roleOptions(role, now.role);
  const boxes = document.createElement('fieldset');
  const legend = document.createElement('legend');
  legend.textContent = `Queues of ${p.id}`;
  boxes.appendChild(legend);
  queueBoxes(boxes, now.queues, 'e-queue');
  dialog(`Change ${p.id}`, [...labelled('e-name', `Name of ${p.id}`, name), ...labelled('e-role', `Role of ${p.id}`, role), boxes],
    'Save changes', async (form) => {
      const body = {};
      if (name.value.trim() !== now.name) body.name = name.value.trim();
      if (role.value !== now.role) body.role = role.value;
      const qs = ticked(boxes);
      if (JSON.stringify(qs) !== JSON.stringify(now.queues)) body.queues = qs;
      if (!Object.keys(body).length) return true;
      try {
        await api('PATCH', `/people/${enc(p.id)}`, { body, etag });
      } catch (e) {
        fail('dialog-error', e, p.id, PERSON_LABELS, form);
        return false;
      }
      saved(`${p.id} changed (${Object.keys(body).join(', ')})`);
      await loadPeople();
      return true;
    }, from);
}

async function resetPassword(p) {
  const from = document.activeElement;
  clearError('people-error');
  let etag;
  try {
    etag = await stillAsShown(`/people/${enc(p.id)}`, p, PERSON_KEYS);
  } catch (e) {
    fail('people-error', e, p.id, PERSON_LABELS);
    return;
  }
  const password = document.createElement('input');
  password.type = 'password';
  password.name = 'password';
  password.autocomplete = 'new-password';
  password.setAttribute('aria-describedby', 'r-password-hint');
  const hint = document.createElement('p');
  hint.id = 'r-password-hint';
  hint.className = 'hint';
  hint.textContent = `At least 12 characters. ${p.id} is signed out everywhere and signs in with the new one.`;
  dialog(`Reset ${p.id}'s password`, [...labelled('r-password', `New password for ${p.id}`, password), hint],
    'Set password', async (form) => {
      try {
        await api('PATCH', `/people/${enc(p.id)}`, { body: { password: password.value }, etag });
      } catch (e) {
        fail('dialog-error', e, p.id, { password: 'New password' }, form);
        return false;
      }
      saved(`new password for ${p.id}`);
      await loadPeople();
      return true;
    }, from);
}

// ---- queues ----

async function loadQueues() {
  try {
    queues = await all('/queues', 'queues');
  } catch (e) {
    fail('queues-error', e, 'the queues');
    return;
  }
  clearError('queues-error');
  keepingFocus(() => renderQueues());
}

function renderQueues() {
  const rows = $('queue-rows');
  rows.replaceChildren();
  for (const q of queues) {
    const tr = document.createElement('tr');
    cell(tr, q.id);
    const policy = document.createElement('select');
    policy.setAttribute('aria-label', `When nobody is free, ${q.id}`);
    option(policy, 'queue', 'Wait in the queue', q.policy === 'queue');
    option(policy, 'decline', 'Decline at once', q.policy === 'decline');
    cell(tr, '').appendChild(policy);
    const wait = document.createElement('input');
    wait.type = 'number';
    wait.min = '0';
    wait.step = '1';
    wait.size = 6;
    wait.value = q.max_wait_secs ?? 120;
    wait.disabled = q.policy === 'decline';
    wait.setAttribute('aria-label', `Maximum wait of ${q.id} in seconds`);
    policy.addEventListener('change', () => { wait.disabled = policy.value === 'decline'; });
    cell(tr, '').appendChild(wait);
    cell(tr, '').appendChild(button('Save', `Save queue ${q.id}`, () => saveQueue(q, policy.value, wait.value), `queue:${q.id}`));
    rows.appendChild(tr);
  }
  // The queues people may take, and where numbers lead.
  const box = $('p-queues');
  queueBoxes(box, ticked(box), 'p-queue');
  show('p-queues-none', !queues.length);
}

async function saveQueue(q, policy, wait) {
  clearError('queues-error');
  const body = { policy };
  if (policy === 'queue') body.max_wait_secs = Number(wait);
  const path = `/queues/${enc(q.id)}`;
  try {
    const etag = await stillAsShown(path, q, ['policy', 'max_wait_secs']);
    await api('PATCH', path, { body, etag });
  } catch (e) {
    fail('queues-error', e, `queue ${q.id}`, { max_wait_secs: `Maximum wait of ${q.id}`, policy: `When nobody is free, ${q.id}` });
    return;
  }
  saved(policy === 'queue' ? `queue ${q.id} waits at most ${body.max_wait_secs} s` : `queue ${q.id} declines when nobody is free`);
  await loadQueues();
}

async function addQueue(ev) {
  ev.preventDefault();
  const form = $('add-queue');
  clearError('add-queue-error', form);
  const body = { id: $('q-id').value.trim(), policy: $('q-policy').value };
  if (body.policy === 'queue') body.max_wait_secs = Number($('q-wait').value);
  try {
    await api('POST', '/queues', { body });
  } catch (e) {
    fail('add-queue-error', e, `queue ${body.id}`, { id: 'Queue id', policy: 'When nobody is free', max_wait_secs: 'Maximum wait' }, form);
    return;
  }
  form.reset();
  saved(`queue ${body.id} added`);
  await loadQueues();
  await loadSettings();
}

// ---- numbers ----

async function loadNumbers() {
  let numbers;
  try {
    numbers = await all('/numbers', 'numbers');
  } catch (e) {
    fail('numbers-error', e, 'the numbers');
    return;
  }
  clearError('numbers-error');
  $('numbers-note').textContent = isAdmin
    ? 'Which queue each business number\'s calls go to. New numbers are added by whoever runs switchboard.'
    : 'Which queue each business number\'s calls go to. Only admins change it.';
  show('numbers-actions', isAdmin);
  keepingFocus(() => renderNumbers(numbers));
}

function renderNumbers(numbers) {
  const rows = $('number-rows');
  rows.replaceChildren();
  if (!numbers.length) {
    const tr = document.createElement('tr');
    cell(tr, 'No numbers yet.').colSpan = isAdmin ? 3 : 2;
    rows.appendChild(tr);
  }
  const fallback = `Default queue (${defaultQueue || '…'})`;
  for (const n of numbers) {
    const tr = document.createElement('tr');
    cell(tr, n.phone_number_id);
    if (!isAdmin) {
      cell(tr, n.queue || fallback);
    } else {
      const select = document.createElement('select');
      select.setAttribute('aria-label', `Calls to ${n.phone_number_id} go to`);
      option(select, '', fallback, !n.queue);
      for (const q of queues) option(select, q.id, q.id, q.id === n.queue);
      cell(tr, '').appendChild(select);
      cell(tr, '').appendChild(button('Save', `Save number ${n.phone_number_id}`, () => saveNumber(n, select.value), `number:${n.phone_number_id}`));
    }
    rows.appendChild(tr);
  }
}

async function saveNumber(n, queue) {
  clearError('numbers-error');
  const path = `/numbers/${enc(n.phone_number_id)}`;
  try {
    const etag = await stillAsShown(path, n, ['queue']);
    await api('PATCH', path, { body: { queue: queue || null }, etag });
  } catch (e) {
    fail('numbers-error', e, `number ${n.phone_number_id}`, { queue: `Calls to ${n.phone_number_id} go to` });
    return;
  }
  saved(`number ${n.phone_number_id} goes to ${queue || 'the default queue'}`);
  await loadNumbers();
}

// ---- settings ----

const SETTINGS = [
  ['s-name', 'name', 'Account name'],
  ['s-default-queue', 'default_queue', 'Default queue'],
  ['s-away', 'away_reasons', 'Away reasons'],
  ['s-ring', 'ring_timeout_secs', 'Ring time'],
  ['s-wrap', 'wrap_up_secs', 'Wrap-up'],
  ['s-grace', 'grace_secs', 'Reconnect grace'],
  ['s-deadline', 'answer_deadline_secs', 'Answer deadline'],
];

async function loadSettings() {
  let s;
  try {
    ({ data: s, etag: settingsTag } = await api('GET', '/settings'));
  } catch (e) {
    fail('settings-error', e, 'the settings');
    return;
  }
  clearError('settings-error', $('settings-form'));
  defaultQueue = s.default_queue;
  const dq = $('s-default-queue');
  dq.replaceChildren();
  for (const q of queues) option(dq, q.id, q.id, q.id === s.default_queue);
  if (!queues.some((q) => q.id === s.default_queue)) option(dq, s.default_queue, s.default_queue, true);
  $('s-name').value = s.name;
  // One a line: a reason holds no line break (nor any control character), so this is exact.
  $('s-away').value = s.away_reasons.join('\n');
  $('s-away').rows = Math.min(Math.max(s.away_reasons.length, 3), 10);
  for (const [id, key] of SETTINGS.slice(3)) $(id).value = s[key];
  // Read-only for supervisors: the values are there to read, the server refuses a change.
  for (const [id] of SETTINGS) {
    const el = $(id);
    if (el.tagName === 'SELECT') el.disabled = !isAdmin;
    else el.readOnly = !isAdmin;
  }
  show('settings-save', isAdmin);
  $('settings-note').textContent = isAdmin
    ? 'How calls ring and end for everyone in the account. A change applies to the next call.'
    : 'How calls ring and end for everyone in the account. Only admins change them.';
}

async function saveSettings(ev) {
  ev.preventDefault();
  const form = $('settings-form');
  clearError('settings-error', form);
  const body = {
    name: $('s-name').value.trim(),
    default_queue: $('s-default-queue').value,
    away_reasons: awayReasons(),
  };
  for (const [id, key] of SETTINGS.slice(3)) body[key] = Number($(id).value);
  try {
    await api('PATCH', '/settings', { body, etag: settingsTag });
  } catch (e) {
    // `away_reasons[2]`: which one, as the person typed it.
    const i = /^away_reasons\[(\d+)\]$/.exec(e.field || '')?.[1];
    const r = i === undefined ? undefined : body.away_reasons[Number(i)];
    if (r !== undefined) e.reason = `“${r.length > 43 ? `${r.slice(0, 40)}…` : r}” (reason ${Number(i) + 1}): ${e.reason}`;
    fail('settings-error', e, 'the settings', Object.fromEntries(SETTINGS.map(([, k, l]) => [k, l])), form);
    return;
  }
  saved('settings changed');
  await loadSettings();
  await loadNumbers();
}

// The away reasons as typed, one a line, blank lines left out.
const awayReasons = () => $('s-away').value.split(/\r?\n/).map((r) => r.trim()).filter(Boolean);

// ---- API keys ----

const KEY_LABELS = { name: 'Key name', role: 'Key role', api_keys: 'API keys' };
const when = (ms) => new Date(ms).toLocaleString();

async function loadKeys() {
  try {
    apiKeys = await all('/keys', 'keys');
  } catch (e) {
    fail('keys-error', e, 'the API keys');
    return;
  }
  clearError('keys-error');
  keepingFocus(() => renderKeys());
}

function renderKeys() {
  const rows = $('key-rows');
  rows.replaceChildren();
  if (!apiKeys.length) {
    const tr = document.createElement('tr');
    cell(tr, 'No keys yet.').colSpan = 6;
    rows.appendChild(tr);
  }
  for (const k of apiKeys) {
    const tr = document.createElement('tr');
    tr.id = `key-${k.id}`;
    cell(tr, k.name);
    cell(tr, ROLES[k.role] || k.role);
    cell(tr, when(k.created_at));
    cell(tr, k.created_by);
    cell(tr, k.id);
    const actions = cell(tr, '');
    actions.className = 'actions';
    actions.append(button('Revoke', `Revoke key ${k.name} (${k.id})`, () => revokeKey(k), `key:${k.id}:revoke`));
    rows.appendChild(tr);
  }
}

// Shows the key just made, once: only its hash is kept, so the page cannot show it again.
function showNewKey(made) {
  newKeyId = made.id;
  $('new-key').value = made.key;
  $('new-key-hint').textContent = `Key ${made.name} (${ROLES[made.role] || made.role}): the account's own servers send `
    + `it as "Authorization: Bearer …" on /api/v1/accounts/${slug}/…, and may do what a${made.role === 'admin' ? 'n' : ''} `
    + `${(ROLES[made.role] || made.role).toLowerCase()} may. Keep it secret.`;
  $('new-key-note').textContent = '';
  show('new-key-part', true);
  $('new-key').focus();
  $('new-key').select();
}

function hideNewKey() {
  newKeyId = '';
  $('new-key').value = '';
  show('new-key-part', false);
}

async function copyNewKey() {
  const field = $('new-key');
  try {
    await navigator.clipboard.writeText(field.value);
    $('new-key-note').textContent = 'Copied.';
  } catch (e) {
    // No clipboard (a page not on https, say): selected, for the person to copy.
    field.focus();
    field.select();
    $('new-key-note').textContent = 'Selected: press Ctrl+C (⌘C) to copy it.';
  }
}

async function addKey(ev) {
  ev.preventDefault();
  const form = $('add-key');
  clearError('add-key-error', form);
  const body = { name: $('k-name').value.trim(), role: $('k-role').value };
  let made;
  try {
    ({ data: made } = await api('POST', '/keys', { body }));
  } catch (e) {
    fail('add-key-error', e, `key ${body.name}`, KEY_LABELS, form);
    return;
  }
  form.reset();
  saved(`key ${made.name} made (${ROLES[made.role] || made.role}); copy it now, it is not shown again`);
  await loadKeys();
  showNewKey(made);
}

function revokeKey(k) {
  const from = document.activeElement;
  clearError('keys-error');
  const text = document.createElement('p');
  text.id = 'revoke-text';
  text.className = 'wide';
  text.textContent = `Requests with key ${k.name} (${k.id}, ${ROLES[k.role] || k.role}, made by ${k.created_by}) `
    + 'are refused from now on. This cannot be undone: a new key would have to be made and given to its server.';
  // Where focus goes once this key's row is gone: the next key's Revoke, else the new key's name.
  const at = apiKeys.findIndex((x) => x.id === k.id);
  let revoked = false;
  const d = dialog(`Revoke key ${k.name}?`, [text], 'Revoke key', async (form) => {
    try {
      await api('DELETE', `/keys/${enc(k.id)}`);
    } catch (e) {
      fail('dialog-error', e, `key ${k.name}`, KEY_LABELS, form);
      return false;
    }
    revoked = true;
    if (k.id === newKeyId) hideNewKey();
    saved(`key ${k.name} revoked`);
    await loadKeys();
    return true;
  }, from);
  d.setAttribute('aria-describedby', text.id);
  d.addEventListener('close', () => {
    if (!revoked) return;
    const next = apiKeys[Math.min(at, apiKeys.length - 1)];
    if (!(next && focusKey(`key:${next.id}:revoke`))) $('k-name').focus();
  });
  // The safe choice first: Enter on opening does not revoke.
  [...d.querySelectorAll('button')].find((b) => b.textContent === 'Cancel')?.focus();
}

// ---- event endpoints ----

// Every event type, in the order the docs list them (an endpoint taking none takes all).
const EVENT_TYPES = [
  'call.offered', 'call.ringing', 'call.queued', 'call.answered', 'call.held', 'call.resumed',
  'call.transferred', 'call.ended', 'agent.state',
];
const ENDPOINT_LABELS = {
  url: 'Endpoint URL', description: 'Description', types: 'Events to send', secret: 'Signing secret', endpoints: 'Event endpoints',
};
const ENDPOINT_KEYS = ['url', 'description', 'types', 'enabled', 'disabled_reason'];
const DELIVERY_STATUS = { pending: 'Pending', paused: 'Paused', delivered: 'Delivered', failed: 'Failed' };
// Rows of a delivery log a page.
const DELIVERIES_PAGE = 20;

// An endpoint as people tell them apart: its description, else its URL.
const endpointName = (e) => e.description || e.url;

// A button of endpoint `e`'s, named for it ("Remove crm backend"): a list of rows of "Remove"
// buttons says nothing to whoever moves from button to button.
function endpointButton(e, label, title, onClick, key, named = `${label} ${endpointName(e)}`) {
  const b = button(label, title, onClick, key);
  b.setAttribute('aria-label', named);
  return b;
}
const disabledBySwitchboard = (e) => !e.enabled && !!e.disabled_reason;
const endpointState = (e) => (e.enabled ? 'Enabled'
  : e.disabled_reason ? `Disabled by switchboard: ${e.disabled_reason}` : 'Disabled');

async function loadEndpoints() {
  try {
    endpoints = await all('/endpoints', 'endpoints');
  } catch (e) {
    fail('endpoints-error', e, 'the event endpoints');
    return;
  }
  clearError('endpoints-error');
  keepingFocus(() => {
    renderEndpointAlert();
    renderEndpoints();
  });
  // The log shown is of an endpoint as now listed; removed meanwhile, it is gone with it.
  if (deliveriesOf) {
    const now = endpoints.find((e) => e.id === deliveriesOf.id);
    if (now) deliveriesOf = now;
    else closeDeliveries(false);
  }
}

// What an admin must know first: an endpoint switchboard disabled, why, and how to go on.
function renderEndpointAlert() {
  const box = $('endpoints-alert');
  box.replaceChildren();
  const off = endpoints.filter(disabledBySwitchboard);
  for (const e of off) {
    const p = document.createElement('p');
    p.textContent = `switchboard disabled event endpoint ${endpointName(e)} (${e.url}): ${e.disabled_reason}. `
      + (isAdmin
        ? 'The events it had not taken are kept and go, in order, once it is enabled again; until then no new '
          + 'events go to it. Enable it once your backend takes events again.'
        : 'The events it had not taken are kept until an admin enables it again.');
    box.appendChild(p);
    if (isAdmin) {
      box.appendChild(endpointButton(e, 'Enable', `Enable event endpoint ${e.url} again`,
        () => setEndpointEnabled(e, true), `endpoint:${e.id}:enabled`));
    }
  }
  box.hidden = !off.length;
}

function renderEndpoints() {
  const rows = $('endpoint-rows');
  rows.replaceChildren();
  if (!endpoints.length) {
    const tr = document.createElement('tr');
    cell(tr, 'No endpoints yet.').colSpan = 6;
    rows.appendChild(tr);
  }
  for (const e of endpoints) {
    const tr = document.createElement('tr');
    tr.id = `endpoint-${e.id}`;
    cell(tr, e.url).className = 'url';
    cell(tr, e.description);
    cell(tr, e.types.length ? e.types.join(', ') : 'All events');
    const state = cell(tr, endpointState(e));
    if (disabledBySwitchboard(e)) state.className = 'warning';
    cell(tr, `${when(e.created_at)} by ${e.created_by}`);
    const actions = cell(tr, '');
    actions.className = 'actions';
    actions.append(endpointButton(e, 'Deliveries', `The delivery log of ${e.url}`, () => openDeliveries(e),
      `endpoint:${e.id}:deliveries`, `Deliveries to ${endpointName(e)}`));
    if (isAdmin) {
      const toggle = e.enabled ? 'Disable' : 'Enable';
      actions.append(
        endpointButton(e, toggle, `${toggle} event endpoint ${e.url}`, () => setEndpointEnabled(e, !e.enabled), `endpoint:${e.id}:enabled`),
        endpointButton(e, 'New secret', `Give ${e.url} a new signing secret`, () => rotateSecret(e),
          `endpoint:${e.id}:secret`, `New secret for ${endpointName(e)}`),
        endpointButton(e, 'Remove', `Remove event endpoint ${e.url}`, () => removeEndpoint(e), `endpoint:${e.id}:remove`),
      );
    }
    rows.appendChild(tr);
  }
}

async function setEndpointEnabled(e, enabled) {
  clearError('endpoints-error');
  const path = `/endpoints/${enc(e.id)}`;
  try {
    const etag = await stillAsShown(path, e, ENDPOINT_KEYS);
    await api('PATCH', path, { body: { enabled }, etag });
  } catch (err) {
    fail('endpoints-error', err, `endpoint ${e.url}`, ENDPOINT_LABELS);
    return;
  }
  saved(enabled
    ? `event endpoint ${endpointName(e)} enabled${disabledBySwitchboard(e) ? '; its kept events go now' : ''}`
    : `event endpoint ${endpointName(e)} disabled: no new events go to it, those waiting are kept until it is enabled again`);
  await loadEndpoints();
  if (deliveriesOf?.id === e.id) await loadDeliveries();
}

// Shows an endpoint's signing secret, once: the page cannot show it again.
function showSecret(made, what) {
  secretOf = made.id;
  $('new-secret').value = made.secret;
  $('new-secret-hint').textContent = `${what} for ${made.url}: your backend verifies each delivery's `
    + 'webhook-signature with it (Standard Webhooks). Keep it with your backend\'s secrets.';
  $('new-secret-note').textContent = '';
  show('new-secret-part', true);
  $('new-secret').focus();
  $('new-secret').select();
}

function hideSecret() {
  secretOf = '';
  $('new-secret').value = '';
  show('new-secret-part', false);
}

async function copySecret() {
  const field = $('new-secret');
  try {
    await navigator.clipboard.writeText(field.value);
    $('new-secret-note').textContent = 'Copied.';
  } catch (e) {
    // No clipboard (a page not on https, say): selected, for the person to copy.
    field.focus();
    field.select();
    $('new-secret-note').textContent = 'Selected: press Ctrl+C (⌘C) to copy it.';
  }
}

async function addEndpoint(ev) {
  ev.preventDefault();
  const form = $('add-endpoint');
  clearError('add-endpoint-error', form);
  const body = {
    url: $('e-url').value.trim(),
    description: $('e-description').value.trim(),
    types: ticked($('e-types')),
  };
  let made;
  try {
    ({ data: made } = await api('POST', '/endpoints', { body }));
  } catch (e) {
    if (e.field === 'secret') {
      e.reason = `${e.reason}. Whoever runs switchboard sets it; until then no endpoint can be added.`;
    }
    fail('add-endpoint-error', e, `endpoint ${body.url}`, ENDPOINT_LABELS, form);
    return;
  }
  form.reset();
  saved(`event endpoint ${endpointName(made)} added; copy its signing secret now, it will not be shown again`);
  await loadEndpoints();
  showSecret(made, 'Signing secret');
}

function rotateSecret(e) {
  const from = document.activeElement;
  clearError('endpoints-error');
  const text = document.createElement('p');
  text.id = 'rotate-text';
  text.className = 'wide';
  text.textContent = `Deliveries to ${e.url} are signed with the new secret from now on: your backend refuses `
    + 'them until it has it. The old secret stops working at once, and the new one is shown once.';
  let made = null;
  const d = dialog(`Give ${endpointName(e)} a new secret?`, [text], 'Make new secret', async (form) => {
    try {
      ({ data: made } = await api('POST', `/endpoints/${enc(e.id)}/secret`));
    } catch (err) {
      fail('dialog-error', err, `endpoint ${e.url}`, ENDPOINT_LABELS, form);
      return false;
    }
    saved(`event endpoint ${endpointName(e)} has a new signing secret; copy it now, it will not be shown again`);
    await loadEndpoints();
    return true;
  }, from);
  d.setAttribute('aria-describedby', text.id);
  d.addEventListener('close', () => {
    if (made) showSecret(made, 'New signing secret');
  });
  [...d.querySelectorAll('button')].find((b) => b.textContent === 'Cancel')?.focus();
}

function removeEndpoint(e) {
  const from = document.activeElement;
  clearError('endpoints-error');
  const text = document.createElement('p');
  text.id = 'remove-endpoint-text';
  text.className = 'wide';
  text.textContent = `No more events go to ${e.url}${e.description ? ` (${e.description})` : ''}; its delivery log and `
    + 'the events not delivered yet are deleted. This cannot be undone: an endpoint added again has a new secret.';
  const at = endpoints.findIndex((x) => x.id === e.id);
  let removed = false;
  const d = dialog(`Remove endpoint ${endpointName(e)}?`, [text], 'Remove endpoint', async (form) => {
    try {
      await api('DELETE', `/endpoints/${enc(e.id)}`);
    } catch (err) {
      fail('dialog-error', err, `endpoint ${e.url}`, ENDPOINT_LABELS, form);
      return false;
    }
    removed = true;
    if (e.id === secretOf) hideSecret();
    saved(`event endpoint ${endpointName(e)} removed`);
    await loadEndpoints();
    return true;
  }, from);
  d.setAttribute('aria-describedby', text.id);
  d.addEventListener('close', () => {
    if (!removed) return;
    // The next endpoint's Remove, else the form to add one.
    const next = endpoints[Math.min(at, endpoints.length - 1)];
    if (!(next && focusKey(`endpoint:${next.id}:remove`))) $('e-url').focus();
  });
  // The safe choice first: Enter on opening does not remove.
  [...d.querySelectorAll('button')].find((b) => b.textContent === 'Cancel')?.focus();
}

// ---- an endpoint's delivery log ----

// A moment of the log: its time alone when it is today.
function time(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

function deliveryStatus(d) {
  if (d.status === 'pending') return d.next_at ? `Pending: next attempt ${time(d.next_at)}` : 'Pending';
  if (d.status === 'paused') return 'Paused: kept until the endpoint is enabled';
  if (d.status === 'delivered') return 'Delivered';
  return DELIVERY_STATUS[d.status] || d.status;
}

function lastAnswer(d) {
  if (!d.last_at) return '–';
  let what = d.last_status ? `HTTP ${d.last_status}` : '';
  if (d.last_error && d.last_error !== what) what = what ? `${what}: ${d.last_error}` : d.last_error;
  return `${what || 'No answer'} (${time(d.last_at)})`;
}

async function openDeliveries(e) {
  deliveriesOf = e;
  deliveriesFrom = `endpoint:${e.id}:deliveries`;
  $('deliveries-title').textContent = `Deliveries to ${endpointName(e)}${e.description ? ` (${e.url})` : ''}`;
  show('deliveries-part', true);
  show('deliveries-actions', isAdmin);
  await loadDeliveries();
  $('deliveries-title').focus();
}

function closeDeliveries(refocus = true) {
  deliveriesOf = null;
  deliveriesNext = null;
  $('delivery-rows').replaceChildren();
  show('deliveries-part', false);
  if (refocus) focusKey(deliveriesFrom);
}

// The newest page of the log shown (filtered by status), or the page after the last one read.
async function loadDeliveries(more = false) {
  const e = deliveriesOf;
  if (!e) return;
  const q = new URLSearchParams({ limit: String(DELIVERIES_PAGE) });
  const status = $('d-status').value;
  if (status) q.set('status', status);
  if (more && deliveriesNext !== null) q.set('before', String(deliveriesNext));
  let data;
  try {
    ({ data } = await api('GET', `/endpoints/${enc(e.id)}/deliveries?${q}`));
  } catch (err) {
    fail('deliveries-error', err, `endpoint ${e.url}`, { status: 'Delivery status' });
    return;
  }
  clearError('deliveries-error');
  if (deliveriesOf !== e) return;
  let first = null;
  keepingFocus(() => {
    const rows = $('delivery-rows');
    if (!more) rows.replaceChildren();
    for (const d of data.deliveries) {
      const tr = deliveryRow(e, d);
      first ??= tr;
      rows.appendChild(tr);
    }
  });
  deliveriesNext = data.next ?? null;
  const n = $('delivery-rows').children.length;
  show('deliveries-table', n > 0);
  const wasOnMore = document.activeElement === $('deliveries-more');
  show('deliveries-more', deliveriesNext !== null);
  // The last page read: More is gone, and the keyboard goes on from the first row it brought.
  if (more && wasOnMore && deliveriesNext === null) first?.querySelector('summary')?.focus();
  const which = status ? `${DELIVERY_STATUS[status].toLowerCase()} ` : '';
  $('deliveries-note').textContent = n
    ? `${n} ${which}event${n === 1 ? '' : 's'}, newest first${deliveriesNext !== null ? '; More shows older ones' : ''}.`
    : `No ${which}events yet.`;
}

function deliveryRow(e, d) {
  const tr = document.createElement('tr');
  tr.id = `delivery-${d.msg_id}`;
  cell(tr, time(d.created_at));
  const type = cell(tr, d.type);
  // The event as sent, and its webhook-id (what the backend saw), on demand.
  const details = document.createElement('details');
  const summary = document.createElement('summary');
  summary.textContent = 'Body';
  const id = document.createElement('p');
  id.textContent = `webhook-id ${d.msg_id}`;
  const pre = document.createElement('pre');
  pre.textContent = JSON.stringify(d.payload, null, 2);
  details.append(summary, id, pre);
  type.appendChild(details);
  cell(tr, d.order_key);
  const status = cell(tr, deliveryStatus(d));
  if (d.status === 'failed') status.className = 'warning';
  cell(tr, String(d.attempts));
  cell(tr, lastAnswer(d));
  if (isAdmin) {
    const actions = cell(tr, '');
    actions.className = 'actions';
    const again = button('Redeliver', `Send ${d.type} event ${d.msg_id} to ${e.url} again`,
      () => redeliver(e, d), `delivery:${d.msg_id}:redeliver`);
    again.setAttribute('aria-label', `Redeliver ${d.type} ${d.msg_id}`);
    actions.append(again);
  }
  return tr;
}

async function redeliver(e, d) {
  clearError('deliveries-error');
  try {
    await api('POST', `/endpoints/${enc(e.id)}/deliveries/${enc(d.msg_id)}/redeliver`);
  } catch (err) {
    fail('deliveries-error', err, `event ${d.msg_id}`);
    return;
  }
  $('status').textContent = `Sent again by ${me.id}: ${d.type} event ${d.msg_id} goes to ${e.url} once more, with the same webhook-id.`;
  await loadDeliveries();
}

// ---- audit log ----

// What changed between `before` and `after`, as `key: old → new`; never more than a line.
function change(before, after) {
  const b = before || {};
  const a = after || {};
  const names = [...new Set([...Object.keys(b), ...Object.keys(a)])];
  const show1 = (v) => (v === undefined || v === null ? '–' : Array.isArray(v) ? v.join(', ') || '–' : String(v));
  // A key's `created_at` is unix ms: as a date.
  const show2 = (k, v) => (k === 'created_at' && typeof v === 'number' ? when(v) : show1(v));
  if (!before) return names.filter((k) => k !== 'id').map((k) => `${k}: ${show2(k, a[k])}`).join('; ');
  // A removal (a key revoked): what it was.
  if (!after) return names.filter((k) => k !== 'id').map((k) => `${k}: ${show2(k, b[k])}`).join('; ');
  return names
    .filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k]))
    .map((k) => `${k}: ${show2(k, b[k])} → ${show2(k, a[k])}`)
    .join('; ');
}

async function loadAudit(more = false) {
  const q = new URLSearchParams({ limit: '50' });
  if (more && auditNext) q.set('before', auditNext);
  let data;
  try {
    ({ data } = await api('GET', `/audit?${q}`));
  } catch (e) {
    show('audit-table', false);
    show('audit-more', false);
    $('audit-note').textContent = e.status === 403
      ? 'Only admins see the audit log.'
      : explain(e, 'the audit log');
    return;
  }
  const rows = $('audit-rows');
  if (!more) rows.replaceChildren();
  for (const entry of data.entries) {
    const tr = document.createElement('tr');
    cell(tr, new Date(entry.at).toLocaleString());
    cell(tr, entry.actor);
    cell(tr, ACTIONS[entry.action] || entry.action);
    cell(tr, entry.target);
    cell(tr, change(entry.before, entry.after));
    rows.appendChild(tr);
  }
  auditNext = data.next;
  show('audit-table', rows.children.length > 0);
  show('audit-more', !!data.next);
  $('audit-note').textContent = rows.children.length ? 'Newest first.' : 'No changes yet.';
}

// ---- the page ----

async function loadAll() {
  $('status').textContent = '';
  await loadQueues();
  await loadSettings();
  await Promise.all([loadPeople(), loadNumbers(), isAdmin ? loadKeys() : null, loadEndpoints(), loadAudit()]);
  if (deliveriesOf) await loadDeliveries();
}

function mount() {
  $('account').appendChild($('account-template').content.cloneNode(true));
  $('slug').textContent = slug;
  roleOptions($('p-role'), 'agent');
  show('add-queue-part', isAdmin);
  // The keys are an admin's: a supervisor is told so, and sees none of them.
  show('keys-part', isAdmin);
  $('keys-note').textContent = isAdmin
    ? 'For the account\'s own servers (a CRM, a provisioning job): each key does what its role may on this account, '
      + 'and its changes are in the audit log. Only a key\'s hash is kept: it is shown once, when made.'
    : 'Only admins manage API keys.';
  // The event endpoints: a supervisor reads them and their delivery logs, an admin runs them.
  show('add-endpoint-part', isAdmin);
  $('endpoints-note').textContent = 'Where switchboard POSTs the account\'s call events (call.offered, call.answered, '
    + 'call.ended with its record, agent.state…), each signed with the endpoint\'s secret and retried for a day '
    + `until your backend takes it. ${isAdmin ? 'The secret is shown once, when made.' : 'Only admins add, change or remove them.'}`;
  typeBoxes($('e-types'));
  $('d-status').addEventListener('change', () => loadDeliveries());
  $('deliveries-refresh').addEventListener('click', () => loadDeliveries());
  $('deliveries-more').addEventListener('click', () => loadDeliveries(true));
  $('deliveries-close').addEventListener('click', () => closeDeliveries());
  $('add-person').addEventListener('submit', addPerson);
  $('add-queue').addEventListener('submit', addQueue);
  $('settings-form').addEventListener('submit', saveSettings);
  if (isAdmin) {
    $('add-key').addEventListener('submit', addKey);
    $('new-key-copy').addEventListener('click', copyNewKey);
    $('new-key-hide').addEventListener('click', () => {
      hideNewKey();
      $('k-name').focus();
    });
    $('add-endpoint').addEventListener('submit', addEndpoint);
    $('new-secret-copy').addEventListener('click', copySecret);
    $('new-secret-hide').addEventListener('click', () => {
      hideSecret();
      $('e-url').focus();
    });
  }
  $('audit-more').addEventListener('click', () => loadAudit(true));
  $('reload').addEventListener('click', async () => {
    await loadAll();
    $('status').textContent = 'Reloaded.';
  });
}

async function begin() {
  const r = await fetch('/api/me', { credentials: 'same-origin' });
  if (!r.ok) {
    show('signin', true);
    $('name').focus();
    return;
  }
  me = await r.json();
  // `sam@acme` is of account acme; a name with no account is of the default one.
  const at = me.id.lastIndexOf('@');
  slug = at >= 0 ? me.id.slice(at + 1) : 'default';
  isAdmin = me.role === 'admin';
  $('who').textContent = `${me.name} (${me.role})`;
  show('signout', true);
  $('signin').remove();
  if (me.role === 'agent') {
    show('agents-only', true);
    return;
  }
  show('pages', true);
  mount();
  await loadAll();
}

$('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  notice('');
  const r = await fetch('/api/login', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, credentials: 'same-origin',
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
  await fetch('/api/logout', { method: 'POST', credentials: 'same-origin' });
  location.reload();
});

begin();
