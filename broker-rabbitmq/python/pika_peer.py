"""A RabbitMQ peer rmicro did not write, with pika.

consume <url> <exchange> <topic>: binds an exclusive queue, prints "ready", then prints the
first message as "got <body> x-trace=<header>".
publish <url> <exchange> <topic> <body>: publishes with header x-trace=from-pika.
"""
import sys

import pika

mode, url, exchange, topic = sys.argv[1:5]
connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
if mode == "consume":
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange=exchange, routing_key=topic)
    print("ready", flush=True)
    for method, properties, body in channel.consume(queue, inactivity_timeout=20):
        if method is None:
            print("timeout", flush=True)
            break
        trace = (properties.headers or {}).get("x-trace")
        print(f"got {body.decode()} x-trace={trace}", flush=True)
        channel.basic_ack(method.delivery_tag)
        break
else:
    properties = pika.BasicProperties(headers={"x-trace": "from-pika"}, delivery_mode=2)
    channel.basic_publish(exchange=exchange, routing_key=topic, body=sys.argv[5].encode(), properties=properties)
    print("published", flush=True)
connection.close()
