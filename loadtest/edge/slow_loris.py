#!/usr/bin/env python3
# Usage: python3 loadtest/edge/slow_loris.py target/release/switchboard   (loopback only)
# Slow-loris against a running switchboard (defaults: 10 s header timeout, 256 per address):
# 1,200 connections send half a header from 6 addresses, plus 100 more from one of them.
# Reports how many were held / refused, when the held ones were closed, and /healthz latency
# during the attack.
import socket, sys, time, subprocess, os, json, select
binary = sys.argv[1]
env = dict(PATH=os.environ['PATH'], SWITCHBOARD_HTTP_ADDR='127.0.0.1:0', SWITCHBOARD_METRICS_ADDR='127.0.0.1:0',
  SWITCHBOARD_MEDIA_ADDR='127.0.0.1', SWITCHBOARD_MEDIA_PORTS='ephemeral:4', SWITCHBOARD_DB='/tmp/switchboard-slow-loris.db',
  SWITCHBOARD_GRAPH_URL='http://127.0.0.1:9', SWITCHBOARD_PHONE_NUMBER_ID='123456789012345',
  SWITCHBOARD_ACCESS_TOKEN='t', SWITCHBOARD_APP_SECRET='s', SWITCHBOARD_VERIFY_TOKEN='v', SWITCHBOARD_LOG_FORMAT='json')
p = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
for line in p.stdout:
    v = json.loads(line)
    if v['fields'].get('message') == 'switchboard started':
        h, port = v['fields']['http'].rsplit(':', 1); addr = (h, int(port)); break
conns = []
t0 = time.time()
for i in range(1300):
    s = socket.socket(); s.bind((f'127.0.0.{2 + min(i // 200, 5)}', 0)); s.connect(addr)
    s.sendall(b'POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\n'); s.setblocking(False); conns.append(s)
opened = time.time() - t0
def closed(s):
    try:
        return s.recv(4096) == b''
    except BlockingIOError:
        return False
    except OSError:
        return True
time.sleep(0.5)
refused = sum(closed(s) for s in conns)
lat = []
for _ in range(5):
    t = time.time(); c = socket.create_connection(addr); c.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    r = c.recv(100); c.close(); lat.append((time.time() - t) * 1000); assert r.startswith(b'HTTP/1.1 200')
done = {}
while len(done) < len(conns) and time.time() - t0 < 40:
    for i, s in enumerate(conns):
        if i not in done and closed(s): done[i] = time.time() - t0
    time.sleep(0.05)
held_close = sorted(v for v in done.values() if v > 1)
print(f'opened 1300 in {opened:.2f} s; refused at once (over 256 per address): {refused}; held: {1300 - refused}')
print(f'/healthz during the attack: {min(lat):.1f}-{max(lat):.1f} ms')
if held_close: print(f'held ones closed between {held_close[0]:.1f} s and {held_close[-1]:.1f} s after the first connect; still open after 40 s: {len(conns) - len(done)}')
p.kill()
