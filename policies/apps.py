from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_delete


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Policies"

    def ready(self) -> None:
        from policies.models import Version, refuse_finalized_version_deletion
        from policies.roles import ensure_roles

        # After every migrate, once all apps' permissions exist.
        post_migrate.connect(ensure_roles, dispatch_uid="policies.ensure_roles")
        pre_delete.connect(
            refuse_finalized_version_deletion,
            sender=Version,
            dispatch_uid="policies.refuse_finalized_version_deletion",
        )
