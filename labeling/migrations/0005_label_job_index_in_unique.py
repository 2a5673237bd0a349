"""Label.job loses its own index: ``label_unique`` (job, item, side) starts with the job.

Only the index is dropped. Django's own AlterField would also drop and re-validate the foreign
key on PostgreSQL (a scan of every label under an exclusive lock) and rebuild the whole table on
SQLite; months of labels must not stop the studio for that.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "labeling_label_job_id_3f0b461e"


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0004_merge_20261130_1356"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="label",
                    name="job",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="labels",
                        to="labeling.job",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=f'CREATE INDEX "{INDEX}" ON "labeling_label" ("job_id")',
                ),
            ],
        ),
    ]
