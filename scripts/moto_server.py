"""moto in server mode, one request at a time.

DynamoDB applies a conditional write atomically; moto's stock server is threaded and
checks and writes without a lock, so racing conditional writes can both succeed there.
Serving one request at a time gives the tests DynamoDB's guarantee back.

A TransactWriteItems in moto first deep-copies every table it names, once per item it
writes (to put the copy back if the transaction is canceled), stream records and all: a
transaction on the calls table took ~40 ms at 300 items and ~200 ms after 3,000 writes
to its stream, where a PutItem takes 2 ms, and a test that saves pacing states in
transactions under contention crawled. DynamoDB's cost does not grow with the table;
here a transaction backs up only the items it touches, and the stream's length.

    python scripts/moto_server.py PORT
"""

import copy
import os
import sys

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple

_transact_write_items = DynamoDBBackend.transact_write_items


class _KeepTables:
    """What moto's transaction sees as `copy` while the backup below stands in."""

    @staticmethod
    def deepcopy(value, memo=None):
        return value


def _transact_write_items_backing_up_items(self, transact_items):
    touched = []
    for transact_item in transact_items:
        _, op = next(iter(transact_item.items()))
        try:
            table = self.get_table(op["TableName"])
            key = op.get("Key") or {a: op["Item"][a] for a in table.table_key_attrs}
            hash_value, range_value = self.get_keys_value(table, key)
        except Exception:
            continue  # moto answers a bad item as it always does, writing nothing
        before = copy.deepcopy(table.get_item(hash_value, range_value))
        touched.append((table, hash_value, range_value, before))
    streams = {
        id(table): (table.stream_shard, len(table.stream_shard.items))
        for table, _, _, _ in touched
        if table.stream_shard is not None
    }
    dynamodb_models.copy = _KeepTables
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table, hash_value, range_value, before in reversed(touched):
            items = table.items[hash_value] if range_value is not None else table.items
            slot = range_value if range_value is not None else hash_value
            if before is None:
                items.pop(slot, None)
            else:
                items[slot] = before
        for shard, length in streams.values():
            del shard.items[length:]
        raise
    finally:
        dynamodb_models.copy = copy


DynamoDBBackend.transact_write_items = _transact_write_items_backing_up_items


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, app, threaded=False, use_reloader=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
