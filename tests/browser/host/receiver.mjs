// A host backend's receiver of switchboard's call events (docs/embedding.md, "Receiving
// events"): every delivery is verified with the Standard Webhooks library before anything is
// done with it, and answered 204 once it is kept.
//
//   npm install standardwebhooks
//   SWITCHBOARD_EVENTS_SECRET=whsec_… PORT=8001 node receiver.mjs
//
// It prints one JSON line per verified event (and the raw delivery, so that tests can replay
// it), and answers 400 to anything that does not verify: a body changed on the way, another
// secret, a timestamp more than five minutes off.

import http from 'node:http';
import { Webhook } from 'standardwebhooks';

const webhook = new Webhook(process.env.SWITCHBOARD_EVENTS_SECRET);
// Deliveries are at least once: the same webhook-id can come again (a retry whose answer was
// lost). Keep what you do idempotent on it; here, a set of the ids already handled.
const seen = new Set();

const server = http.createServer((req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(405).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    // Verify the body exactly as it came: parsing and re-serialising it changes the bytes.
    const body = Buffer.concat(chunks).toString('utf8');
    let event;
    try {
      event = webhook.verify(body, req.headers);
    } catch (e) {
      console.error(`refused: ${e.message}`);
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`not verified: ${e.message}`);
      return;
    }
    const id = req.headers['webhook-id'];
    const again = seen.has(id);
    seen.add(id);
    // Your own work goes here: update the ticket, the CRM, the wallboard…
    console.log(JSON.stringify({
      id,
      again,
      event,
      raw: {
        body,
        timestamp: req.headers['webhook-timestamp'],
        signature: req.headers['webhook-signature'],
      },
    }));
    res.writeHead(204).end();
  });
});

server.listen(Number(process.env.PORT ?? 8001), '127.0.0.1', () => {
  console.log(JSON.stringify({ listening: server.address().port }));
});
