from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "labeling"
    verbose_name = "Labeling"

    def ready(self) -> None:
        # Here, not at the top: these modules import models, which exist only once apps load.
        from labeling.explain import pages
        from labeling.jobs import evaluation
        from policies import hooks

        hooks.register(
            hooks.LabelingHooks(
                versions_with_jobs=evaluation.versions_with_jobs,
                agreement_figures=evaluation.agreement_figures,
                clause_figures=pages.version_clause_figures,
            )
        )
