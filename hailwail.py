"""hailwail: drains a Hail node's buffer into Whale.

    hailwail                 drain until the buffer is empty, then exit (for cron)
    hailwail --loop 5        drain, wait 5 seconds, drain again, until stopped

Settings: HAIL_REDIS_URL (the buffer), WHALE_URL (where Whale listens). Exit status: 0 when
the buffer was drained, 1 when Whale could not be reached or did not confirm a batch (the
batch stays in flight and the next run sends it again).
"""

from hailwhale_cli.wail import main

if __name__ == "__main__":
    raise SystemExit(main())
