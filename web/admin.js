// The administration page: the signed-in supervisor's or admin's own account — its people,
// queues, numbers, settings and audit log — through /api/v1/accounts/{slug}/… (docs/protocol.md,
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
    const input = root === 'queues' ? form.querySelector('input[type=checkbox]') : form.elements.namedItem(root);
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
  $('s-away').value = s.away_reasons.join(', ');
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
    away_reasons: $('s-away').value.split(',').map((r) => r.trim()).filter(Boolean),
  };
  for (const [id, key] of SETTINGS.slice(3)) body[key] = Number($(id).value);
  try {
    await api('PATCH', '/settings', { body, etag: settingsTag });
  } catch (e) {
    fail('settings-error', e, 'the settings', Object.fromEntries(SETTINGS.map(([, k, l]) => [k, l])), form);
    return;
  }
  saved('settings changed');
  await loadSettings();
  await loadNumbers();
}

// ---- audit log ----

// What changed between `before` and `after`, as `key: old → new`; never more than a line.
function change(before, after) {
  const b = before || {};
  const a = after || {};
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])];
  const show1 = (v) => (v === undefined || v === null ? '–' : Array.isArray(v) ? v.join(', ') || '–' : String(v));
  if (!before) return keys.filter((k) => k !== 'id').map((k) => `${k}: ${show1(a[k])}`).join('; ');
  return keys
    .filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k]))
    .map((k) => `${k}: ${show1(b[k])} → ${show1(a[k])}`)
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
  await Promise.all([loadPeople(), loadNumbers(), loadAudit()]);
}

function mount() {
  $('account').appendChild($('account-template').content.cloneNode(true));
  $('slug').textContent = slug;
  roleOptions($('p-role'), 'agent');
  show('add-queue-part', isAdmin);
  $('add-person').addEventListener('submit', addPerson);
  $('add-queue').addEventListener('submit', addQueue);
  $('settings-form').addEventListener('submit', saveSettings);
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
