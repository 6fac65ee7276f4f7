"""Fleet view: many node reports -> node classes -> image x class runnability matrix.

load.py       read report files fast and robustly (bad files become InvalidReport rows)
classes.py    the node-class key and the image-evaluation signature
aggregate.py  per class: node count, worst verdict, findings by rule, worst nodes
matrix.py     per image x class: evaluate the image rules once per evaluation group
build.py      assemble the fleet JSON document (schema in schema/fleet.schema.json)
"""

from __future__ import annotations

FLEET_SCHEMA_VERSION = "1.0"
