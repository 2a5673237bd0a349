"""Attribution: which clause of a job's two wordings decides each label (binocular attribution).

A run scores a job's items (mismatches first) under every distinct policy variant of its two
wordings (``worker.variants``: bases, clause removals, clause swaps) on the model workers, in
chunks of items, with the jobs' flow control, resend and give-up; then reads each item's
conclusion from the scores.

- ``services``: start a run (``start_explain``, ``explain_after_job``, ``explain_more``),
  cancel it, resume lost chunks (called by the jobs' beat task).
- ``dispatch``: the window of chunks in flight, sending, giving up.
- ``broker``: the one place an explain chunk is handed to the broker (tests patch it), and
  which explain chunks the queues and workers hold.
- ``record``: ``record_explain_result``, idempotent per (run, chunk); analyses complete items
  and finishes the run (task ``labeling.record_explain`` in ``labeling.tasks``).
- ``analysis``: pure functions: swap test, removal test, gold misses, from one item's scores.
- ``summary``: what the pages read (clauses ranked per job, items per clause, one item).

Models (``labeling.models``): ``ExplainRun``, ``ExplainChunk``, ``ExplainScore`` (one item under
one variant, attribution runs; the other kinds keep ``ChunkScores``, ``labeling.run_scores``),
``ExplainItem`` (one item's conclusion per job), ``ExplainFinding`` (one clause's part in one
item's label: decides, tied, necessary, gold miss).
"""
