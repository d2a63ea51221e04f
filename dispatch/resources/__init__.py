"""Emergency resources (应急资源) beyond units: supplies at depots, rescue teams, experts, shelters
and hospitals; the nearest search by ETA and allocation to incidents (issue 19).

* ``model``: the pure rules (kinds, items, validation, allocation checks, the catalogue file);
* ``search``: the nearest-resource query (``gis.unit_index`` grid + ``gis.routing`` ETAs);
* ``store``: PostgreSQL (migration ``dispatch/migrations/0015_resources.sql``);
* ``service``: the directory in memory, allocation/release in one transaction, audit and bus events.
"""
