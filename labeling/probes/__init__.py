"""Probes: does the model read this policy? (steerability probes, dead clauses, carve-outs)

A probe run (``ExplainRun`` of kind probe, no job) scores up to ``COPE_PROBE_ITEMS`` items of
the policy's evaluation set under the probe variants of one version (``worker.probes``): the
version itself, an off-topic control, each label inverted and dropped, each clause removed.
It runs on the attribution engine (``labeling.explain``: chunks, flow control, resend,
give-up, record); when it finishes, ``record.summarize_probe`` writes its conclusions into the
run's ``summary`` (the one thing pages and gates read).

- ``services``: start a probe, cancel it, start a carve-out run (signed-off carve-outs and the
  LLM's rewording, scored under the parent probe run's version).
- ``analysis``: pure figures from the scores (leakage, inversion response, dead and
  load-bearing clauses, rewording stability, steerability, per-tag figures).
- ``record``: the finishers the engine calls when a probe or carve-out run ends.
- ``summary``: what pages and the finalize gate read (bounded queries on the summary JSON).
"""
