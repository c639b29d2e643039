"""The params.yaml schema, one module per section, so a stage depends only on the sections it reads.

Why split: dvc.yaml lists, for every stage, the code it can import; a stage that imported one schema
module holding every section would be re-run by a change to any section's defaults. So each section
lives in its own module (``faceops.config.align`` ...), the stages load only theirs
(``faceops.config.core.load_sections``), and ``faceops.config.params`` assembles the whole file's
schema for the flows and the CLI, which validate every key before any stage runs.

This ``__init__`` stays light on purpose: importing a section module runs it.
"""

#: Source names: lowercase letters, digits and ``_`` (they become folder names and sample-id prefixes).
SOURCE_NAME_PATTERN = r"^[a-z0-9_]+$"
