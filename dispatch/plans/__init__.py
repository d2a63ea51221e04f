"""Emergency response plans (应急预案, issue 19): plans as versioned, approved data, and their
activation on an incident as a task list per agency (联动).

* ``model``: the pure rules (levels and criteria, command structure, tasks and their statuses);
* ``format``: the documented TOML/JSON exchange format and its validation (docs/plans.md);
* ``store``: PostgreSQL (migration ``dispatch/migrations/0016_plans.sql``);
* ``service``: versions and approval, activation, level changes, task updates, agency desks.

Not to be confused with ``dispatch.response_plans``: those are run cards (what units to send).
"""
