#!/usr/bin/python3
"""An unmodified oslo.messaging Notifier, as an OpenStack service emits notifications.

Usage: oslo_notify.py URL EXCHANGE TOPIC < notifications.json

stdin holds a JSON list of {"priority", "event_type", "publisher_id", "payload"}; each is
sent with the messagingv2 driver to the topic exchange EXCHANGE (the service's
control_exchange), routing key TOPIC.<priority>. Prints SENT <count> once all are
published, and exits 0.
"""
import json
import sys

from oslo_config import cfg
import oslo_messaging


def main():
    url, exchange, topic = sys.argv[1:4]
    notifications = json.load(sys.stdin)
    oslo_messaging.set_transport_defaults(control_exchange=exchange)
    cfg.CONF([], project='callback-relay-interop', default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(cfg.CONF, url=url)
    notifier = oslo_messaging.Notifier(transport, driver='messagingv2', topics=[topic])
    for n in notifications:
        publisher = notifier.prepare(publisher_id=n['publisher_id'])
        getattr(publisher, n['priority'].lower())({}, n['event_type'], n['payload'])
    transport.cleanup()
    print('SENT %d' % len(notifications), flush=True)


if __name__ == '__main__':
    main()
