"""The binocular loop's tables: sample sets, jobs, labels, review tasks, decisions, gold labels
and evaluation sets (``core``), API keys (``apikeys``), worker heartbeats (``workers``), and
attribution's runs and findings (``explain``).

Code imports them from here (``from labeling.models import Job``); each lives in the module
named above.
"""

from labeling.models.apikeys import ApiKey
from labeling.models.core import (
    ChunkStatus,
    CompareKind,
    Decision,
    DecisionAction,
    DecisionChange,
    GoldChange,
    GoldChoice,
    GoldLabel,
    GoldSource,
    Item,
    Job,
    JobChunk,
    JobStatus,
    Label,
    PolicyEvaluation,
    ReviewStatus,
    ReviewTask,
    SampleSet,
    SampleSetStatus,
    Side,
    Wording,
)
from labeling.models.explain import (
    Carveout,
    CarveoutStatus,
    ExplainChunk,
    ExplainFinding,
    ExplainItem,
    ExplainRun,
    ExplainScore,
    ExplainStatus,
    ExplainVerdict,
    FindingRole,
    RunKind,
)
from labeling.models.workers import WorkerHeartbeat

__all__ = [
    "ApiKey",
    "Carveout",
    "CarveoutStatus",
    "ChunkStatus",
    "CompareKind",
    "Decision",
    "DecisionAction",
    "DecisionChange",
    "ExplainChunk",
    "ExplainFinding",
    "ExplainItem",
    "ExplainRun",
    "ExplainScore",
    "ExplainStatus",
    "ExplainVerdict",
    "FindingRole",
    "RunKind",
    "GoldChange",
    "GoldChoice",
    "GoldLabel",
    "GoldSource",
    "Item",
    "Job",
    "JobChunk",
    "JobStatus",
    "Label",
    "PolicyEvaluation",
    "ReviewStatus",
    "ReviewTask",
    "SampleSet",
    "SampleSetStatus",
    "Side",
    "Wording",
    "WorkerHeartbeat",
]
