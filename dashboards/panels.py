"""Grafana panels on the 24-column grid, and the matchers of the dashboards' template variables."""

from __future__ import annotations

from typing import Any

#: Matchers for the dashboards' template variables.
QUEUE = 'queue=~"$queue"'
TASK = 'task=~"$task"'
INSTANCE = 'instance=~"$instance"'


class Panels:
    """Lays panels out on Grafana's 24-column grid with unique ids."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_height = 0

    def _place(self, width: int, height: int) -> dict[str, int]:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        position = {"x": self.x, "y": self.y, "w": width, "h": height}
        self.x += width
        self.row_height = max(self.row_height, height)
        return position

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        self.y += 1

    def add(
        self,
        title: str,
        targets: list[tuple[str, str]],
        *,
        unit: str = "short",
        kind: str = "timeseries",
        width: int = 8,
        height: int = 8,
        exemplars: bool = False,
        description: str = "",
    ) -> None:
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": self._place(width, height),
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [
                {
                    "refId": chr(ord("A") + index),
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": expr,
                    "legendFormat": legend,
                    "exemplar": exemplars,
                    **({"format": "table", "instant": True} if kind == "table" else {}),
                }
                for index, (expr, legend) in enumerate(targets)
            ],
        }
        if kind == "table":
            panel["transformations"] = [{"id": "labelsToFields", "options": {}}]
        self.panels.append(panel)
