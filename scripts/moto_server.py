#!/usr/bin/env python3
"""moto_server for Clearway's AWS lane, with two fixes to its DynamoDB
emulation (moto 5.2.5), so the lane tests Clearway rather than the emulator:

1. Atomicity. DynamoDB makes every conditional write and every transaction
   atomic; moto's threaded server runs requests concurrently without a lock,
   so two concurrent `attribute_not_exists` puts of one key can both win, and
   a transaction copying a table while another request writes to it fails
   with "dictionary changed size during iteration" (a 500). Here every
   DynamoDB operation holds one lock.
2. Cost. moto's TransactWriteItems deep-copies the whole table once per item
   (for rollback), so each transaction costs O(items x table size) and a
   test slows to a crawl as its table grows. Here a transaction evaluates
   its conditions first, against the state before it (as DynamoDB does);
   only when one fails does moto's own path run (with its copy, to build
   the exact cancellation reasons). When all hold, it applies without the
   copy.

3. Cost. moto answers a Query by sorting every item of the table and
   filtering them by partition key; here a Query on the table's own key
   reads just that partition (the rest of moto's Query runs unchanged).

Everything else is moto's. Usage: the same arguments as moto_server.
"""

import copy as _copy
import sys
import threading

import moto.dynamodb.models as ddb
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.server import main

_lock = threading.RLock()


def _serialised(fn):
    def wrapper(*args, **kwargs):
        with _lock:
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    return wrapper


class _NoTableCopy:
    """`copy` for moto's DynamoDB module: tables are not copied."""

    @staticmethod
    def deepcopy(x, memo=None):
        if isinstance(x, Table):
            return x
        return _copy.deepcopy(x, memo)


_original_transact_write_items = DynamoDBBackend.transact_write_items


def _key_of(table, op_type, op):
    if op_type == "Put":
        attrs = op["Item"]
        key = {table.hash_key_attr: attrs[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs[table.range_key_attr]
        return key
    return op["Key"]


def _conditions_hold(backend, transact_items):
    for item in transact_items:
        if len(item) != 1:
            return False
        op_type, op = next(iter(item.items()))
        condition = op.get("ConditionExpression")
        if condition is None:
            continue
        table = backend.get_table(op["TableName"])
        current = backend.get_item(op["TableName"], _key_of(table, op_type, op))
        check = ddb.get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        )
        if not check.expr(current):
            return False
    return True


def _transact_write_items(self, transact_items):
    with _lock:
        if not _conditions_hold(self, transact_items):
            return _original_transact_write_items(self, transact_items)
        ddb.copy = _NoTableCopy
        try:
            return _original_transact_write_items(self, transact_items)
        finally:
            ddb.copy = _copy


_original_query = Table.query


def _query(self, hash_key, *args, **kwargs):
    # moto passes index_name seventh after the hash key.
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    if index_name is None and hash_key is not None and self.range_key_attr:
        partition = self.items.get(hash_key, {})
        self.all_items = lambda: list(partition.values())
        try:
            return _original_query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items
    return _original_query(self, hash_key, *args, **kwargs)


Table.query = _query

for _name in ("get_item", "put_item", "update_item", "delete_item", "query", "scan"):
    setattr(DynamoDBBackend, _name, _serialised(getattr(DynamoDBBackend, _name)))
DynamoDBBackend.transact_write_items = _transact_write_items

if __name__ == "__main__":
    sys.exit(main())
