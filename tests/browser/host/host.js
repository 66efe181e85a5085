// The host page's own script (an external file: the page's Content Security Policy allows no
// inline script). It reads switchboard's address and the session token from the query string,
// imports the softphone module from switchboard, and puts a <switchboard-phone> on the page; the
// element's events (those of its phone) are written to the page as they come.
const q = new URLSearchParams(location.search);
const url = q.get('url');
const token = q.get('token');
const status = document.getElementById('status');
const events = document.getElementById('events');

function log(text) {
  const li = document.createElement('li');
  li.textContent = text;
  events.append(li);
}

if (!url || !token) {
  status.textContent = 'Open this page with ?url=<switchboard address>&token=<session token>.';
} else {
  // Defines <switchboard-phone>. A page without the element would use it directly:
  //   const phone = connect({ url, token }); phone.on('ringing', (c) => …);
  const { STATE_LABELS } = await import(`${url}/sdk/v1/switchboard.js`);
  const phone = document.createElement('switchboard-phone');
  phone.setAttribute('url', url);
  phone.setAttribute('token', token);
  let trouble = '';
  phone.addEventListener('state', (e) => {
    const s = e.detail;
    if (s.connection === 'connected') {
      trouble = '';
      status.textContent = `Phone: ${STATE_LABELS[s.presence] || s.presence}${s.reason ? ` (${s.reason})` : ''}`;
    } else {
      status.textContent = `Phone: ${trouble || s.connection}`;
    }
    log(`state ${s.connection} ${s.presence}${s.reason ? ` (${s.reason})` : ''}`);
  });
  phone.addEventListener('ready', (e) => log(`ready ${e.detail.id}`));
  phone.addEventListener('ringing', (e) => log(`ringing ${e.detail.callId} from +${e.detail.from}`));
  phone.addEventListener('talking', (e) => log(`talking ${e.detail.callId}`));
  phone.addEventListener('ended', (e) => log(`ended ${e.detail.callId}: ${e.detail.reason}`));
  phone.addEventListener('dtmf', (e) => log(`dtmf ${e.detail.digit}`));
  phone.addEventListener('error', (e) => {
    log(`error ${e.detail.code}: ${e.detail.message}`);
    if (e.detail.code === 'connect_failed' || e.detail.fatal) trouble = e.detail.message;
    if (trouble) status.textContent = `Phone: ${trouble}`;
  });
  document.getElementById('phone-slot').append(phone);
}
