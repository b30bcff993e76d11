"""The commands, above the apps: ``hailwhale`` (``main``), ``hailwhale demo`` (``demo``) and
``hailwail`` (``wail``)."""
