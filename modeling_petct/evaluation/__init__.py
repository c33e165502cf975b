"""Scoring: autoPET per-case metrics (``metrics``), bootstrap CIs and paired tests (``statistics``), and finding and
scoring mask files (``cases``, behind `petct evaluate`). Definitions follow the official autoPET code."""

from .cases import evaluate_cases, find_cases, header_voxel_volume_ml, match_cases
from .metrics import CONNECTIVITY, ComponentScorer, autopet_case_metrics, case_metrics, lesion_f1, physiological_fpv_ml
from .statistics import aggregate, bootstrap_ci, paired_wilcoxon

__all__ = [
    "evaluate_cases", "find_cases", "header_voxel_volume_ml", "match_cases", "CONNECTIVITY", "ComponentScorer",
    "autopet_case_metrics", "case_metrics", "lesion_f1", "physiological_fpv_ml", "aggregate", "bootstrap_ci",
    "paired_wilcoxon",
]
