"""Python clients of the Tacit API.

- `Client` (apps): ``track()`` events; they are posted in batches in the background,
  retried safely (service/client/events.py, what became of them in delivery.py).
- `AnalystClient` (analysts): DP queries, previews, the budget and the metric catalogue;
  ``tacit query`` is built on it (service/client/analyst.py).
- `regenerate`, `stop_generation`, `feedback` build the chat signals' events for one
  shown answer (a `Turn`), checked before they are sent (service/client/chat.py).

    from service.client import Client

    with Client("http://127.0.0.1:8000", token) as tacit:
        tacit.track({"event_type": "click_through", "user_id": ..., ...})
"""

from service.client.analyst import AnalystClient, Answer, ApiError, Unreachable
from service.client.chat import Turn, feedback, regenerate, stop_generation
from service.client.delivery import BatchResult, ClientStats, EventResult, new_event_id
from service.client.events import Client, ClientClosed

__all__ = [
    "AnalystClient",
    "Answer",
    "ApiError",
    "BatchResult",
    "Client",
    "ClientClosed",
    "ClientStats",
    "EventResult",
    "Turn",
    "Unreachable",
    "feedback",
    "new_event_id",
    "regenerate",
    "stop_generation",
]
