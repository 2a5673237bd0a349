"""The mismatch review queue.

- ``claim``: which part of the queue (``QueueFilter``), claiming the next task, skipping and
  bringing skipped tasks back, and the card's read of a task (``load_task``).
- ``counts``: the capped task counts shown over the card.
- ``decisions``: a reviewer's decision (the task resolved, the gold label recorded).
- ``carry_over``: decisions carried over to reruns under the same two texts.
- ``earlier``: earlier decisions on the same or near-identical content (the `r` key's source).
- ``notes``: review notes, a job's decisions grouped by quoted clause.
- ``diff``: the two wordings' differences, bounded.
- ``forms``, ``views``, ``urls``: the screens.
"""
