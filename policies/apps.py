from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Policies"

    def ready(self) -> None:
        from policies.roles import ensure_roles

        # After every migrate, once all apps' permissions exist.
        post_migrate.connect(ensure_roles, dispatch_uid="policies.ensure_roles")
