"""vidgen's Runway adapter.

- :mod:`vidgen_runway.catalog`: the one table of model facts (ratios, durations, prompt and
  seed limits, prices, typical task times) that the gateway validates against, the poller
  takes its priors from and the simulator enforces. Standard library only.
- :mod:`vidgen_runway.verdicts`: what to do about an error or a failed task
  (:class:`~vidgen_runway.verdicts.Verdict`), and the judgement of a task's ``failureCode``.
  Standard library only.
- :mod:`vidgen_runway.settings`, :mod:`vidgen_runway.errors`, :mod:`vidgen_runway.sdk`: how to
  reach Runway, the error the adapters raise, and the official SDK client with the
  classification of its exceptions. These need the ``vidgen-runway[sdk]`` extra; only the
  services that call Runway (generator, poller) install it.

Nothing is re-exported here, so importing the catalog never imports the SDK.
"""
