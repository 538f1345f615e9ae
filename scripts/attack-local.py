#!/usr/bin/env python3
"""An attack run against the local server, as an outsider with one valid account would
try it: forged and stale tokens, injection into every field that could reach a dial
string or the dialplan, malformed bodies and content types, another user's calls,
protocol-level garbage, and password guessing. Prints one row per kind of attack
(requests tried, status codes seen, 5xx, answers that were not JSON, originates the
PBX saw) and exits non-zero if any answer was a 5xx or not JSON, or if anything but
the control calls reached the PBX.

    cargo build -p local && python3 scripts/attack-local.py   # LOCAL_BIN= for another build

Standard library only.
"""

import base64
import collections
import hashlib
import hmac
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "attack-run-secret-key-0123456789"
ADMIN = ("admin", "attack-admin-password")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims, header=None, key=KEY, alg="HS256"):
    header = header or {"alg": alg, "typ": "JWT"}
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}.get(alg, hashlib.sha256)
    sig = b64(hmac.new(key.encode(), f"{head}.{body}".encode(), digest).digest())
    if alg == "none":
        sig = ""
    return f"{head}.{body}.{sig}"


class Server:
    def __init__(self):
        binary = os.environ.get("LOCAL_BIN", os.path.join(ROOT, "target/debug/local"))
        self.port = free_port()
        env = dict(
            os.environ,
            PORT=str(self.port),
            SECRET_KEY=KEY,
            ADMIN_USERNAME=ADMIN[0],
            ADMIN_PASSWORD=ADMIN[1],
            PBX_SIM_TIME_SCALE="0.01",
            # Cost 10, not the default 12: a debug build's bcrypt is slow enough.
            BCRYPT_COST=os.environ.get("BCRYPT_COST", "10"),
            AUTH_USER_CACHE_MS="0",
            LOG_FORMAT="json",
            RUST_LOG="info",
        )
        # The in-process store: a DATABASE_URL meant for the test suite is not ours.
        env.pop("DATABASE_URL", None)
        self.process = subprocess.Popen(
            [binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.sim = None
        deadline = time.time() + 30
        for line in self.process.stdout:
            match = re.search(r"simulated PBX at (http://[0-9.:]+)", line)
            if match:
                self.sim = match.group(1)
            if "Log in as" in line and self.sim:
                break
            if time.time() > deadline:
                break
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(self.base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        if not self.sim:
            sys.exit("could not find the simulated PBX's address in the server's log")

    def originates(self):
        with urllib.request.urlopen(self.sim + "/_sim/stats", timeout=5) as r:
            return json.load(r)["originates"]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class Tally:
    def __init__(self):
        self.rows = collections.OrderedDict()

    def record(self, kind, status, body, content_type):
        row = self.rows.setdefault(
            kind, {"tried": 0, "codes": collections.Counter(), "5xx": 0, "not_json": 0, "pbx": 0}
        )
        row["tried"] += 1
        row["codes"][status] += 1
        if status >= 500:
            row["5xx"] += 1
        is_json = content_type.startswith("application/json")
        try:
            parsed = json.loads(body) if is_json else None
        except ValueError:
            parsed = None
        if status >= 400 and not (isinstance(parsed, dict) and isinstance(parsed.get("detail"), str)):
            row["not_json"] += 1


def request(base, method, path, token=None, body=None, content_type=None, headers=None):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(base + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode("utf-8", "replace"), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), e.headers.get("Content-Type", "")


def raw(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
    text = b"".join(chunks).decode("utf-8", "replace")
    head, _, body = text.partition("\r\n\r\n")
    status = int(head.split(" ")[1]) if head.startswith("HTTP/") else 0
    ctype = ""
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-type":
            ctype = value.strip()
    return status, body, ctype


def login(base, username, password):
    status, body, _ = request(
        base, "POST", "/api/v2/token",
        body=f"username={username}&password={password}",
        content_type="application/x-www-form-urlencoded",
    )
    return status, (json.loads(body).get("access_token") if status == 200 else None)


def main():
    server = Server()
    base, tally = server.base, Tally()
    _, token = login(base, *ADMIN)
    if not token:
        sys.exit("could not log in as the demo user")
    pbx_expected = 0

    def run(kind, reaches_pbx, method, path, **kw):
        before = server.originates()
        status, body, ctype = request(base, method, path, **kw)
        tally.record(kind, status, body, ctype)
        reached = server.originates() - before
        tally.rows[kind]["pbx"] += reached
        return status, body, reached

    # 1. Forged, loose and stale tokens, on every authenticated route.
    now = int(time.time())
    good = {"sub": ADMIN[0], "iat": now, "exp": now + 600, "ver": 0}
    forged = {
        "garbage": "not-a-jwt",
        "alg none": jwt(good, alg="none", header={"alg": "none", "typ": "JWT"}),
        "HS512": jwt(good, alg="HS512", header={"alg": "HS512", "typ": "JWT"}),
        "wrong key": jwt(good, key="another-key-of-reasonable-length"),
        "expired": jwt(dict(good, iat=now - 700, exp=now - 100)),
        "nbf in the future": jwt(dict(good, nbf=now + 300)),
        "iat a year ahead": jwt(dict(good, iat=now + 31536000, exp=now + 31536600)),
        "iat after exp": jwt(dict(good, iat=now + 60, exp=now + 30)),
        "exp 1000 years out": jwt(dict(good, exp=now + 1000 * 31536000)),
        "lifetime too long": jwt(dict(good, iat=now - 10, exp=now + 7200)),
        "unknown crit": jwt(good, header={"alg": "HS256", "typ": "JWT", "crit": ["x"], "x": 1}),
        "kid": jwt(good, header={"alg": "HS256", "typ": "JWT", "kid": "other"}),
        "unknown user": jwt(dict(good, sub="ghost")),
        "older token version": jwt(dict(good, ver=7)),
        "no ver": jwt({k: v for k, v in good.items() if k != "ver"}),
        "tampered": token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
    }
    routes = [
        ("GET", "/api/v2/calls"),
        ("GET", "/api/v2/status/00000000-0000-4000-8000-000000000000"),
        ("POST", "/api/v2/interaction/+15550010001"),
        ("POST", "/api/v2/calls"),
        ("DELETE", "/api/v2/calls/00000000-0000-4000-8000-000000000000"),
    ]
    for name, bad in forged.items():
        for method, path in routes:
            body = json.dumps({"phone_number": "+15550010001"}) if path == "/api/v2/calls" and method == "POST" else None
            run("forged or stale tokens", False, method, path, token=bad, body=body,
                content_type="application/json" if body else None)

    # 2. Injection into everything that could reach a dial string or the dialplan.
    injections = {
        "phone_number": ["+00015550010001", "+1555001&PJSIP/evil", "+1555001,1", "+15550010001)", "+1555\u0661\u0660\u0660",
                         "+１５５５００１０００１", "15550010001", "+1555 001", "+1" + "5" * 20, "${EXTEN}", "+1555001\n"],
        "context": ["default", "outbound-ivr,s,1", "outbound-ivr)", "${CONTEXT}", "a" * 200],
        "extension": ["s,1", "s)", "_X.", "${EXTEN}", "s&x", "s@ctx", "s\u202e"],
        "caller_id": ["\"Evil\" <1>", "Ｍｙ", "Shop \u0663", "Name <+0123456>", "a\nb", "Name<123>", "x" * 100],
        "variables": [{"A": "${SHELL(id)}"}, {"A": "$[1+1]"}, {"A": "a,b)"}, {"A": "a\u2028b"}, {"A": "a\u202eb"},
                      {"A": "a|b"}, {"A": "a;b"}, {"CALLERID(num)": "1"}, {"__INHERIT": "1"}, {"A": "x" * 300}],
        "media": [["sound:.hidden"], ["sound:a/"], ["sound:a/./b"], ["sound:../../etc/passwd"], ["sound:/abs"],
                  ["sound:a,b"], ["tone:ring"], ["sound:a&b"], ["digits:1a"]],
        "mode": ["conference", "playback"],
        "timeout": [0, -1, 10 ** 12, "30000", 30000.5],
        "priority": [0, 100000, "1"],
        "max_duration": [1, 10 ** 12],
    }
    for field, values in injections.items():
        for value in values:
            if field == "phone_number":
                for path_form in (True, False):
                    if path_form:
                        encoded = urllib.request.quote(str(value), safe="")
                        run("injection and rule breaks", False, "POST", f"/api/v2/interaction/{encoded}",
                            token=token, body="{}", content_type="application/json")
                    else:
                        run("injection and rule breaks", False, "POST", "/api/v2/calls", token=token,
                            body=json.dumps({"phone_number": value}), content_type="application/json")
                continue
            payload = {field: value}
            if field == "media":
                payload["mode"] = "playback"
            run("injection and rule breaks", False, "POST", "/api/v2/interaction/+15550010001",
                token=token, body=json.dumps(payload), content_type="application/json")
    for header in ["", "x" * 200, "cl\u00e9"]:
        run("injection and rule breaks", False, "POST", "/api/v2/interaction/+15550010001", token=token,
            body="{}", content_type="application/json", headers={"Idempotency-Key": header} if header else {"Idempotency-Key": " "})

    # 2b. Webhooks aimed inside the network (the server must never post there).
    for url in ["https://127.0.0.1/x", "https://10.0.0.1/x", "https://169.254.169.254/latest/meta-data/",
                "https://[::1]/x", "https://[::ffff:169.254.169.254]/x", "https://[fd00:ec2::254]/x",
                "https://2130706433/x", "https://0177.0.0.1/x", "https://0x7f000001/x", "https://localhost/x",
                "http://93.184.216.34/x", "file:///etc/passwd", "gopher://127.0.0.1:25/", "https://user:pw@example.com/"]:
        run("webhook callbacks aimed inside (SSRF)", False, "POST", "/api/v2/interaction/+15550010001",
            token=token, body=json.dumps({"status_callback": url}), content_type="application/json")

    # 3. Malformed bodies and content types.
    bodies = [
        ("{", "application/json"), ("[]", "application/json"), ("null", "application/json"),
        ('{"timeout": "soon"}', "application/json"), ('{"unknown": 1}', "application/json"),
        ('{"phone_number": "+15550010001"}', "text/plain"), ("phone_number=%2B15550010001", "application/x-www-form-urlencoded"),
        ('{"a":' * 5000, "application/json"), ("x" * 20000, "application/json"),
        ('{"phone_number": "+15550010001"}', "application/json; charset=latin-1"),
        ('{"phone_number": "+15550010001"}', None), ("\xff\xfe", "application/json"),
    ]
    for body, ctype in bodies:
        for path in ["/api/v2/interaction/+15550010001", "/api/v2/calls"]:
            run("malformed bodies and content types", False, "POST", path, token=token, body=body, content_type=ctype)
    for body, ctype in [('{"username": "admin"}', "application/json"), ("username=admin", "application/x-www-form-urlencoded"),
                        ("grant_type=client_credentials&username=a&password=b", "application/x-www-form-urlencoded"),
                        ("x" * 20000, "application/x-www-form-urlencoded")]:
        run("malformed bodies and content types", False, "POST", "/api/v2/token", body=body, content_type=ctype)
    for path in ["/api/v2/calls/%FF", "/api/v2/status/not-a-uuid", "/api/v2/calls?limit=0", "/api/v2/calls?limit=x",
                 "/api/v2/calls?before=yesterday", "/nope", "/api/v2/calls/%2e%2e/%2e%2e"]:
        run("malformed bodies and content types", False, "GET", path, token=token)
    run("malformed bodies and content types", False, "PUT", "/api/v2/calls", token=token)

    # 4. Another user's calls: a correctly signed token for a name that is not a user
    # (the demo server has one user; tests/auth.rs covers a second real one).
    status, _, reached = run("control calls (placed on purpose)", True, "POST", "/api/v2/interaction/+15550010001",
                             token=token, body="{}", content_type="application/json")
    pbx_expected += reached
    status, body, reached = run("control calls (placed on purpose)", True, "POST", "/api/v2/calls", token=token,
                                body=json.dumps({"phone_number": "+15550020001"}), content_type="application/json")
    pbx_expected += reached
    admin_call = json.loads(body)["call_id"]
    other = jwt(dict(good, sub="mallory"))  # a valid signature for a user that does not exist: refused
    for method, path in [("GET", f"/api/v2/status/{admin_call}"), ("GET", f"/api/v2/calls/{admin_call}"),
                         ("DELETE", f"/api/v2/calls/{admin_call}"), ("GET", "/api/v2/calls")]:
        run("another user's calls (signed, unknown user)", False, method, path, token=other)

    # 5. Protocol-level garbage.
    port = server.port
    garbage = [
        b"this is not http\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /api/v2/calls HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    ]
    for payload in garbage:
        status, body, ctype = raw(port, payload)
        tally.record("protocol-level garbage", status, body, ctype)

    # 6. Password guessing, and what it does to the other routes' latency.
    def get_latency(samples=20):
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            request(base, "GET", "/api/v2/calls?limit=1", token=token)
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    p50_before = get_latency()
    results = []
    during = []

    def guess(n):
        status, body, ctype = request(base, "POST", "/api/v2/token", body=f"username={ADMIN[0]}&password=guess{n}",
                                      content_type="application/x-www-form-urlencoded")
        results.append((status, body, ctype))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(120)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    during.append(get_latency(10))
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for status, body, ctype in results:
        tally.record("password guessing (120 at once)", status, body, ctype)

    total_pbx = server.originates()
    server.stop()

    print(f"{'attack':45} {'tried':>6}  {'codes seen':45} {'5xx':>4} {'not JSON':>8} {'reached PBX':>11}")
    failed = False
    for kind, row in tally.rows.items():
        codes = ", ".join(f"{c}×{n}" for c, n in sorted(row["codes"].items()))
        print(f"{kind:45} {row['tried']:>6}  {codes:45} {row['5xx']:>4} {row['not_json']:>8} {row['pbx']:>11}")
        if row["5xx"] or row["not_json"] or (kind != "control calls (placed on purpose)" and row["pbx"]):
            failed = True
    tried = sum(r["tried"] for r in tally.rows.values())
    print(f"{'total':45} {tried:>6}")
    print(f"PBX originates: {total_pbx} (the {pbx_expected} control calls)")
    print(f"GET /api/v2/calls p50: {p50_before:.1f} ms before the guessing, {during[0]:.1f} ms during it; "
          f"120 guesses answered in {elapsed:.1f} s")
    if total_pbx != pbx_expected:
        failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
