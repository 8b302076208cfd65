"""Chat moderation with the `alt-profanity-check` model (a linear SVM over
word n-grams, shipped inside its wheel, so nothing is downloaded)."""

from __future__ import annotations

__all__ = ["ChatModerator"]


class ChatModerator:
    """Scores messages 0..1; at or over `threshold` a message is moderated."""

    def __init__(self, threshold: float) -> None:
        from profanity_check import predict_prob  # loads the model (~0.5 s)

        self._predict = predict_prob
        self.threshold = threshold

    def score(self, message: str) -> tuple[float, bool]:
        p = float(self._predict([message])[0])
        return p, p >= self.threshold
