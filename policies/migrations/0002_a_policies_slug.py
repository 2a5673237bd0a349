"""Policy.slug: added empty, filled from each existing policy's name (suffixed on a clash),
then made unique and required."""

from django.db import migrations, models
from django.utils.text import slugify

SLUG_MAX_LENGTH = 100


def fill_slugs(apps, schema_editor):  # type: ignore[no-untyped-def]
    Policy = apps.get_model("policies", "Policy")
    taken: set[str] = set()
    for policy in Policy.objects.order_by("pk").only("pk", "name"):
        base = slugify(policy.name)[: SLUG_MAX_LENGTH - 6].strip("-") or "policy"
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate)
        Policy.objects.filter(pk=policy.pk).update(slug=candidate)


class Migration(migrations.Migration):
    dependencies = [("policies", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="policy",
            name="slug",
            field=models.SlugField(
                max_length=SLUG_MAX_LENGTH, null=True, editable=False, db_index=False
            ),
        ),
        migrations.RunPython(fill_slugs, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="policy",
            name="slug",
            field=models.SlugField(max_length=SLUG_MAX_LENGTH, unique=True, editable=False),
        ),
    ]
