"""The papers' analyses, each returning its numbers and writing its figure (PNG).

ResNet (arXiv:1512.03385): the degradation problem (Fig. 1, 6), shortcut options A/B/C (Table 3), layer
responses (Fig. 7), ensembles of different depths (§4.1). Vision Transformer (arXiv:2010.11929): attention
rollout (Fig. 6, 14), mean attention distance (Fig. 7 right), position-embedding similarity (Fig. 7 center).
"""

from keras_vitres.analysis.degradation import DegradationResult, degradation_analysis, plot_degradation
from keras_vitres.analysis.ensemble import (
    EnsembleResult,
    ensemble_analysis,
    ensemble_model,
    member_probabilities,
    plot_ensemble,
)
from keras_vitres.analysis.experiment import (
    AnalysisData,
    TrainingSettings,
    load_analysis_data,
    train_cifar_resnet,
    train_classifier,
    train_new_model,
)
from keras_vitres.analysis.responses import (
    ResponseProfile,
    ResponseResult,
    degradation_responses,
    layer_responses,
    plot_responses,
    response_analysis,
)
from keras_vitres.analysis.shortcuts import ShortcutResult, plot_shortcuts, shortcut_analysis
from keras_vitres.analysis.vit import (
    VitAnalysisResult,
    attention_rollout,
    encoder_attention,
    max_attention_distance,
    mean_attention_distance,
    plot_vit,
    position_embedding_similarity,
    rollout_map,
    tiny_vit,
    uniform_attention_distance,
    vit_analysis,
)

__all__ = [
    "AnalysisData",
    "DegradationResult",
    "EnsembleResult",
    "ResponseProfile",
    "ResponseResult",
    "ShortcutResult",
    "TrainingSettings",
    "VitAnalysisResult",
    "attention_rollout",
    "degradation_analysis",
    "degradation_responses",
    "encoder_attention",
    "ensemble_analysis",
    "ensemble_model",
    "layer_responses",
    "load_analysis_data",
    "max_attention_distance",
    "mean_attention_distance",
    "member_probabilities",
    "plot_degradation",
    "plot_ensemble",
    "plot_responses",
    "plot_shortcuts",
    "plot_vit",
    "position_embedding_similarity",
    "response_analysis",
    "rollout_map",
    "shortcut_analysis",
    "tiny_vit",
    "train_cifar_resnet",
    "train_classifier",
    "train_new_model",
    "uniform_attention_distance",
    "vit_analysis",
]
