"""The table of the default cache every web process shares (cope_studio.lib.cache.TABLE): the API
rate limit's counters, when no Redis cache is configured. Made with Django's own
`createcachetable` (which skips a table that exists), whatever CACHES says today."""

from django.core.management import call_command
from django.db import migrations

TABLE = "cope_cache"


def create(apps, schema_editor):
    call_command("createcachetable", TABLE, database=schema_editor.connection.alias, verbosity=0)


def drop(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(TABLE)}")


class Migration(migrations.Migration):
    dependencies = [("labeling", "0007_history_and_text_scope")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
