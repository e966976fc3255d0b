"""A Kafka peer rmicro did not write, with confluent-kafka.

consume <brokers> <topic>: prints the first message as "got <value> x-trace=<header>".
produce <brokers> <topic> <value>: produces with header x-trace=from-python, waits for delivery.
"""
import sys

from confluent_kafka import Consumer, Producer

mode, brokers, topic = sys.argv[1:4]
if mode == "consume":
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "python-peer", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    for _ in range(60):
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        headers = dict(message.headers() or [])
        trace = headers.get("x-trace", b"").decode()
        print(f"got {message.value().decode()} x-trace={trace}", flush=True)
        break
    else:
        print("timeout", flush=True)
    consumer.close()
else:
    producer = Producer({"bootstrap.servers": brokers})
    producer.produce(topic, value=sys.argv[4].encode(), headers=[("x-trace", b"from-python")])
    remaining = producer.flush(30)
    print("produced" if remaining == 0 else "not delivered", flush=True)
