#!/usr/bin/env python3
"""Copies events/ to target/events/ with a fresh access token in place of
{{ADMIN_TOKEN}}: an HS256 JWT for the user `admin` (token version 0), signed with
SECRET_KEY (default: the development key scripts/lambda-local uses), valid for
ACCESS_TOKEN_EXPIRE_MINUTES (default 60). Tokens may not claim a longer life than the
functions issue, so sample events cannot carry a long-lived token.

    python3 scripts/sign-events.py
    cargo lambda invoke status --data-file target/events/status/list.json
"""

import base64
import hashlib
import hmac
import json
import os
import pathlib
import time

DEV_KEY = "local-events-secret-key-0123456789"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(key: str, minutes: int) -> str:
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": "admin", "iat": now, "exp": now + minutes * 60, "ver": 0}
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def main() -> None:
    root = pathlib.Path(__file__).resolve().parent.parent
    fresh = token(
        os.environ.get("SECRET_KEY", DEV_KEY),
        int(os.environ.get("ACCESS_TOKEN_EXPIRE_MINUTES", "60")),
    )
    written = 0
    for source in sorted((root / "events").rglob("*.json")):
        target = root / "target" / source.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text().replace("{{ADMIN_TOKEN}}", fresh))
        written += 1
    print(f"{written} events in target/events/, token valid for the next hour")


if __name__ == "__main__":
    main()
