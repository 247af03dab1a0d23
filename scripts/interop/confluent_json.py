"""A client no one here wrote, for the registry interop tests: Confluent's
Python client (confluent-kafka, with its SchemaRegistryClient, JSONSerializer
and JSONDeserializer), run with the venv scripts/setup installs under
~/.cache/orderflow/confluent-kafka.

    confluent_json.py read    BROKERS REGISTRY TOPIC COUNT
        Reads COUNT records of TOPIC (read_committed) with JSONDeserializer,
        which looks each record's schema up by the id in its wire-format
        header and validates the record against it; prints one JSON line
        per record, then exits 0. A record that fails is an exception
        (exit 1).
    confluent_json.py produce BROKERS REGISTRY TOPIC COUNT [FIELD=JSON ...]
        Publishes COUNT valid OrderPlaced events, keyed by order id, with
        JSONSerializer and the latest schema of TOPIC-value (it registers
        nothing: use.latest.version); FIELD=JSON adds a field to each.
        Prints each order id.
    confluent_json.py raw     BROKERS TOPIC ID JSON
        Publishes JSON framed with schema id ID by hand, no serializer.
"""
import json
import struct
import sys
import uuid
from datetime import datetime, timezone

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def registry_client(url):
    """The registry's client, each request bounded: without a timeout its
    HTTP client waits forever, and a CI run's reader once sat 240 s in a
    recv() the registry never answered. A timed-out request is retried (on
    a new connection) up to the client's max.retries, 3."""
    return SchemaRegistryClient({"url": url, "timeout": 20})


def read(brokers, registry, topic, count):
    client = registry_client(registry)
    deserializer = JSONDeserializer(None, schema_registry_client=client)
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"confluent-json-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    seen, idle = 0, 0
    while seen < count and idle < 60:
        message = consumer.poll(1.0)
        if message is None:
            idle += 1
            continue
        if message.error():
            raise RuntimeError(message.error())
        idle = 0
        value = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
        print(json.dumps(value), flush=True)
        seen += 1
    consumer.close()
    if seen < count:
        sys.exit(f"read {seen} of {count} records of {topic}")


def order(extra):
    sku = f"SKU-{uuid.uuid4().int % 20 + 1:04d}"
    item = {"sku": sku, "quantity": 1, "unit_price_cents": 250}
    placed = {
        "event_type": "OrderPlaced",
        "schema_version": 1,
        "order_id": str(uuid.uuid4()),
        "customer_id": "python-client",
        "items": [item],
        "total_cents": 250,
        "event_time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    placed.update(extra)
    return placed


def produce(brokers, registry, topic, count, fields):
    client = registry_client(registry)
    latest = client.get_latest_version(f"{topic}-value").schema
    serializer = JSONSerializer(
        latest.schema_str,
        client,
        conf={"auto.register.schemas": False, "use.latest.version": True},
    )
    extra = {name: json.loads(value) for name, value in (f.split("=", 1) for f in fields)}
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True})
    for _ in range(count):
        value = order(extra)
        payload = serializer(value, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=value["order_id"].encode(), value=payload)
        print(value["order_id"], flush=True)
    if producer.flush(30) != 0:
        sys.exit("not every order was acknowledged")


def raw(brokers, topic, schema_id, text):
    producer = Producer({"bootstrap.servers": brokers})
    producer.produce(topic, key=b"raw", value=b"\0" + struct.pack(">I", schema_id) + text.encode())
    if producer.flush(30) != 0:
        sys.exit("the record was not acknowledged")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "read":
        read(args[0], args[1], args[2], int(args[3]))
    elif mode == "produce":
        produce(args[0], args[1], args[2], int(args[3]), args[4:])
    elif mode == "raw":
        raw(args[0], args[1], int(args[2]), args[3])
    else:
        sys.exit(__doc__)
