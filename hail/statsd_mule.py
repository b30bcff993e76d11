"""Hail's StatsD listener as a uWSGI programmed mule (``mule = %d/hail/statsd_mule.py`` in
uwsgi.ini's [hail-base]): one process beside the workers, started and stopped with them.

With STATSD_PORT 0 (or the Celery backend) it only waits, so that uWSGI does not restart it
over and over; when the port is taken it says so and tries again every RETRY seconds.
"""

import logging
import time

from hail.statsd import Listener
from hailwhale.buffer import Buffer
from hailwhale.config import load_settings

RETRY = 10.0

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
log = logging.getLogger("hailwhale.statsd")
settings = load_settings()
if not settings.statsd_port or settings.hail_backend == "celery":
    log.info("statsd: off (STATSD_PORT 0 or HAIL_BACKEND=celery)")
    while True:
        time.sleep(3600)
buffer = Buffer.from_url(settings.hail_redis_url)
while True:
    try:
        listener = Listener(settings, buffer)
    except OSError as exc:
        log.error("statsd: cannot listen on %s:%s (%s); trying again in %gs",
                  settings.statsd_host, settings.statsd_port, exc.strerror or exc, RETRY)
        time.sleep(RETRY)
        continue
    log.info("statsd: listening on udp and tcp %s:%s, counting into pk %r",
             settings.statsd_host, listener.port, settings.statsd_pk)
    listener.serve_forever()
