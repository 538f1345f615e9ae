"""moto in server mode, one request at a time.

DynamoDB applies a conditional write atomically; moto's stock server is threaded and
checks and writes without a lock, so racing conditional writes can both succeed there.
Serving one request at a time gives the tests DynamoDB's guarantee back.

    python scripts/moto_server.py PORT
"""

import os
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, app, threaded=False, use_reloader=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
