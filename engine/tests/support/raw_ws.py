# A WebSocket client in plain sockets, as any local user could write one: it opens
# URL, sends the JSON-RPC message given (a Codex `initialize` by default) as one text
# frame, and prints the handshake's status line and the first message that comes back.
# Usage: raw_ws.py ws://HOST:PORT[/PATH] [TOKEN] [HOST-HEADER]
import base64, json, os, socket, struct, sys
from urllib.parse import urlparse

url = urlparse(sys.argv[1])
token = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
host_header = sys.argv[3] if len(sys.argv) > 3 else f"{url.hostname}:{url.port}"
try:
    sock = socket.create_connection((url.hostname, url.port), timeout=5)
except OSError as error:
    print(f"connect failed: {error}")
    sys.exit(0)
request = (
    f"GET {url.path or '/'} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n"
    f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
)
if token:
    request += f"Authorization: Bearer {token}\r\n"
sock.sendall((request + "\r\n").encode())
head = b""
try:
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
except OSError as error:
    print(f"handshake failed: {error}")
    sys.exit(0)
status = head.split(b"\r\n", 1)[0].decode(errors="replace")
print(f"status: {status}")
if " 101 " not in status + " ":
    sys.exit(0)
body = json.dumps({"id": 1, "method": "initialize",
                   "params": {"clientInfo": {"name": "intruder", "version": "1"}}}).encode()
mask = os.urandom(4)
frame = bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(body)) + mask
frame += bytes(b ^ mask[i % 4] for i, b in enumerate(body))
sock.sendall(frame)
data = head.split(b"\r\n\r\n", 1)[1]
try:
    while True:
        if len(data) >= 2:
            length = data[1] & 0x7F
            offset = 2
            if length == 126:
                length = struct.unpack("!H", data[2:4])[0]
                offset = 4
            elif length == 127:
                length = struct.unpack("!Q", data[2:10])[0]
                offset = 10
            if len(data) >= offset + length:
                print("message: " + data[offset:offset + length].decode(errors="replace"))
                break
        chunk = sock.recv(65536)
        if not chunk:
            print("closed")
            break
        data += chunk
except OSError as error:
    print(f"read failed: {error}")
