#!/usr/bin/env python3
# Usage: python3 loadtest/edge/stalled_bodies.py target/release/switchboard 400   (loopback only)
# Stalled-body attack against a running switchboard: N connections each send most of a webhook
# body (declared Content-Length just under the 256 KiB limit) and stall. RSS before/peak/after.
import socket, sys, time, subprocess, os, json, re
binary, n = sys.argv[1], int(sys.argv[2])
env = dict(PATH=os.environ['PATH'], SWITCHBOARD_HTTP_ADDR='127.0.0.1:0', SWITCHBOARD_METRICS_ADDR='127.0.0.1:0',
  SWITCHBOARD_MEDIA_ADDR='127.0.0.1', SWITCHBOARD_MEDIA_PORTS='ephemeral:4', SWITCHBOARD_DB='/tmp/switchboard-stalled-bodies.db',
  SWITCHBOARD_GRAPH_URL='http://127.0.0.1:9', SWITCHBOARD_PHONE_NUMBER_ID='123456789012345',
  SWITCHBOARD_ACCESS_TOKEN='t', SWITCHBOARD_APP_SECRET='s', SWITCHBOARD_VERIFY_TOKEN='v', SWITCHBOARD_LOG_FORMAT='json')
p = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
addr = None
for line in p.stdout:
    v = json.loads(line)
    if v['fields'].get('message') == 'switchboard started':
        h, port = v['fields']['http'].rsplit(':', 1); addr = (h, int(port)); break
def rss():
    return int(re.search(r'VmRSS:\s+(\d+)', open(f'/proc/{p.pid}/status').read()).group(1)) // 1024
time.sleep(1); before = rss(); peak = before
conns = []
body_len = 250 * 1024
for i in range(n):
    s = socket.socket(); s.bind((f'127.0.0.{2 + i // 200}', 0)); s.connect(addr)
    s.sendall(b'POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: %d\r\n\r\n' % body_len)
    s.sendall(b' ' * (body_len - 10))
    conns.append(s)
    if i % 50 == 0: peak = max(peak, rss())
for _ in range(20):
    time.sleep(0.1); peak = max(peak, rss())
# the original attack: a declared ~1000 KiB body
big = socket.socket(); big.connect(addr)
big.sendall(b'POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 1024000\r\n\r\n')
print('1000 KiB declared:', big.recv(100).split(b'\r\n')[0].decode())
held = rss()
for s in conns: s.close()
time.sleep(3); after = rss()
print(f'{n} stalled bodies of 250 KiB: RSS before {before} MiB, peak {max(peak, held)} MiB, after closing {after} MiB')
p.kill()
