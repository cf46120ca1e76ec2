"""Model managers: save, list and load versioned model folders on S3, in git, or as W&B artifacts.

>>> mm = open_model_manager("git+file:///srv/models.git")            # doctest: +SKIP
>>> version = mm.save("out/model", "bert", metadata={"accuracy": 0.91})  # doctest: +SKIP
>>> folder = mm.load("bert")                      # latest complete version  # doctest: +SKIP
>>> [v.version for v in mm.list_versions("bert")]                     # doctest: +SKIP
['v000001']

``open_model_manager`` picks the backend from the URI scheme and imports it lazily, so boto3 and wandb
are only needed for the store in use:

=====================================  =====================================================
``s3://bucket/prefix``                 :class:`~.s3.S3ModelManager` (extra ``aws``)
``git+file:///srv/models.git``         :class:`~.git.GitModelManager` (the ``git`` CLI);
``git+ssh://…``, ``git+https://…``     the part after ``git+`` goes to git unchanged
``wandb://entity/project``             :class:`~.wandb_artifacts.WandbModelManager` (extra ``wandb``)
=====================================  =====================================================
"""

from __future__ import annotations

from typing import Any

from airflow_genius.core.models.base import (
    LATEST,
    ModelError,
    ModelIntegrityError,
    ModelManager,
    ModelNotFoundError,
    ModelVersion,
    SavedModel,
    content_digest,
)
from airflow_genius.core.schemes import SchemeRegistry
from airflow_genius.core.uris import MODEL_CREDENTIALS_HINT, redact, secret_problem

_BACKENDS: SchemeRegistry[ModelManager] = SchemeRegistry(
    "model",
    {
        "s3": "airflow_genius.core.models.s3:S3ModelManager",
        "git+file": "airflow_genius.core.models.git:GitModelManager",
        "git+ssh": "airflow_genius.core.models.git:GitModelManager",
        "git+https": "airflow_genius.core.models.git:GitModelManager",
        "git+http": "airflow_genius.core.models.git:GitModelManager",
        "wandb": "airflow_genius.core.models.wandb_artifacts:WandbModelManager",
    },
    ModelError,
)

MODEL_SCHEMES = _BACKENDS.schemes


def model_manager_class(uri: str) -> type[ModelManager]:
    """The ModelManager class for ``uri``'s scheme (imports the backend module, not its library)."""
    return _BACKENDS.class_for(uri)


def open_model_manager(uri: str, **options: Any) -> ModelManager:
    """Open the model store at ``uri``; ``options`` go to the backend's constructor.

    URIs never carry a password (they end up in TaskSpecs, argv and logs): git authenticates with ssh
    keys or credential helpers, S3 and W&B with their usual environment variables.
    """
    cls = model_manager_class(uri)
    problem = secret_problem(uri, f"{MODEL_CREDENTIALS_HINT} instead", verb="embeds")
    if problem:
        raise ModelError(f"model URI {redact(uri)!r} {problem}")
    return cls.from_uri(uri, **options)


__all__ = [
    "LATEST",
    "MODEL_SCHEMES",
    "ModelError",
    "ModelIntegrityError",
    "ModelManager",
    "ModelNotFoundError",
    "ModelVersion",
    "SavedModel",
    "content_digest",
    "model_manager_class",
    "open_model_manager",
]
