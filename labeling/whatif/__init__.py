"""What-if edits: reword one clause and see, before making a version, what the edit would do.

A what-if run (``ExplainRun`` of kind whatif) scores the version's deciding job's items under
the version's two wordings as the job ran them (A, B) and the edited ones (A*, and B* when the
twin's aligned clause is edited too), on the attribution engine (``labeling.explain``: chunks,
flow control, resend, give-up). When it finishes, its ``summary`` holds the before -> after
table: agreement on the clause's mismatches and on every item, gold figures of side A, the
items whose verdict changes (fixed, broken, other) and the predicted agreement of the edited
version's first job on the same items.

- ``services``: validate and start an edit (``start_whatif``), make it a draft version
  (``make_version``).
- ``analysis``: the table, pure maths from scores and gold.
- ``record``: the finisher the engine calls (``finish_whatif``).
- ``summary``: what pages read (the summary JSON and one query for item texts).
"""
