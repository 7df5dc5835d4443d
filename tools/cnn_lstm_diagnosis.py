"""Why the paper's CNN-LSTM falls below the majority class when split by track (one fold).

    python tools/cnn_lstm_diagnosis.py --data $MOODSCOPE_EMOTIFY_DIR

Trains paper_cnn_lstm on fold 0 of the 5-fold track-disjoint CV (20 segments), with and
without SMOTE, and reports the track accuracy as trained and after re-estimating every
BatchNorm layer's running statistics on the training rows (cumulative average), to separate
the two suspects: SMOTE's uniform prior and unconverged Keras-momentum BatchNorm statistics.
"""

from __future__ import annotations

import argparse
import warnings

import pandas as pd
import torch

from moodscope.datasets import EmotifyDataset
from moodscope.experiment import track_predictions, train_and_test
from moodscope.features import FeatureConfig, extract_features
from moodscope.protocols import track_folds, track_split
from moodscope.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    dataset = EmotifyDataset(args.data)
    labels, config = list(dataset.labels), FeatureConfig(segments=20)
    table, _ = extract_features(dataset, config, workers=2)
    columns = list(config.columns)
    train_rows, test_rows = track_folds(table, n_splits=5, seed=0, labels=labels)[0]
    for smote in (True, False):
        split = track_split(
            table, columns, train_rows, test_rows, seed=0, labels=labels, smote=smote
        )
        result = train_and_test(
            table,
            model="paper_cnn_lstm",
            protocol="track",
            feature_config=config,
            train_config=TrainConfig(),
            labels=labels,
            split=split,
            columns=columns,
        )

        def track_accuracy(proba, split=split) -> float:
            ids, track_proba = track_predictions(proba, split.test_tracks)
            truth = pd.Series(split.y_test).groupby(pd.Series(split.test_tracks)).first()
            return float((track_proba.argmax(1) == truth.loc[ids].to_numpy()).mean())

        as_trained = track_accuracy(result.test_proba)
        module = result.model.classifier.model
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm1d):
                layer.reset_running_stats()
                layer.momentum = None  # cumulative average over the pass below
        module.train()
        with torch.no_grad():
            X = torch.as_tensor(split.X_train)
            for i in range(0, len(X), 256):
                module(X[i : i + 256])
        re_estimated = track_accuracy(result.model.classifier.predict_proba(split.X_test))
        print(
            f"SMOTE {smote}: best epoch {result.history['best_epoch'][0]} of "
            f"{result.metrics['epochs']}, track accuracy {as_trained:.3f} as trained, "
            f"{re_estimated:.3f} with re-estimated BatchNorm statistics"
        )


if __name__ == "__main__":
    main()
