"""``hailwhale bench``'s machinery (installed as the package ``hailwhale_bench``): real
redis-servers, Hail and Whale under uWSGI, wrk and hailwail, measured against baselines run
in the same bench. Apart from the core package, which it only uses."""
