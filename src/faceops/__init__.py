"""faceops: reproducible, orchestrated pipelines for face analysis research.

The library is pure: it knows nothing of params.yaml, DVC, Prefect or the workspace layout.
Stages (``stages/``) and flows (``flows/``) import it, never the other way round.
"""

__version__ = "0.1.0"
