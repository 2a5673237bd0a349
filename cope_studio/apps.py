from django.apps import AppConfig


class CopeStudioConfig(AppConfig):
    """The project package as an app, for its system checks (``cope_studio.checks``)."""

    name = "cope_studio"
    verbose_name = "CoPE Studio"

    def ready(self) -> None:
        from cope_studio import checks  # noqa: F401  (registers the checks)
