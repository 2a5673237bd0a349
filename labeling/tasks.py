"""Celery tasks of the web side (queue ``default``); the logic lives in ``services``."""

from __future__ import annotations

import logging
from smtplib import SMTPException
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from labeling.explain import record as explain_record
from labeling.explain import services as explain_services
from labeling.jobs import results, services
from labeling.jobs.broker import PREPARE_JOB_TASK
from labeling.notify import broker as notify_broker
from labeling.notify import services as notify_services
from labeling.notify import webhooks
from labeling.probes import llm as probe_llm
from labeling.review import snapshots as agreement_snapshots
from labeling.samples import services as samples
from labeling.whatif import suggest as whatif_suggest
from labeling.workers.services import record_heartbeat_task  # noqa: F401  (registers it)
from worker.contract import (
    RECORD_CHUNK_TASK,
    RECORD_EXPLAIN_TASK,
    ContractError,
    ExplainResult,
    ScoreResult,
)
from worker.contract_llm import (
    RECORD_PROBE_LLM_TASK,
    RECORD_SUGGEST_TASK,
    ProbeLLMResult,
    SuggestResult,
)

log = logging.getLogger(__name__)

RESUME_STALLED_TASK = "labeling.resume_stalled_jobs"  # scheduled in settings.CELERY_BEAT_SCHEDULE
# A locked, restarting or cut-off database (a terminated connection is an OperationalError, or
# an InterfaceError on the next use): try again later. Django's Celery fixup drops the broken
# connection between tries.
DATABASE_GONE = (OperationalError, InterfaceError)


@shared_task(  # type: ignore[untyped-decorator]
    name=RECORD_CHUNK_TASK,
    acks_late=True,
    autoretry_for=DATABASE_GONE,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def record_chunk(result_dict: dict[str, Any]) -> str:
    """Write a chunk's labels. Idempotent: a redelivered result finds its chunk done."""
    try:
        result = ScoreResult.from_dict(result_dict)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        # Retrying a malformed message cannot help; log it and drop it.
        log.error("labeling.record_chunk: unusable result (%s): %.300r", exc, result_dict)
        return "rejected"
    outcome = results.record_chunk_result(result)
    log.info(
        "job %s chunk %s side %s: %s%s",
        result.job_id,
        result.chunk_id,
        result.side,
        outcome.action,
        " (job finished)" if outcome.finished else "",
    )
    return outcome.action


@shared_task(  # type: ignore[untyped-decorator]
    name=PREPARE_JOB_TASK,
    acks_late=True,
    autoretry_for=DATABASE_GONE,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def prepare_job(job_id: int) -> bool:
    """Sample a started job's items, create its chunks and send the first ones."""
    return services.prepare_job(int(job_id))


@shared_task(name=RESUME_STALLED_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def resume_stalled_jobs() -> int:
    """Run by Celery beat every ``COPE_RESUME_EVERY_SECONDS``: re-send the chunks no queue and
    no model worker has (``labeling.jobs.services.lost_chunks``), fill each job's window, and
    queue again a lost preparation. Returns the number of chunks re-sent."""
    resent = services.resume_stalled_jobs()
    for job_id, n in resent.items():
        log.warning("job %s: re-sent %s lost chunk%s", job_id, n, "" if n == 1 else "s")
    # Explain runs' lost chunks, by the same rules (``labeling.explain.services``).
    explained = explain_services.resume_stalled_runs()
    for run_id, n in explained.items():
        log.warning("explain run %s: re-sent %s lost chunk%s", run_id, n, "" if n == 1 else "s")
    return sum(resent.values()) + sum(explained.values())


@shared_task(  # type: ignore[untyped-decorator]
    name=RECORD_EXPLAIN_TASK,
    acks_late=True,
    autoretry_for=DATABASE_GONE,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def record_explain(result_dict: dict[str, Any]) -> str:
    """Write an explain chunk's scores and its items' conclusions (``labeling.explain.record``).
    Idempotent per (run, chunk): a redelivered or re-sent answer changes nothing."""
    try:
        result = ExplainResult.from_dict(result_dict)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("labeling.record_explain: unusable result (%s): %.300r", exc, result_dict)
        return "rejected"
    outcome = explain_record.record_explain_result(result)
    log.info(
        "explain run %s chunk %s: %s%s",
        result.run_id,
        result.chunk_id,
        outcome.action,
        " (run finished)" if outcome.finished else "",
    )
    return outcome.action


@shared_task(  # type: ignore[untyped-decorator]
    name=RECORD_PROBE_LLM_TASK,
    acks_late=True,
    autoretry_for=DATABASE_GONE,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def record_probe_llm(result_dict: dict[str, Any]) -> str:
    """Write a probe's carve-outs and rewording (``labeling.probes.llm``). Idempotent per run:
    a redelivered answer changes nothing."""
    try:
        result = ProbeLLMResult.from_dict(result_dict)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("labeling.record_probe_llm: unusable result (%s): %.300r", exc, result_dict)
        return "rejected"
    return probe_llm.record_probe_llm_result(result)


@shared_task(  # type: ignore[untyped-decorator]
    name=RECORD_SUGGEST_TASK,
    acks_late=True,
    autoretry_for=DATABASE_GONE,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def record_suggest(result_dict: dict[str, Any]) -> str:
    """Write a clause's suggested rewrites and start a what-if run for each
    (``labeling.whatif.suggest``). Idempotent per run: a redelivered answer changes nothing."""
    try:
        result = SuggestResult.from_dict(result_dict)
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        log.error("labeling.record_suggest: unusable result (%s): %.300r", exc, result_dict)
        return "rejected"
    return whatif_suggest.record_suggest_result(result)


# Sample-set imports run here, not in the request ---------------------------------


@shared_task(  # type: ignore[untyped-decorator]
    name=samples.RUN_IMPORT_TASK,
    acks_late=True,
    ignore_result=True,
)
def run_import(sample_set_id: int) -> str:
    """Read an uploaded file into its sample set (``samples.run_import``): ready, or failed
    with the reason and nothing kept. A redelivered task starts the set again from empty."""
    outcome = samples.run_import(sample_set_id=sample_set_id)
    log.info("sample set %s: import %s", sample_set_id, outcome)
    return outcome


@shared_task(name=samples.CLEAN_UPLOADS_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def clean_uploads() -> dict[str, int]:
    """Run by Celery beat every hour: fail imports whose worker was lost, delete uploads
    nobody imported (``samples.clean_abandoned_imports``)."""
    return samples.clean_abandoned_imports()


# Notifications: emails and webhook deliveries, never in a request or a result write ------


@shared_task(  # type: ignore[untyped-decorator]
    name=notify_broker.SEND_EMAIL_TASK,
    bind=True,
    acks_late=True,
    autoretry_for=(*DATABASE_GONE, OSError, SMTPException),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=5,
)
def send_notification_email(self: Any, notification_id: int) -> str:
    """Send one notification's email (``labeling.notify.services``); a mail server that
    refuses is retried with backoff, and after the last try the row says "failed"."""
    try:
        return notify_services.send_notification_email(int(notification_id))
    except (OSError, SMTPException) as exc:
        if self.request.retries >= self.max_retries:
            notify_services.mark_email_failed(int(notification_id), str(exc))
        raise


@shared_task(name=notify_broker.DELIVER_WEBHOOK_TASK, acks_late=True)  # type: ignore[untyped-decorator]
def deliver_webhook(delivery_id: int) -> str:
    """One try of a webhook delivery; a failed try queues the next itself, with its backoff
    (``labeling.notify.webhooks``)."""
    outcome = webhooks.deliver(int(delivery_id))
    log.info("webhook delivery %s: %s", delivery_id, outcome)
    return outcome


@shared_task(name=notify_broker.RESUME_DELIVERIES_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def resume_webhook_deliveries() -> int:
    """Run by Celery beat every minute: send again the webhook deliveries whose message was
    lost (``labeling.notify.webhooks.resume_deliveries``)."""
    return webhooks.resume_deliveries()


# Reviewer agreement, computed here so no page reads every vote -----------------------------


@shared_task(  # type: ignore[untyped-decorator]
    name=agreement_snapshots.REFRESH_AGREEMENT_TASK,
    acks_late=True,
    ignore_result=True,
    autoretry_for=DATABASE_GONE,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def refresh_agreement(job_id: int | None = None, policy_id: int | None = None) -> int:
    """Recompute a job's and its policy's reviewer agreement (``labeling.review.snapshots``).
    Idempotent: a snapshot already current is left alone, so a burst of votes costs one
    computation. Held to ``COPE_TASK_SOFT_TIME_LIMIT`` like every task of this queue."""
    return agreement_snapshots.refresh_agreement(
        job_id=None if job_id is None else int(job_id),
        policy_id=None if policy_id is None else int(policy_id),
    )
