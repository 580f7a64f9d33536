"""Questions in plain words (Chinese or English) about shipments and alerts: `understand`
turns one into a structured query, `answer` runs it over plain data and says the result."""

from chainsight.ask.answer import answer
from chainsight.ask.places import Place, places_from_fences
from chainsight.ask.understand import Interpretation, understand

__all__ = ["Interpretation", "Place", "answer", "places_from_fences", "understand"]
