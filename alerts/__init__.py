"""Public warnings (预警发布): the CAP 1.2 / GB/T 35965.1 lifecycle, approval by the leader on duty,
storage of every CAP message version, and distribution per channel with delivery status.

(The package is not called ``warnings``: that would shadow the standard library module.)
"""
