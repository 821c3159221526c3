"""What the analyzer reads: one versioned feature service, so a change is a new name."""

from feast import FeatureService
from feature_views import game_type_stats, user_journal_features

analyzer_v1 = FeatureService(
    name="analyzer_v1",
    features=[user_journal_features, game_type_stats],
    description="Features the Analyzer service reads per request (user and game type).",
    tags={"consumer": "analyzer"},
)
