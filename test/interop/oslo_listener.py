#!/usr/bin/python3
"""An unmodified oslo.messaging notification listener, as an OpenStack consumer runs one.

Usage: oslo_listener.py URL EXCHANGE TOPIC COUNT TIMEOUT_S

Prints READY once listening, then one JSON line per notification received
(priority, event_type, publisher_id, payload, message_id, timestamp), and exits 0
after COUNT notifications, or 1 when TIMEOUT_S passes first.
"""
import json
import sys
import threading

from oslo_config import cfg
import oslo_messaging


def main():
    url, exchange, topic, count, timeout = sys.argv[1:6]
    count = int(count)
    cfg.CONF([], project='callback-relay-interop', default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(cfg.CONF, url=url)
    targets = [oslo_messaging.Target(topic=topic, exchange=exchange)]
    received = []
    lock = threading.Lock()
    done = threading.Event()

    class Endpoint(object):
        def _record(self, priority, publisher_id, event_type, payload, metadata):
            with lock:
                print(json.dumps({
                    'priority': priority,
                    'event_type': event_type,
                    'publisher_id': publisher_id,
                    'payload': payload,
                    'message_id': metadata.get('message_id'),
                    'timestamp': metadata.get('timestamp'),
                }), flush=True)
                received.append(metadata.get('message_id'))
                if len(received) >= count:
                    done.set()

        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            self._record('INFO', publisher_id, event_type, payload, metadata)

        def error(self, ctxt, publisher_id, event_type, payload, metadata):
            self._record('ERROR', publisher_id, event_type, payload, metadata)

    listener = oslo_messaging.get_notification_listener(
        transport, targets, [Endpoint()], executor='threading')
    listener.start()
    print('READY', flush=True)
    done.wait(float(timeout))
    listener.stop()
    listener.wait()
    transport.cleanup()
    sys.exit(0 if done.is_set() else 1)


if __name__ == '__main__':
    main()
