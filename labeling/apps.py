from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save, pre_delete


class LabelingConfig(AppConfig):
    name = "labeling"
    verbose_name = "Labeling"

    def ready(self) -> None:
        # Here, not at the top: these modules import models, which exist only once apps load.
        from labeling.explain import pages
        from labeling.jobs import evaluation
        from labeling.models import Job, ReviewVote
        from labeling.models.core import refuse_finalized_job_deletion
        from labeling.review.snapshots import vote_written
        from policies import hooks

        hooks.register(
            hooks.LabelingHooks(
                versions_with_jobs=evaluation.versions_with_jobs,
                agreement_figures=evaluation.agreement_figures,
                clause_figures=pages.version_clause_figures,
            )
        )
        pre_delete.connect(
            refuse_finalized_job_deletion,
            sender=Job,
            dispatch_uid="labeling.refuse_finalized_job_deletion",
        )
        # Reviewer agreement's stored figures go out of date with any vote written, whatever
        # wrote it (labeling.review.snapshots).
        post_save.connect(vote_written, sender=ReviewVote, dispatch_uid="labeling.vote_saved")
        post_delete.connect(vote_written, sender=ReviewVote, dispatch_uid="labeling.vote_deleted")
