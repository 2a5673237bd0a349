"""Notifications: in the app, by email and by per-policy webhooks, for a job's end, an emptied
review queue, a finalized version and an assignment (``events``); and each policy's activity
feed (``feed``)."""
