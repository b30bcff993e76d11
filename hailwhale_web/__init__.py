"""The HTTP plumbing Hail and Whale share, owned by neither: parameters, bodies, answers and
errors, tokens on requests, common headers (``plumbing``), and the threaded server the
commands serve an app with (``server``). Above the core, below the two apps."""
