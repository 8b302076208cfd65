"""Chat moderation with the `alt-profanity-check` model (a linear SVM over
word n-grams, shipped inside its wheel, so nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ChatModerator"]

# Messages whose scores the fast path must reproduce exactly before it is used.
_PROBES = (
    "hello from gen 1!",
    "what a stream",
    "you are a piece of shit",
    "fuck off",
    "",
    "I love this 4K quality, so smooth",
)


class ChatModerator:
    """Scores messages 0..1; at or over `threshold` a message is moderated."""

    def __init__(self, threshold: float) -> None:
        from profanity_check import predict_prob  # loads the model (~0.5 s)

        self._predict: Callable[[Sequence[str]], Any] = predict_prob
        fast = _linear_predict()
        if fast is not None and all(fast([m])[0] == predict_prob([m])[0] for m in _PROBES):
            self._predict = fast
        self.threshold = threshold

    def score(self, message: str) -> tuple[float, bool]:
        p = float(self._predict([message])[0])
        return p, p >= self.threshold


def _linear_predict() -> Callable[[Sequence[str]], Any] | None:
    """`profanity_check.predict_prob` computed directly from the fitted model.

    The model is a CalibratedClassifierCV of five sigmoid-calibrated LinearSVCs;
    sklearn's predict_proba spends ~90% of a one-message call validating its input
    (3.6 ms vs 0.4 ms here, on the benchmark machine). This does the same
    floating-point operations in the same order, so scores are bit-identical (checked
    against the original on probes at start-up; any other model shape keeps the
    original). None if the model is not of that shape.
    """
    try:
        import numpy as np
        from profanity_check import profanity_check as pc
        from scipy.special import expit
        from sklearn.utils.extmath import safe_sparse_dot

        vectorizer, model = pc.vectorizer, pc.model
        if len(model.classes_) != 2:
            return None
        parts = []
        for cc in model.calibrated_classifiers_:
            (cal,) = cc.calibrators
            if cc.method != "sigmoid" or cc.estimator.coef_.shape[0] != 1:
                return None
            parts.append((cc.estimator.coef_.T, cc.estimator.intercept_, cal.a_, cal.b_))
    except (ImportError, AttributeError, ValueError):
        return None

    def predict(texts: Sequence[str]) -> Any:
        x = vectorizer.transform(texts)
        mean = np.zeros(x.shape[0])
        for coef, intercept, a, b in parts:  # as _CalibratedClassifier.predict_proba
            decision = (safe_sparse_dot(x, coef, dense_output=True) + intercept).ravel()
            mean += expit(-(a * decision + b))
        mean /= len(parts)
        return mean

    return predict
