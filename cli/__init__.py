"""The verbs behind `python starter.py` (starter.py only assembles them).

One module per verb, each with ``register(verbs)`` (its parser) and ``run(args, settings)``:
``db``, ``track``, ``sync``, ``status``, ``reset``, ``scheduler`` (and the manual add it serves),
``add``, ``temporal``, ``services``, ``sandbox``, ``demo``. Shared parts: ``common`` (exit
codes, parser, output, servers), ``launch`` (the one start-and-maybe-wait helper), ``progress``
(live progress of a wait), ``pollers`` (is a worker polling), ``unreachable`` (a server that does
not answer, in one line), ``commands`` (what a provider adds to the generic verbs).
Provider-specific sub-commands live in one module per provider, ``cli/<provider name>.py``
(and ``cli/<provider name>_*.py``), reached through its spec's ``cli`` field
(providers/registry.py lists the specs); the generic verbs name no provider.
"""


class CliError(Exception):
    """An operational failure with a one-line message (exit 1)."""
