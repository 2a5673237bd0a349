"""Search indexes, written per database (the studio runs on PostgreSQL and SQLite).

PostgreSQL: items get a stored generated ``search_vector`` (``to_tsvector('simple', text)``)
with a GIN index (and a btree on the set's ids in order), so every write path (``COPY``
imports, ``save()``, the admin, the shell) keeps it current without code; names, descriptions, version texts and review notes get pg_trgm
GIN indexes, which ``ILIKE '%word%'`` (Django's ``icontains``) uses.

SQLite: an FTS5 external-content table over ``labeling_item`` (``text`` and the set id, so a
search within one set stays in the index), kept current by triggers on insert, update and
delete. The set id is indexed as a token in its own column, queried with a column filter.

A later migration that makes SQLite rebuild ``labeling_item`` (Django copies the table and drops
the old one) drops these triggers with it: tests/labeling/search checks they fire on the
migrated schema.
"""

from django.db import migrations

PG_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "ALTER TABLE labeling_item ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED",
    "CREATE INDEX item_search_vector ON labeling_item USING gin (search_vector)",
    # A set's ids in order: a common word's search within one set walks them.
    "CREATE INDEX item_set_id_order ON labeling_item (sample_set_id, id)",
    "CREATE INDEX policy_name_trgm ON policies_policy USING gin (upper(name) gin_trgm_ops)",
    "CREATE INDEX version_text_trgm ON policies_version USING gin (upper(text) gin_trgm_ops)",
    "CREATE INDEX sampleset_name_trgm ON labeling_sampleset USING gin (upper(name) gin_trgm_ops)",
    "CREATE INDEX sampleset_description_trgm ON labeling_sampleset "
    "USING gin (upper(description) gin_trgm_ops)",
    "CREATE INDEX decision_note_trgm ON labeling_decision USING gin (upper(note) gin_trgm_ops)",
    "CREATE INDEX decision_quote_trgm ON labeling_decision USING gin (upper(quote) gin_trgm_ops)",
]
PG_BACKWARD = [
    "DROP INDEX IF EXISTS decision_quote_trgm",
    "DROP INDEX IF EXISTS decision_note_trgm",
    "DROP INDEX IF EXISTS sampleset_description_trgm",
    "DROP INDEX IF EXISTS sampleset_name_trgm",
    "DROP INDEX IF EXISTS version_text_trgm",
    "DROP INDEX IF EXISTS policy_name_trgm",
    "DROP INDEX IF EXISTS item_set_id_order",
    "ALTER TABLE labeling_item DROP COLUMN IF EXISTS search_vector",
]

SQLITE_FORWARD = [
    # Diacritics kept, as PostgreSQL's 'simple' configuration keeps them: one meaning for a query.
    "CREATE VIRTUAL TABLE labeling_item_fts USING fts5(text, sample_set_id, "
    "content='labeling_item', content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER labeling_item_fts_insert AFTER INSERT ON labeling_item BEGIN "
    "INSERT INTO labeling_item_fts(rowid, text, sample_set_id) "
    "VALUES (new.id, new.text, new.sample_set_id); END",
    "CREATE TRIGGER labeling_item_fts_delete AFTER DELETE ON labeling_item BEGIN "
    "INSERT INTO labeling_item_fts(labeling_item_fts, rowid, text, sample_set_id) "
    "VALUES ('delete', old.id, old.text, old.sample_set_id); END",
    "CREATE TRIGGER labeling_item_fts_update AFTER UPDATE OF text, sample_set_id "
    "ON labeling_item BEGIN "
    "INSERT INTO labeling_item_fts(labeling_item_fts, rowid, text, sample_set_id) "
    "VALUES ('delete', old.id, old.text, old.sample_set_id); "
    "INSERT INTO labeling_item_fts(rowid, text, sample_set_id) "
    "VALUES (new.id, new.text, new.sample_set_id); END",
    "INSERT INTO labeling_item_fts(labeling_item_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS labeling_item_fts_update",
    "DROP TRIGGER IF EXISTS labeling_item_fts_delete",
    "DROP TRIGGER IF EXISTS labeling_item_fts_insert",
    "DROP TABLE IF EXISTS labeling_item_fts",
]


def _run(schema_editor, statements):
    for sql in statements:
        schema_editor.execute(sql)


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, PG_FORWARD)
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_FORWARD)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, PG_BACKWARD)
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_BACKWARD)


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0015_review_overlap'),
        ('policies', '0006_regression_tolerance'),
    ]

    operations = [migrations.RunPython(forward, backward)]
