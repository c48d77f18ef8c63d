"""The chaos suite: vidgen's reliability contract checked against real processes being killed.

Modules: ``stack`` (the private infrastructure and its faults), ``supervisor`` (processes,
restarted like a kubelet would), ``load`` (users through the REST API), ``faults`` (the
seeded schedule and its runner), ``evidence`` (what the judge reads, from sources the services
do not control), ``invariants`` (the judge), ``diagnosis`` (what the services' own tables
say about a suspect generation: never the judge), ``report`` (the table), ``run`` (one run).
"""
