"""Smoke tests: each real server the suite depends on is really there and really used."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text

from repsys.servers import MosquittoServer, PostgresServer, RedisServer


def test_redis_server_is_a_real_redis(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    info = redis_client.info("server")
    assert info["tcp_port"] == redis_server.port
    assert info["redis_version"].split(".")[0] >= "7"
    redis_client.xadd("repsys:smoke", {"a": "1"})
    assert redis_client.xlen("repsys:smoke") == 1


def test_redis_keyspace_is_clean_per_test(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0


def test_mosquitto_round_trip(mosquitto_server: MosquittoServer) -> None:
    got = threading.Event()
    payloads: list[bytes] = []

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        payloads.append(bytes(msg.payload))
        got.set()

    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="smoke-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", mosquitto_server.port)
    sub.subscribe("repsys/smoke", qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="smoke-pub")
        pub.connect("127.0.0.1", mosquitto_server.port)
        pub.loop_start()
        pub.publish("repsys/smoke", b"hello", qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        assert got.wait(10)
        assert payloads == [b"hello"]
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_postgres_is_a_real_postgresql(postgres_server: PostgresServer, pg_engine) -> None:
    with pg_engine.connect() as conn:
        version = conn.execute(text("SHOW server_version_num")).scalar_one()
        port = conn.execute(text("SELECT inet_server_port()")).scalar_one()
    assert int(version) >= 120000
    assert port == postgres_server.port
