"""Grid metadata on DynamoDB: items ``(scope="meta", meta_key)`` of ``htc_grid_meta_table-<tag>``.

One hash key keeps every record in one partition, so a prefix is one ``Query`` with
``begins_with`` on the range key; these records are few and small (data URL, agent presence).
"""

from __future__ import annotations

from htcgrid.store.aws_calls import ConditionFailed
from htcgrid.store.aws_grid import Grid
from htcgrid.store.aws_items import Item, S, text

SCOPE = "meta"


class Meta:
    def __init__(self, grid: Grid) -> None:
        self.grid = grid

    def _key(self, key: str) -> Item:
        return {"scope": S(SCOPE), "meta_key": S(key)}

    def get(self, key: str) -> str | None:
        item = self.grid.get(self.grid.meta, self._key(key))
        return None if item is None else text(item, "value")

    def set_if_absent(self, key: str, value: str) -> str:
        try:
            self.grid.calls(
                self.grid.db.put_item,
                TableName=self.grid.meta,
                Item={**self._key(key), "value": S(value)},
                ConditionExpression="attribute_not_exists(meta_key)",
            )
            return value
        except ConditionFailed:
            current = self.get(key)
            return value if current is None else current

    def put(self, key: str, value: str) -> None:
        self.grid.calls(
            self.grid.db.put_item,
            TableName=self.grid.meta,
            Item={**self._key(key), "value": S(value)},
        )

    def list_prefix(self, prefix: str) -> dict[str, str]:
        condition = "#scope = :scope"
        values = {":scope": S(SCOPE)}
        if prefix:
            condition += " AND begins_with(meta_key, :prefix)"
            values[":prefix"] = S(prefix)
        items = self.grid.query(
            TableName=self.grid.meta,
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#scope": "scope"},
            ExpressionAttributeValues=values,
            ConsistentRead=True,
        )
        return {str(text(i, "meta_key")): str(text(i, "value")) for i in items}

    def delete(self, key: str) -> None:
        self.grid.calls(self.grid.db.delete_item, TableName=self.grid.meta, Key=self._key(key))
