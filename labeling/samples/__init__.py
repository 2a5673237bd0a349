"""Sample sets: importing CSV / TSV, JSON Lines, Parquet and pasted lines, streamed from disk.

The flow is upload → preview → confirm → background import; what lives where:

* ``uploads``: the stored upload (``DATA_DIR/uploads/<token>.data``, mode 600), its type and
  size limits, stale uploads deleted;
* ``text_reader`` (UTF-8 check, bounded head and lines), ``csv_reader`` (strict rows, damage
  with its line, separator sniffing), ``jsonl_reader``, ``parquet_reader`` (sizes checked
  before anything is decoded): one reader per format;
* ``values``: limits of one value, the characters PostgreSQL cannot store, the content hash;
* ``preview``: columns, first rows, warnings and column guesses, from a bounded head;
* ``records``: every row of any format as a ``Record`` (text, id, label, metadata, findings);
* ``report``: each record checked into an item row (ids, duplicates, labels, long items) and
  the report stored on the set;
* ``writer``: the items written (COPY on PostgreSQL, executemany elsewhere) and removed;
* ``services``: the import service (``begin_import``, ``run_import``, ``fail_import``,
  ``import_sample_set``, ``clean_abandoned_imports``) and the Celery task names;
* ``errors``: ``ImportFileError``, whose message tells a person the line and the fix;
* ``forms``, ``views``, ``urls``: the pages.
"""
