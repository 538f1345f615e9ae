"""Measures each Lambda binary: its size, and the time from process start to ready for
its first event (the first `GET /runtime/invocation/next` it sends to the Lambda Runtime
API, served here by a stand-in on loopback).

    cargo build --release -p token -p originate -p status
    python3 scripts/bench-lambda-start.py [RUNS]
"""

import http.server
import os
import statistics
import subprocess
import sys
import threading
import time

FUNCTIONS = ["token", "originate", "status"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    polled = threading.Event()

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        if self.path.endswith("/runtime/invocation/next"):
            RuntimeApi.polled.set()
        # Never hand out an event: the process is stopped once it has asked.
        time.sleep(5)

    def log_message(self, *args):
        pass


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_port}",
        AWS_EXECUTION_ENV="AWS_Lambda_provided.al2023",
        AWS_LAMBDA_FUNCTION_NAME="bench",
        AWS_LAMBDA_FUNCTION_VERSION="1",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
        AWS_LAMBDA_LOG_GROUP_NAME="bench",
        AWS_LAMBDA_LOG_STREAM_NAME="bench",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        # What a deployed function is given (read lazily: nothing is fetched before
        # the first event).
        SECRET_KEY_SECRET_ID="dialer/jwt",
        ARI_PASSWORD_SECRET_ID="dialer/ari",
        CALLS_TABLE="dialer-calls",
        USERS_TABLE="dialer-users",
        ARI_HTTP_URL="http://127.0.0.1:9",
        ARI_USERNAME="dialer",
        ARI_APP="dialer",
        DIAL_ENDPOINT="PJSIP/{number}@trunk",
        DEFAULT_CONTEXT="outbound-ivr",
        ALLOWED_CONTEXTS="outbound-ivr",
        RUST_LOG="warn",
    )
    print(f"{'function':<10} {'size (bytes)':>13} {'size (MiB)':>10} {'ready: median':>14} {'min':>8} {'max':>8}")
    for name in FUNCTIONS:
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", name)
        size = os.path.getsize(binary)
        times = []
        for _ in range(runs):
            RuntimeApi.polled.clear()
            start = time.perf_counter()
            process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not RuntimeApi.polled.wait(10):
                process.kill()
                sys.exit(f"{name} never asked for an event")
            times.append((time.perf_counter() - start) * 1000)
            process.kill()
            process.wait()
        print(
            f"{name:<10} {size:>13} {size / 2**20:>10.2f} {statistics.median(times):>11.1f} ms"
            f" {min(times):>5.1f} ms {max(times):>5.1f} ms"
        )
    server.shutdown()


if __name__ == "__main__":
    main()
