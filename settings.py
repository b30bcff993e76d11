"""HailWhale's settings: the defaults, as in the original README.

Edit this file, point ``HAILWHALE_SETTINGS`` at a copy of it, or override single values with
environment variables (shown beside each). Every name here is documented in README.md.
"""

# Roll-up periods as (interval_seconds, retention_seconds), optionally with a label.
# Environment: HAILWHALE_PERIODS=15s:3h,1h:7d,1d:1y
PERIODS = [
    (15, 3600 * 3),  # Every 15 seconds for the last 3 hours
    (3600, 3600 * 24 * 7),  # Every hour for the last week
    (3600 * 24, 3600 * 24 * 365),  # Every day for the last year
]

# Where Whale keeps the counters. None: redis://127.0.0.1:6379/0 for `hailwhale whale` and
# the Python API, and an embedded store for `hailwhale demo`.
# Environment: WHALE_REDIS_URL=redis://host:6379/0
WHALE_REDIS_URL = None

# Where a Hail node buffers incoming events (its local Redis). Environment: HAIL_REDIS_URL
HAIL_REDIS_URL = "redis://127.0.0.1:6379/1"

# Where hailwail and the Python API find Whale. Environment: WHALE_URL
WHALE_URL = "http://127.0.0.1:8080"

# How Hail moves events: "redis" (buffer in HAIL_REDIS_URL, drained by hailwail) or
# "celery" (tasks over CELERY_BROKER_URL, counted by Celery workers).
# Environment: HAIL_BACKEND
HAIL_BACKEND = "redis"

# The Celery broker (RabbitMQ). Environment: CELERY_BROKER_URL
CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"

# The Celery queue (and the name of its exchanges), so several deployments can share one
# RabbitMQ. Environment: HAILWHALE_CELERY_QUEUE
CELERY_QUEUE = "hailwhale"

# How often Celery beat runs hailwail's drain, in seconds. Environment: HAILWAIL_INTERVAL
HAILWAIL_INTERVAL = 5

# The time zone that day (and week) buckets follow. Environment: HAILWHALE_TIMEZONE
TIMEZONE = "UTC"

# More zones whose day (and week) buckets are kept for the whole retention, for queries
# with tz=; other zones' days are folded from hourly buckets while those are kept.
# Environment: HAILWHALE_TIMEZONES=Europe/Berlin,America/New_York
TIMEZONES = ()

# Limits on one event; past them the event is refused with a 400.
MAX_DEPTH = 8  # levels in one dimension branch.  Environment: HAILWHALE_MAX_DEPTH
MAX_BRANCHES = 16  # branches in one event.  Environment: HAILWHALE_MAX_BRANCHES
MAX_METRICS = 32  # metrics in one event.  Environment: HAILWHALE_MAX_METRICS
MAX_NAME_LENGTH = 200  # characters in a dimension value or pk.  HAILWHALE_MAX_NAME_LENGTH
FUTURE_SKEW = 300  # seconds an event's `at` may lie in the future.  HAILWHALE_FUTURE_SKEW
MAX_BUCKETS = 5000  # buckets one query may span.  Environment: HAILWHALE_MAX_BUCKETS
# Children one dimension may hold; events under further new children are counted under its
# child "__other__", so totals stay exact and made-up names cannot fill Redis.
MAX_CHILDREN = 1000  # Environment: HAILWHALE_MAX_CHILDREN
# Series x buckets one query may rank (depth over many children and a long window), and as
# many it may show; past it the query is refused with a 400 (a million cells take a worker
# about 6 s). Environment: HAILWHALE_MAX_QUERY_CELLS
MAX_QUERY_CELLS = 1_000_000
# Heavy queries (past 100,000 cells) a Whale node runs at once, over all its workers; one
# more is refused at once with a 503 and Retry-After. Keep it below the number of workers, so
# that counting always finds one free. Environment: HAILWHALE_QUERY_SLOTS
QUERY_SLOTS = 2
# Distinct metric names one pk may hold; an event naming a new one past it is refused (a 400
# from Whale's /count, a dead letter through hailwail). Environment: HAILWHALE_MAX_PK_METRICS
MAX_PK_METRICS = 200

# How long Whale remembers a batch id, so that a batch sent again (after a crash, a timeout)
# is not counted twice. Longer than any batch can wait for a retry.
BATCH_MEMORY = 7 * 24 * 3600  # Environment: HAILWHALE_BATCH_MEMORY

# Authentication. With a SECRET (at least 32 characters), every write needs a write token,
# every read a read token and POST /batch an admin token, made with `hailwhale token`; see
# README.md, "Security". Without one the service is open to anyone who can reach it, and
# refuses to start on an address other machines can reach unless ALLOW_OPEN is set.
# Environment: HAILWHALE_SECRET; make one with
#   python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
SECRET = None

# The ids of leaked tokens (`hailwhale token --id TOKEN` prints one), refused from the next
# start on. Environment: HAILWHALE_REVOKED_TOKENS=id1,id2
REVOKED_TOKENS = []

# The admin token hailwail and Celery's drain task send to Whale. None: with a SECRET they
# make a short-lived one themselves. Environment: HAILWHALE_TOKEN
TOKEN = None

# Serve with no SECRET on an address other machines can reach (default: only on loopback).
# Environment: HAILWHALE_ALLOW_OPEN=1
ALLOW_OPEN = False

# StatsD into Hail (hail/statsd.py): the line protocol on UDP and TCP, on this port (0: off)
# and address, its metrics counted under this pk. StatsD carries no token, so it listens on
# loopback unless STATSD_HOST says otherwise: bind it to a private interface only.
# Environment: HAILWHALE_STATSD_PORT, HAILWHALE_STATSD_HOST, HAILWHALE_STATSD_PK
STATSD_PORT = 8125
STATSD_HOST = "127.0.0.1"
STATSD_PK = ""
