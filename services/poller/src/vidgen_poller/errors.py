"""Errors of the poller service.

The poller raises none of its own: Runway's failures travel as
:class:`vidgen_runway.errors.RunwayCallError` (with a verdict) and are turned into a retry
schedule or an event; database and broker errors propagate to the consumer runner (retries,
then the dead-letter topic) or to the scheduler loop (logged, retried on the next pass, the
claim's lease making the task due again).
"""
