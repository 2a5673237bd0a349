"""Binocular jobs: one version's text (A) and side B label every item of a sample set.

What lives where (lower modules first; each imports only those above it):

- ``errors``: ``JobError``, the message a refused request shows.
- ``sql``: table and column names from the models for the few statements written by hand.
- ``broker``: sending chunks and preparations to the broker (tests replace the two sends
  here), and what the broker and the workers hold (``look``).
- ``dispatch``: flow control: claim the job's next chunks (the chunk window), send them,
  give up on a chunk sent too often; the bookkeeping clock.
- ``stats``: a job's agreement statistics and mismatches (the statistics pivot), ``ANALYZE``
  after a large job, progress for the page.
- ``results``: recording a chunk's result (the label upsert) and finishing the job.
- ``evaluation``: the evaluation set and each version's *deciding job*, the one meaning of a
  version's agreement on every page (the policy list included, through ``policies.hooks``);
  the policy settings.
- ``comparisons``: what side B is (twin, another version, pasted text); two versions compared.
- ``services``: what a person or beat does: start, prepare, cancel, resume lost chunks, retry.
- ``charts``, ``display``, ``forms``, ``views``, ``urls``: the pages.
"""
